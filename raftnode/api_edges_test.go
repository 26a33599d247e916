package raftnode_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
	"github.com/concordkv/concord/transport"
)

// leadingLone starts a lone in-memory peer and waits until it leads.
func leadingLone(t *testing.T) (*raftnode.Node, context.Context) {
	t.Helper()
	n, err := startLone(t, &raftnodetest.KV{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if _, err := n.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return n, ctx
}

// startLone starts a lone in-memory peer with applier a, stopped at cleanup.
func startLone(t *testing.T, a raftnode.Applier, tune func(*raftnode.Config)) (*raftnode.Node, error) {
	t.Helper()
	net := transport.NewNetwork(1)
	t.Cleanup(func() { net.Close() })
	cfg := raftnode.Config{ID: 1, Peers: []raftnode.Peer{{ID: 1, Addr: "mem://1"}}, Transport: net.Transport(1), Applier: a}
	if tune != nil {
		tune(&cfg)
	}
	n, err := raftnode.Start(cfg)
	if err == nil {
		t.Cleanup(func() { n.Stop() })
	}
	return n, err
}

func TestNegativeLimitsRefused(t *testing.T) {
	for _, tune := range []func(*raftnode.Config){
		func(c *raftnode.Config) { c.MaxInflightMsgs = -1 },
		func(c *raftnode.Config) { c.MaxProposalBatch = -1 },
	} {
		if _, err := startLone(t, &raftnodetest.KV{}, tune); !errors.Is(err, raftnode.ErrInvalidConfig) {
			t.Fatalf("Start: %v, want ErrInvalidConfig", err)
		}
	}
}

// TestStoppedPeerLeadsNothing: a stopped peer is no one's leader and
// leadership calls on it return ErrStopped.
func TestStoppedPeerLeadsNothing(t *testing.T) {
	n, ctx := leadingLone(t)
	n.Stop()
	if n.IsLeader() || n.Leader() != 0 {
		t.Fatalf("stopped peer: IsLeader %v, Leader %d", n.IsLeader(), n.Leader())
	}
	if _, err := n.WaitLeader(ctx); !errors.Is(err, raftnode.ErrStopped) {
		t.Fatalf("WaitLeader on a stopped peer: %v", err)
	}
	if err := n.TransferLeadership(ctx, 1); !errors.Is(err, raftnode.ErrStopped) {
		t.Fatalf("TransferLeadership on a stopped peer: %v", err)
	}
}

func TestRemoveUnknownPeer(t *testing.T) {
	n, ctx := leadingLone(t)
	if err := n.ReadIndex(ctx); err != nil { // the term's first entry is committed
		t.Fatal(err)
	}
	before := n.Status().Commit
	if err := n.RemovePeer(ctx, 99); !errors.Is(err, raftnode.ErrUnknownPeer) {
		t.Fatalf("RemovePeer of a non-member: %v, want ErrUnknownPeer", err)
	}
	if after := n.Status().Commit; after != before {
		t.Fatalf("a refused RemovePeer moved the commit index from %d to %d", before, after)
	}
}

// reservedApplier writes its command as a key.
type reservedApplier struct{}

func (reservedApplier) Apply(txn *raftnode.Txn, _ uint64, cmd []byte) ([]byte, error) {
	return nil, txn.Set(append([]byte(nil), cmd...), []byte("v"))
}
func (reservedApplier) Snapshot(*badger.Txn, io.Writer) error { return nil }
func (reservedApplier) Restore(*badger.DB, io.Reader) error   { return nil }

// TestApplierCannotWriteRaftnodeKeys: raftnode keeps its log and applied
// index in the applier's DB; an Apply writing there fails (and the peer
// stops with the error) rather than overwriting them.
func TestApplierCannotWriteRaftnodeKeys(t *testing.T) {
	n, err := startLone(t, reservedApplier{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.Propose(ctx, []byte("s/ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Propose(ctx, []byte("a/index")); !errors.Is(err, raftnode.ErrReservedKey) {
		t.Fatalf("Apply writing a/index: %v, want ErrReservedKey", err)
	}
	if err := raftnode.LoadPrefix(n.DB(), []byte("a/"), nil); !errors.Is(err, raftnode.ErrReservedKey) {
		t.Fatalf("LoadPrefix(a/): %v, want ErrReservedKey", err)
	}
}
