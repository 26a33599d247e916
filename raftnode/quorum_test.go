package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
)

// quorumService answers "<id>:<req>" and records, for each call it
// serves, its term and the peer's durable term at that moment.
type quorumService struct {
	id   uint64
	node func() *raftnode.Node

	mu     sync.Mutex
	served [][2]uint64 // guarded by mu: call term, durable term
}

func (s *quorumService) ServeQuorum(from, term uint64, req []byte) ([]byte, bool) {
	s.mu.Lock()
	s.served = append(s.served, [2]uint64{term, s.node().Status().Term})
	s.mu.Unlock()
	return fmt.Appendf(nil, "%d:%s", s.id, req), true
}

func quorumCluster(t *testing.T, seed int64) (*raftnodetest.Cluster, []*quorumService) {
	svcs := make([]*quorumService, 3)
	var c *raftnodetest.Cluster
	for i := range svcs {
		svcs[i] = &quorumService{id: uint64(i + 1), node: func() *raftnode.Node { return c.Node(i) }}
	}
	c = raftnodetest.NewCluster(t, raftnodetest.Options{Seed: seed, Configure: func(i int, cfg *raftnode.Config) {
		cfg.QuorumService = svcs[i]
	}})
	return c, svcs
}

// TestCallQuorum: the leader's call is answered by a quorum, itself
// included, and writes nothing to the log; a follower may not call, nor a
// leader for another term; with one follower cut off a quorum still
// answers; a leader cut off from both gets ErrNotLeader once it steps down.
func TestCallQuorum(t *testing.T) {
	c, _ := quorumCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ln := c.Node(lead)
	term, commit := ln.Status().Term, ln.Status().Commit
	ans, err := ln.CallQuorum(ctx, term, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ans) < 2 || string(ans[uint64(lead+1)]) != fmt.Sprintf("%d:a", lead+1) {
		t.Fatalf("answers %v: want a quorum with the leader's own", ans)
	}
	for id, a := range ans {
		if string(a) != fmt.Sprintf("%d:a", id) {
			t.Fatalf("peer %d answered %q", id, a)
		}
	}
	if got := ln.Status().Commit; got != commit {
		t.Fatalf("a quorum call moved the commit index from %d to %d", commit, got)
	}
	f := (lead + 1) % 3
	if _, err := c.Node(f).CallQuorum(ctx, term, []byte("b")); !errors.Is(err, raftnode.ErrNotLeader) {
		t.Fatalf("follower's call: %v, want ErrNotLeader", err)
	}
	if _, err := ln.CallQuorum(ctx, term+1, []byte("b")); !errors.Is(err, raftnode.ErrNotLeader) {
		t.Fatalf("call for another term: %v, want ErrNotLeader", err)
	}

	c.Isolate(f)
	ans, err = ln.CallQuorum(ctx, term, []byte("c"))
	if err != nil || len(ans) != 2 || ans[uint64(f+1)] != nil {
		t.Fatalf("with peer %d cut off: %v %v", f+1, ans, err)
	}
	c.Heal()
	c.Partition([]int{lead}, []int{(lead + 1) % 3, (lead + 2) % 3})
	if _, err := ln.CallQuorum(ctx, term, []byte("d")); !errors.Is(err, raftnode.ErrNotLeader) {
		t.Fatalf("cut-off leader's call: %v, want ErrNotLeader", err)
	}
}

// TestCallQuorumServedInTermOrder: under message drops and leader changes,
// every peer serves calls only of its durable term, so in term order, and
// every call that returns was answered by a quorum.
func TestCallQuorumServedInTermOrder(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	c, svcs := quorumCluster(t, seed)
	c.Network().SetDropRate(0.2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var settled atomic.Int64
	for round := range 6 {
		lead, err := c.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := c.Node(lead)
		term := n.Status().Term
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				ans, err := n.CallQuorum(cctx, term, fmt.Appendf(nil, "%d-%d", round, i))
				if err != nil {
					return // dropped past the deadline, or deposed
				}
				if len(ans) < 2 {
					t.Errorf("settled with %d answers", len(ans))
				}
				settled.Add(1)
			})
			if i == 10 {
				// Hand the lead over while calls are in flight.
				_ = n.TransferLeadership(ctx, uint64((lead+1)%3+1))
			}
		}
		wg.Wait()
	}
	if settled.Load() == 0 {
		t.Fatal("no call settled")
	}
	for i, s := range svcs {
		s.mu.Lock()
		var last uint64
		for _, sv := range s.served {
			if sv[0] != sv[1] || sv[0] < last {
				t.Errorf("peer %d served a call of term %d with durable term %d after one of term %d", i+1, sv[0], sv[1], last)
			}
			last = sv[0]
		}
		t.Logf("peer %d served %d calls", i+1, len(s.served))
		s.mu.Unlock()
	}
	t.Logf("%d calls settled", settled.Load())
}
