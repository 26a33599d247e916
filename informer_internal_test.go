package concord

import (
	"context"
	"maps"
	"testing"
	"time"
)

// TestInformerResyncsAfterCompaction: an Informer whose watch falls below
// the compact revision reads the prefix again and ends up equal to the
// store, at once (never a partial state).
func TestInformerResyncsAfterCompaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := DefaultLocalConfig()
	cfg.Name = "solo"
	n, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for _, k := range []string{"a", "b", "c"} {
		if _, err := n.Put(ctx, "p/"+k, `"old"`); err != nil {
			t.Fatal(err)
		}
	}
	old, err := n.Get(ctx, "p/", WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Delete(ctx, "p/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Put(ctx, "p/b", `"new"`); err != nil {
		t.Fatal(err)
	}
	last, err := n.Put(ctx, "p/d", `"new"`)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Compact(ctx, last.Revision); err != nil {
		t.Fatal(err)
	}
	// An informer that read the prefix before the changes and the
	// compaction: its watch from there is compacted.
	inf, err := startInformer(ctx, n, "p/", JSON[string](), old)
	if err != nil {
		t.Fatal(err)
	}
	defer inf.Close()
	if err := inf.WaitRevision(ctx, last.Revision); err != nil {
		t.Fatal(err)
	}
	got, rev := inf.Snapshot()
	want := map[string]string{"p/b": "new", "p/c": "old", "p/d": "new"}
	if !maps.Equal(got, want) || rev < last.Revision {
		t.Fatalf("after resync: %v at %d, want %v at %d", got, rev, want, last.Revision)
	}
}
