package raftnode_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
)

type hookApplier struct {
	raftnode.Applier
	hook func(cmd []byte)
}

func (h hookApplier) Apply(txn *raftnode.Txn, index uint64, cmd []byte) ([]byte, error) {
	h.hook(cmd)
	return h.Applier.Apply(txn, index, cmd)
}

// TestProposalRetriedPastDedupWindow: a follower's proposal is applied by
// the leader just as the follower is cut off; the log then moves on past
// the duplicate window before the follower is back and proposes it again.
// The late copy is refused (a proposer still waiting gets
// ErrProposalExpired), never applied a second time.
func TestProposalRetriedPastDedupWindow(t *testing.T) {
	old := raftnode.SetDedupWindowForTest(100)
	defer raftnode.SetDedupWindowForTest(old)
	conclusive := 0
	for attempt := 0; attempt < 30 && conclusive < 4; attempt++ {
		if proposalRetriedPastWindow(t) {
			conclusive++
		}
	}
	if conclusive < 4 {
		t.Fatalf("%d runs of 4 cut the follower off before it saw its result", conclusive)
	}
}

// proposalRetriedPastWindow runs the scenario once; false if the follower
// saw its result before the cut (nothing was retried).
func proposalRetriedPastWindow(t *testing.T) bool {
	var cl atomic.Pointer[raftnodetest.Cluster]
	var target atomic.Int64
	var isolated atomic.Bool
	target.Store(-1)
	once := string(raftnodetest.AppendCmd([]byte("ONCE")))
	c, ctx, lead := leadCluster(t, raftnodetest.Options{
		Configure: func(i int, cfg *raftnode.Config) {
			cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 200, 50
			cfg.Applier = hookApplier{cfg.Applier, func(cmd []byte) {
				if string(cmd) == once && int64(i) != target.Load() {
					if f := target.Load(); f >= 0 && isolated.CompareAndSwap(false, true) {
						cl.Load().Isolate(int(f))
					}
				}
			}}
		},
	})
	cl.Store(c)
	f := (lead + 1) % 3
	target.Store(int64(f))
	p := c.Node(lead)
	res := make(chan error, 1)
	go func() {
		_, err := c.Node(f).Propose(ctx, raftnodetest.AppendCmd([]byte("ONCE")))
		res <- err
	}()
	count := func(i int) int {
		cmds, _ := c.Peer(i).KV.Applied()
		n := 0
		for _, cmd := range cmds {
			if string(cmd) == once {
				n++
			}
		}
		return n
	}
	waitUntil(ctx, t, "the leader to apply the follower's command", func() bool { return count(lead) >= 1 })
	at := p.AppliedIndex()
	model := map[string]string{}
	for i := 0; p.AppliedIndex() < at+400; i++ {
		putKeys(ctx, t, p, model, i, i+1, "b")
	}
	select {
	case <-res:
		c.Heal()
		return false
	default:
	}
	c.Heal()
	var err error
	select {
	case err = <-res:
	case <-ctx.Done():
		t.Fatal("the follower's Propose never returned")
	}
	waitUntil(ctx, t, "catch up", func() bool { return c.Node(f).AppliedIndex() >= p.AppliedIndex() })
	if n := count(lead); n != 1 {
		t.Fatalf("the follower's command was applied %d times on the leader (Propose: %v)", n, err)
	}
	// nil if the follower applied the first copy from its own log; the
	// late copy, if any, was refused either way.
	if err != nil && !errors.Is(err, raftnode.ErrProposalExpired) && !errors.Is(err, raftnode.ErrAppliedBySnapshot) {
		t.Fatalf("Propose after the cut: %v, want nil, ErrProposalExpired or ErrAppliedBySnapshot", err)
	}
	return true
}
