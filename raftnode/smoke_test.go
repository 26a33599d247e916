package raftnode_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
	"github.com/concordkv/concord/transport"
)

// TestLonePeerLeadsAtOnce: with a tick of an hour no election timeout can
// pass during the test, so a lone peer that serves a proposal led at once.
func TestLonePeerLeadsAtOnce(t *testing.T) {
	net := transport.NewNetwork(1)
	defer net.Close()
	n, err := raftnode.Start(raftnode.Config{
		ID: 1, Peers: []raftnode.Peer{{ID: 1, Addr: "mem://1"}},
		Transport: net.Transport(1), Applier: &raftnodetest.KV{},
		TickInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := n.Propose(ctx, raftnodetest.PutCmd("k", "v1"))
	if err != nil {
		t.Fatalf("lone peer did not serve a proposal without ticks: %v", err)
	}
	if len(res) != 0 {
		t.Fatalf("previous value %q, want none", res)
	}
	if err := n.ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	v, ok, err := raftnodetest.Get(n.DB(), "k")
	if err != nil || !ok || v != "v1" {
		t.Fatalf("Get = %q %v %v", v, ok, err)
	}
}

func TestThreePeersReplicate(t *testing.T) {
	c := raftnodetest.NewCluster(t, raftnodetest.Options{Peers: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		n := c.Node(i % 3)
		if _, err := n.Propose(ctx, raftnodetest.PutCmd(fmt.Sprint("k", i), "v")); err != nil {
			t.Fatalf("propose %d on peer %d: %v", i, i%3+1, err)
		}
	}
	for i := 0; i < 3; i++ {
		n := c.Node(i)
		if err := n.ReadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		_, count, err := raftnodetest.State(n.DB())
		if err != nil || count != 30 {
			t.Fatalf("peer %d applied %d commands (%v), want 30", i+1, count, err)
		}
	}
}

// TestLonePeerLeadsAtOnceAfterRestart: the same on a restart from a data
// dir, where the lone voter set comes from disk.
func TestLonePeerLeadsAtOnceAfterRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for round := range 2 {
		n, stop := startLoneOnDisk(t, dir, func(c *raftnode.Config) { c.TickInterval = time.Hour })
		_, err := n.Propose(ctx, raftnodetest.PutCmd("k", fmt.Sprint(round)))
		stop()
		if err != nil {
			t.Fatalf("round %d: lone peer did not serve a proposal without ticks: %v", round, err)
		}
	}
}

// TestLonePeerRestartsAfterCompaction: the commit index on disk moves
// only with other writes (a lone voter's moves on its own after every
// append), and raft refuses to start from one below the log's start, so
// it must keep up with compaction. Restarts after many compactions start
// and find every command.
func TestLonePeerRestartsAfterCompaction(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for round := range 3 {
		n, stop := startLoneOnDisk(t, dir, func(c *raftnode.Config) { c.SnapshotEntries, c.SnapshotCatchUpEntries = 20, 5 })
		for i := range 100 {
			if _, err := n.Propose(ctx, raftnodetest.PutCmd(fmt.Sprint("k", round, "-", i), "v")); err != nil {
				t.Fatalf("round %d: propose %d: %v", round, i, err)
			}
		}
		_, count, err := raftnodetest.State(n.DB())
		stop()
		if err != nil || count != uint64(100*(round+1)) {
			t.Fatalf("round %d: %d commands applied (%v), want %d", round, count, err, 100*(round+1))
		}
	}
}

// startLoneOnDisk starts a lone peer on dir, its config changed by tweak;
// stop stops it and its network.
func startLoneOnDisk(t *testing.T, dir string, tweak func(*raftnode.Config)) (n *raftnode.Node, stop func()) {
	t.Helper()
	net := transport.NewNetwork(1)
	cfg := raftnode.Config{
		ID: 1, DataDir: dir, Peers: []raftnode.Peer{{ID: 1, Addr: "mem://1"}},
		Transport: net.Transport(1), Applier: &raftnodetest.KV{},
	}
	tweak(&cfg)
	n, err := raftnode.Start(cfg)
	if err != nil {
		net.Close()
		t.Fatal(err)
	}
	return n, func() {
		n.Stop()
		net.Close()
	}
}
