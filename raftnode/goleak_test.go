package raftnode_test

import (
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/concordkv/concord/internal/leaktest"

	"github.com/concordkv/concord/raftnode/raftnodetest"
)

// TestNoGoroutineSurvivesClose: a TCP cluster that proposed, read, crashed
// and restarted a peer, and sent it a snapshot, leaves no goroutine behind
// once every peer is stopped.
func TestNoGoroutineSurvivesClose(t *testing.T) {
	restores := make([]atomic.Int64, 3)
	c, ctx, lead := leadCluster(t, raftnodetest.Options{
		TCP: true, OnDisk: true, Configure: countRestores(restores, 200, 50),
	})
	model := map[string]string{}
	proposePuts(ctx, t, c, model, 0, 200)
	f := (lead + 1) % 3
	c.Crash(f)
	p := c.Node(lead)
	for i := 200; p.AppliedIndex() < 800; i++ {
		putKeys(ctx, t, p, model, i, i+1, "b")
	}
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	proposePuts(ctx, t, c, model, 0, 100)
	checkSameState(ctx, t, c, []int{0, 1, 2}, model)
	if restores[f].Load() == 0 {
		t.Fatalf("peer %d caught up without a snapshot", f+1)
	}
	c.Close()
	goleak.VerifyNone(t, leaktest.Options()...)
}
