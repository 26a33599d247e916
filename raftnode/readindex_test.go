package raftnode_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
	"github.com/concordkv/concord/transport"
)

// TestReadIndexStop: reads waiting on a peer that has no leader (one of
// three, alone) return ErrStopped when it stops, and reads after the stop
// return it at once; a read whose ctx ends returns ctx's error.
func TestReadIndexStop(t *testing.T) {
	net := transport.NewNetwork(3)
	defer net.Close()
	n, err := raftnode.Start(raftnode.Config{
		ID: 1, Peers: []raftnode.Peer{{ID: 1, Addr: "mem://1"}, {ID: 2, Addr: "mem://2"}, {ID: 3, Addr: "mem://3"}},
		Transport: net.Transport(1), Applier: &raftnodetest.KV{},
		TickInterval: time.Hour, // never elects itself
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := n.ReadIndex(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadIndex without a leader, ctx ended: %v", err)
	}
	const readers = 8
	errc := make(chan error, readers)
	for range readers {
		go func() { errc <- n.ReadIndex(ctx) }()
	}
	select {
	case err := <-errc:
		t.Fatalf("a read without a leader returned: %v", err)
	case <-time.After(50 * time.Millisecond): // they wait (bounded check)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	for range readers {
		if err := <-errc; !errors.Is(err, raftnode.ErrStopped) {
			t.Fatalf("waiting read after Stop: %v, want ErrStopped", err)
		}
	}
	if err := n.ReadIndex(ctx); !errors.Is(err, raftnode.ErrStopped) {
		t.Fatalf("read after Stop: %v, want ErrStopped", err)
	}
}
