package raftnode_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
	"github.com/concordkv/concord/transport"
)

// TestMutualTLSKeepsOutForeignCA runs a cluster whose peers trust CA "a"
// and a fourth peer with a certificate from CA "b" that believes it is a
// member. The outsider can neither join (added as a learner, it never
// receives the log) nor inject anything (the members' transports hand
// over no message from it), while the members go on replicating.
func TestMutualTLSKeepsOutForeignCA(t *testing.T) {
	caA, err := raftnodetest.NewCA("a")
	if err != nil {
		t.Fatal(err)
	}
	caB, err := raftnodetest.NewCA("b")
	if err != nil {
		t.Fatal(err)
	}
	c := raftnodetest.NewCluster(t, raftnodetest.Options{
		Peers: 3, TCP: true,
		TLS: func(i int) *tls.Config {
			cfg, err := caA.PeerTLS(fmt.Sprint("peer", i+1))
			if err != nil {
				t.Fatal(err)
			}
			return cfg
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}

	rogueTLS, err := caB.PeerTLS("rogue")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := transport.NewTCP(transport.TCPConfig{ID: 4, ListenAddr: "127.0.0.1:0", TLS: rogueTLS})
	if err != nil {
		t.Fatal(err)
	}
	peers := []raftnode.Peer{{ID: 4, Addr: tr.Addr()}}
	for i := 0; i < 3; i++ {
		peers = append(peers, raftnode.Peer{ID: uint64(i + 1), Addr: c.Peer(i).Addr})
	}
	// The outsider bootstraps as if it were a voter of the cluster, so it
	// campaigns and sends to every member.
	rogue, err := raftnode.Start(raftnode.Config{
		ID: 4, Peers: peers, Transport: tr, Applier: &raftnodetest.KV{},
		TickInterval: 10 * time.Millisecond, ElectionTicks: 10, HeartbeatTicks: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Stop()
	// An operator mistake adds it: membership is not authentication.
	if err := c.Node(lead).AddLearner(ctx, 4, tr.Addr()); err != nil {
		t.Fatal(err)
	}
	term := c.Node(lead).Status().Term
	for i := 0; i < 300; i++ {
		if _, err := c.Node(i%3).Propose(ctx, raftnodetest.PutCmd(fmt.Sprint("k", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := c.Node(i).ReadIndex(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.Delivered(4); got != 0 {
		t.Fatalf("members received %d messages from the peer with a foreign certificate", got)
	}
	if c.Delivered(uint64(lead+1)) == 0 {
		t.Fatal("members received nothing from their leader: the count is broken")
	}
	if _, count, _ := raftnodetest.State(rogue.DB()); count != 0 {
		t.Fatalf("the outsider applied %d commands", count)
	}
	if st := rogue.Status(); st.Leader != 0 || st.Applied > 4 {
		t.Fatalf("the outsider sees leader %d, applied %d", st.Leader, st.Applied)
	}
	if now := c.Node(lead).Status(); now.Term != term || now.Leader != uint64(lead+1) {
		t.Fatalf("leadership disturbed: term %d -> %d, leader %d", term, now.Term, now.Leader)
	}
}
