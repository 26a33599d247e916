package concord_test

import (
	"math"
	"testing"

	"github.com/concordkv/concord"
)

func TestFenceRejectsStaleTokens(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	f := concord.NewFence(n, "res/fence")
	if tok, err := f.Token(ctx); err != nil || tok != 0 {
		t.Fatalf("Token of a new fence: %d, %v", tok, err)
	}
	resp, err := f.Do(ctx, 9, concord.OpPut("res/v", "a"), concord.OpGet("res/v"))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Responses) != 2 || string(resp.Responses[1].Get().Kvs[0].Value) != "a" {
		t.Fatalf("responses %+v", resp.Responses)
	}
	// Equal: the same holder writes again. Higher: a newer holder. Tokens
	// of different widths compare as numbers (9 < 10).
	for _, tok := range []int64{9, 10, 100} {
		if _, err := f.Do(ctx, tok, concord.OpPut("res/v", "ok")); err != nil {
			t.Fatalf("token %d: %v", tok, err)
		}
	}
	unchanged(t, n, concord.ErrStaleToken, func() error {
		_, err := f.Do(ctx, 99, concord.OpPut("res/v", "stale"))
		return err
	})
	unchanged(t, n, concord.ErrInvalidRequest, func() error {
		_, err := f.Do(ctx, 0)
		return err
	})
	if v := value(t, n, "res/v"); v != "ok" {
		t.Fatalf("res/v = %q", v)
	}
	if tok, err := f.Token(ctx); err != nil || tok != 100 {
		t.Fatalf("Token = %d, %v; want 100", tok, err)
	}
	// The highest token there is, twice: the same holder again.
	for range 2 {
		if _, err := f.Do(ctx, math.MaxInt64); err != nil {
			t.Fatalf("token MaxInt64: %v", err)
		}
	}
}

// TestFenceWithMutexTokens: a holder that lost the lock is shut out once
// the next holder has called Do, even though it still believes it holds.
func TestFenceWithMutexTokens(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	f := concord.NewFence(n, "res2/fence")
	oldS := lockSession(t, n)
	old := concord.NewMutex(oldS, "res2/lock")
	if err := old.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	oldTok := old.Token()
	if _, err := f.Do(ctx, oldTok, concord.OpPut("res2/v", "old")); err != nil {
		t.Fatal(err)
	}
	if err := n.Revoke(ctx, oldS.Lease()); err != nil { // old loses the lock
		t.Fatal(err)
	}
	m := concord.NewMutex(lockSession(t, n), "res2/lock")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Do(ctx, m.Token()); err != nil {
		t.Fatal(err)
	}
	_, err := f.Do(ctx, oldTok, concord.OpPut("res2/v", "late write"))
	wantErr(t, err, concord.ErrStaleToken)
	if v := value(t, n, "res2/v"); v != "old" {
		t.Fatalf("res2/v = %q", v)
	}
}
