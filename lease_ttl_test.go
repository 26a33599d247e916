package concord_test

import (
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// TestRefusedTTLWriteLeavesNoLease: a write with WithTTL gets a lease of
// its own before it is proposed; when the write is refused (or a claim
// finds nothing free), that lease is revoked, so that retries do not pile
// up leases that hold nothing.
func TestRefusedTTLWriteLeavesNoLease(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "k", "v")
	put(t, n, "notnum", "x")
	ttl := concord.WithTTL(time.Hour)
	calls := map[string]func() error{
		"Create on an existing key": func() error { _, err := n.Create(ctx, "k", "v2", ttl); return err },
		"CompareAndSwap, wrong old": func() error { _, err := n.CompareAndSwap(ctx, "k", "wrong", "v2", ttl); return err },
		"Put WithIgnoreValue, missing key": func() error {
			_, err := n.Put(ctx, "missing", "", concord.WithIgnoreValue(), ttl)
			return err
		},
		"Claim, nothing free": func() error {
			r, err := n.Claim(ctx, "jobs/", "owners/", "me", concord.WithPrefix(), ttl)
			if err == nil && r.Kv != nil {
				t.Fatalf("claimed %q from an empty range", r.Kv.Key)
			}
			return nil
		},
		"Delete": func() error { _, err := n.Delete(ctx, "nothing", ttl); return err },
	}
	for name, call := range calls {
		call()
		ls, err := n.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) != 0 {
			t.Fatalf("%s: %d lease(s) left, want none", name, len(ls))
		}
	}
	// A write that succeeds keeps its lease.
	if _, err := n.Create(ctx, "fresh", "v", ttl); err != nil {
		t.Fatal(err)
	}
	if ls, err := n.Leases(ctx); err != nil || len(ls) != 1 {
		t.Fatalf("after a Create WithTTL: %d leases, %v", len(ls), err)
	}
}
