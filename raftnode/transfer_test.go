package raftnode_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode/raftnodetest"
)

// TestTransferToSilentPeerStartsNone: raft drops every proposal while a
// leadership transfer is pending (up to an election timeout), so a leader
// starts none to a peer it has not heard from lately. Before, a transfer
// to a peer that was down started again every election timeout until the
// caller's ctx ended, and writes stalled all along.
func TestTransferToSilentPeerStartsNone(t *testing.T) {
	c := raftnodetest.NewCluster(t, raftnodetest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	down := (lead + 1) % 3
	downID := c.Peer(down).ID
	c.Stop(down)
	n := c.Node(lead)
	const election = 100 * time.Millisecond // raftnodetest: 10 ticks of 10 ms
	tctx, tcancel := context.WithTimeout(ctx, 10*election)
	defer tcancel()
	done := make(chan error, 1)
	go func() { done <- n.TransferLeadership(tctx, downID) }()
	// One transfer may start while the leader still counts the peer as
	// recently active; it ends within an election timeout. After three,
	// none may be pending. Proposals keep Readies, and so the status,
	// coming.
	start := time.Now()
	writes := 0
	for tctx.Err() == nil {
		if _, err := n.Propose(ctx, raftnodetest.PutCmd("k", fmt.Sprint(writes))); err != nil {
			t.Fatal(err)
		}
		writes++
		if to := n.Status().LeadTransferee; to != 0 && time.Since(start) > 3*election {
			t.Fatalf("a transfer to silent peer %d is pending %v after TransferLeadership began", to, time.Since(start).Round(time.Millisecond))
		}
	}
	if err := <-done; err == nil {
		t.Fatal("TransferLeadership to a stopped peer succeeded")
	}
	t.Logf("%d proposals while the transfer waited", writes)
}
