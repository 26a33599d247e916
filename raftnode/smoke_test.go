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

func TestLonePeerLeadsAtOnce(t *testing.T) {
	net := transport.NewNetwork(1)
	defer net.Close()
	start := time.Now()
	n, err := raftnode.Start(raftnode.Config{
		ID: 1, Peers: []raftnode.Peer{{ID: 1, Addr: "mem://1"}},
		Transport: net.Transport(1), Applier: &raftnodetest.KV{},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := n.Propose(ctx, raftnodetest.PutCmd("k", "v1"))
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if len(res) != 0 {
		t.Fatalf("previous value %q, want none", res)
	}
	// The default election timeout is 1s: a lone peer must not wait for it.
	if took > 500*time.Millisecond {
		t.Fatalf("first proposal took %v: the lone peer waited for an election", took)
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
