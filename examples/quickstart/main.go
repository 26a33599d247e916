// Quickstart demonstrates how concord's raft peer replicates: three peers in
// one process on TCP loopback, each with its own data dir, replicate writes
// made on any of them; the leader stops, writes go on under a new leader,
// and the old leader comes back and catches up.
//
// Run it with:
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
	"github.com/concordkv/concord/transport"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

type peer struct {
	id   uint64
	addr string
	dir  string
	node *raftnode.Node
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, err := os.MkdirTemp("", "concord-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)

	// Reserve three loopback addresses: each peer's transport listens first,
	// so that the initial cluster can name every address.
	peers := make([]*peer, 3)
	trs := make([]*transport.TCP, 3)
	for i := range peers {
		tr, err := transport.NewTCP(transport.TCPConfig{ID: uint64(i + 1), ListenAddr: "127.0.0.1:0"})
		if err != nil {
			return err
		}
		trs[i] = tr
		peers[i] = &peer{id: uint64(i + 1), addr: tr.Addr(), dir: fmt.Sprintf("%s/peer%d", root, i+1)}
	}
	for i, p := range peers {
		if p.node, err = start(peers, p, trs[i]); err != nil {
			return err
		}
	}
	defer func() {
		for _, p := range peers {
			if p.node != nil {
				p.node.Stop()
			}
		}
	}()

	lead, err := peers[0].node.WaitLeader(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("3 peers up, peer %d leads\n", lead)

	// Writes on any peer: followers forward to the leader.
	for i, p := range peers {
		key := fmt.Sprintf("greeting/%d", i+1)
		if _, err := p.node.Propose(ctx, raftnodetest.PutCmd(key, "hello from peer "+fmt.Sprint(p.id))); err != nil {
			return err
		}
	}
	if err := show(ctx, peers, "greeting/3"); err != nil {
		return err
	}

	// The leader stops; the other two elect a new one and go on.
	old := peers[lead-1]
	fmt.Printf("stopping leader %d\n", old.id)
	if err := old.node.Stop(); err != nil {
		return err
	}
	old.node = nil
	other := peers[lead%3]
	newLead, err := waitNewLeader(ctx, other.node, lead)
	if err != nil {
		return err
	}
	fmt.Printf("peer %d leads now\n", newLead)
	for i := 0; i < 100; i++ {
		if _, err := other.node.Propose(ctx, raftnodetest.PutCmd("counter", fmt.Sprint(i+1))); err != nil {
			return err
		}
	}
	fmt.Println("100 writes committed without the old leader")

	// The old leader restarts on its data dir and catches up.
	tr, err := transport.NewTCP(transport.TCPConfig{ID: old.id, ListenAddr: old.addr})
	if err != nil {
		return err
	}
	if old.node, err = start(peers, old, tr); err != nil {
		return err
	}
	fmt.Printf("peer %d restarted from %s\n", old.id, old.dir)
	return show(ctx, peers, "counter")
}

func start(peers []*peer, p *peer, tr transport.Transport) (*raftnode.Node, error) {
	var initial []raftnode.Peer
	for _, q := range peers {
		initial = append(initial, raftnode.Peer{ID: q.id, Addr: q.addr})
	}
	return raftnode.Start(raftnode.Config{
		ID: p.id, DataDir: p.dir, Peers: initial,
		Transport: tr, Applier: &raftnodetest.KV{},
		TickInterval: 20 * time.Millisecond,
	})
}

// show prints key as every peer sees it after a linearizable read barrier.
func show(ctx context.Context, peers []*peer, key string) error {
	for _, p := range peers {
		if err := p.node.ReadIndex(ctx); err != nil {
			return err
		}
		v, _, err := raftnodetest.Get(p.node.DB(), key)
		if err != nil {
			return err
		}
		fmt.Printf("  peer %d reads %s = %q\n", p.id, key, v)
	}
	return nil
}

func waitNewLeader(ctx context.Context, n *raftnode.Node, old uint64) (uint64, error) {
	for {
		id, err := n.WaitLeader(ctx)
		if err != nil {
			return 0, err
		}
		if id != old {
			return id, nil
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}
