package concord_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

// TestLockSafetyNegativeControl gives TestLockSafety's checks teeth: a
// holder that pauses past its session's TTL (its keep-alives stop, as in
// a GC pause) loses the lock to another holder, then resumes and writes
// the increment it had computed. Unguarded, that write overwrites the
// other holder's increment: the anomaly the guards exist for shows up.
// Through IsOwner, or through a Fence the new holder advanced, the same
// write is refused and nothing is lost.
func TestLockSafetyNegativeControl(t *testing.T) {
	c := concordtest.NewCluster(t, 3)
	ctx := testCtx(t)
	n1, n2 := c.Node(0), c.Node(1)
	f := concord.NewFence(n1, "neg/fence")
	read := func(n *concord.Node, key string) int64 {
		v, _ := strconv.ParseInt(value(t, n, key), 10, 64)
		return v
	}
	for _, guard := range []string{"none", "IsOwner", "Fence"} {
		counter := "neg/" + guard
		paused, err := concord.NewSession(n1, concord.WithSessionTTL(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		a := concord.NewMutex(paused, "neg/lock")
		if err := a.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Do(ctx, a.Token()); err != nil {
			t.Fatal(err)
		}
		v := read(n1, counter) // a computes its increment...
		tokA, ownA := a.Token(), a.IsOwner()
		paused.Orphan() // ...and pauses: no more keep-alives (a's Token is 0 from here)

		b := concord.NewMutex(lockSession(t, n2), "neg/lock")
		if err := b.Lock(ctx); err != nil { // granted once a's lease expired
			t.Fatal(err)
		}
		if _, err := f.Do(ctx, b.Token()); err != nil {
			t.Fatal(err)
		}
		w := read(n2, counter)
		acked := map[string]bool{}
		incr := func(holder string, v, tok int64) []concord.Op {
			acked[counter+"-ops/"+holder+"-1"] = true
			return []concord.Op{concord.OpPut(counter, strconv.FormatInt(v+1, 10)),
				concord.OpPut(counter+"-ops/"+holder+"-1", fmt.Sprintf("%d %d", v+1, tok))}
		}
		// b's increment, while it holds.
		if _, err := n2.Txn(ctx).If(b.IsOwner()).Then(incr("b", w, b.Token())...).Commit(); err != nil {
			t.Fatal(err)
		}

		// a resumes, still believing it holds with the token and compare
		// it took before its pause, and writes v+1.
		ops := incr("a", v, tokA)
		switch guard {
		case "none":
			if _, err := n1.Txn(ctx).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
		case "IsOwner":
			resp, err := n1.Txn(ctx).If(ownA).Then(ops...).Commit()
			if err != nil || resp.Succeeded {
				t.Fatalf("guarded by IsOwner, a's late write went through: %v", err)
			}
			delete(acked, counter+"-ops/a-1")
		case "Fence":
			_, err := f.Do(ctx, tokA, ops...)
			wantErr(t, err, concord.ErrStaleToken)
			delete(acked, counter+"-ops/a-1")
		}
		got := read(n1, counter)
		problems := lockSafetyProblems(t, n1, counter, acked, nil)
		t.Logf("guard %s: %d increments acknowledged, counter %d; TestLockSafety's check finds %q", guard, len(acked), got, problems)
		if guard == "none" && (got != 1 || len(problems) == 0) {
			t.Fatalf("the unguarded late write lost no increment (counter %d), or the check missed it: the control shows nothing", got)
		}
		if guard != "none" && (got != int64(len(acked)) || len(problems) > 0) {
			t.Fatalf("guard %s: counter %d after %d increments: %q", guard, got, len(acked), problems)
		}
		if err := b.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
