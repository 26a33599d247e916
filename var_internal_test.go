package concord

import (
	"context"
	"testing"
	"time"
)

// TestVarResyncsAfterCompaction: a Var whose watch falls below the compact
// revision reads its key again: it ends up at the store's value (or the
// default, for a key deleted meanwhile), and its revision moves forward.
func TestVarResyncsAfterCompaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := openLocal(t, "")
	var olds [2]*GetResponse
	for i, k := range []string{"updated", "deleted"} {
		if _, err := n.Put(ctx, k, `"old"`); err != nil {
			t.Fatal(err)
		}
		var err error
		if olds[i], err = n.Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.Put(ctx, "updated", `"new"`); err != nil {
		t.Fatal(err)
	}
	put, err := n.Put(ctx, "updated", `"newer"`)
	if err != nil {
		t.Fatal(err)
	}
	del, err := n.Delete(ctx, "deleted")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Compact(ctx, del.Revision); err != nil {
		t.Fatal(err)
	}
	// Vars that read their key before the changes and the compaction:
	// their watches from there are compacted.
	check := func(key string, old *GetResponse, want string, wantRev int64) {
		t.Helper()
		v, err := newVar[string](n, key, []VarOption{WithVarDefault("default")})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.start(ctx, old); err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		if got, rev := v.Load(); got != "old" || rev != old.Kvs[0].ModRevision {
			t.Fatalf("%s: Load from the old read = %s@%d", key, got, rev)
		}
		if err := v.waitSeen(ctx, del.Revision); err != nil {
			t.Fatal(err)
		}
		if got, rev := v.Load(); got != want || rev < wantRev {
			t.Fatalf("%s: after resync Load = %s@%d, want %s at %d or later", key, got, rev, want, wantRev)
		}
		select {
		case got := <-v.Changes():
			if got != want {
				t.Fatalf("%s: Changes sent %s, want %s", key, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no change sent after the resync", key)
		}
	}
	check("updated", olds[0], "newer", put.Revision)
	check("deleted", olds[1], "default", del.Revision)
}
