package raftnode_test

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
)

type failOnceRestore struct {
	raftnode.Applier
	fail *atomic.Bool
}

func (r failOnceRestore) Restore(db *badger.DB, rd io.Reader) error {
	if r.fail.CompareAndSwap(true, false) {
		// A transient failure mid-restore (a full disk, an I/O error).
		return errors.New("injected restore failure")
	}
	return r.Applier.Restore(db, rd)
}

// TestRestartAfterFailedInstall: a snapshot install that fails halts the
// peer; the restore marker asks the next start to redo it from the spooled
// body. Stopping the halted peer must not lose that body.
func TestRestartAfterFailedInstall(t *testing.T) {
	var fail atomic.Bool
	c, ctx, lead := leadCluster(t, raftnodetest.Options{
		OnDisk: true,
		Configure: func(_ int, cfg *raftnode.Config) {
			cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 200, 50
			cfg.Applier = failOnceRestore{cfg.Applier, &fail}
		},
	})
	f := (lead + 1) % 3
	model := map[string]string{}
	putKeys(ctx, t, c.Node(lead), model, 0, 50, "a")
	c.Stop(f)
	p := c.Node(lead)
	downAt := p.AppliedIndex()
	for i := 50; p.AppliedIndex() < downAt+600; i++ {
		putKeys(ctx, t, p, model, i, i+1, "b")
	}
	fail.Store(true) // only the restarted peer restores
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	n := c.Node(f)
	select {
	case <-n.Done():
		t.Logf("peer halted as expected: %v", n.Err())
	case <-ctx.Done():
		t.Fatal("peer did not halt")
	}
	c.Stop(f)
	if err := c.Restart(f); err != nil {
		t.Fatalf("restart after a failed snapshot install: %v", err)
	}
	n = c.Node(f)
	waitUntil(ctx, t, "catch up", func() bool { return n.AppliedIndex() >= p.AppliedIndex() })
	checkSameState(ctx, t, c, []int{0, 1, 2}, model)
}
