package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
)

// A follower's proposal that commits while the follower hears nothing from
// the leader, and that the follower then receives inside a snapshot, must
// still be answered: the command was applied once, its result is lost.
// (Found with the linearizability workload under small snapshot thresholds:
// such a Propose hung until its ctx ended, its proposal re-proposed every
// retry period as a duplicate that apply skipped.)
func TestProposeAnsweredWhenAppliedBySnapshot(t *testing.T) {
	c := raftnodetest.NewCluster(t, raftnodetest.Options{Peers: 3, Configure: func(i int, cfg *raftnode.Config) {
		cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 20, 5
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	li, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lead, f := c.Node(li), c.Node((li+1)%3)
	// The follower still reaches the leader, which no longer reaches it.
	c.Network().Cut(lead.ID(), f.ID())
	res := make(chan error, 1)
	go func() {
		_, err := f.Propose(ctx, raftnodetest.PutCmd("x", "from-follower"))
		res <- err
	}()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if v, _, _ := raftnodetest.Get(lead.DB(), "x"); v == "from-follower" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the follower's proposal did not commit")
		case <-tick.C:
		}
	}
	// Move the leader's log start past the command, so that the follower
	// can only catch up through a snapshot.
	for i := 0; i < 60; i++ {
		if _, err := lead.Propose(ctx, raftnodetest.PutCmd(fmt.Sprint("k", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	c.Network().Heal()
	select {
	case err := <-res:
		if !errors.Is(err, raftnode.ErrAppliedBySnapshot) {
			t.Fatalf("Propose = %v, want ErrAppliedBySnapshot", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Propose did not return after the follower installed the snapshot")
	}
	if err := f.ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := raftnodetest.Get(f.DB(), "x"); v != "from-follower" {
		t.Fatalf("follower reads x = %q after catching up", v)
	}
	if _, count, _ := raftnodetest.State(f.DB()); count != 61 {
		t.Fatalf("follower applied %d commands, want 61", count)
	}
}
