package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
	"github.com/concordkv/concord/transport"
)

// startEmpty starts n peers with no Peers (pristine) on one network.
func startEmpty(t *testing.T, net *transport.Network, ids ...uint64) []*raftnode.Node {
	t.Helper()
	var out []*raftnode.Node
	for _, id := range ids {
		n, err := raftnode.Start(raftnode.Config{
			ID: id, Transport: net.Transport(id), Applier: &raftnodetest.KV{},
			TickInterval: 5 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Stop() })
		out = append(out, n)
	}
	// A pristine peer learns where the others are from hints.
	for _, n := range out {
		for _, id := range ids {
			if err := n.Hint(context.Background(), id, fmt.Sprintf("mem://%d", id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestBootstrapLate: pristine peers that bootstrap later with the same
// list form one cluster, also when one of them never calls Bootstrap and
// catches up from the others instead; a peer that has raft state refuses.
func TestBootstrapLate(t *testing.T) {
	net := transport.NewNetwork(1)
	defer net.Close()
	ps := startEmpty(t, net, 1, 2, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	peers := []raftnode.Peer{{ID: 3, Addr: "mem://3"}, {ID: 1, Addr: "mem://1"}, {ID: 2, Addr: "mem://2"}}
	for _, p := range ps[:2] {
		if err := p.Bootstrap(ctx, peers); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ps[0].Propose(ctx, raftnodetest.PutCmd("k", "v")); err != nil {
		t.Fatal(err)
	}
	// Peer 3 never bootstrapped: it voted or received the log by now, or
	// will; either way it ends up with the same state.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, ok, _ := raftnodetest.Get(ps[2].DB(), "k"); ok && v == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("peer 3 never caught up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := ps[2].Bootstrap(ctx, peers); !errors.Is(err, raftnode.ErrNotPristine) {
		t.Fatalf("Bootstrap on a peer with state: %v, want ErrNotPristine", err)
	}
	if err := ps[0].Bootstrap(ctx, []raftnode.Peer{{ID: 2}}); !errors.Is(err, raftnode.ErrInvalidConfig) {
		t.Fatalf("Bootstrap without self: %v", err)
	}
}

// TestReconfigureJoint: two learners become voters in one joint change, a
// voter is demoted and a member removed, and the configuration ends
// non-joint; bad requests are refused before anything is proposed.
func TestReconfigureJoint(t *testing.T) {
	net := transport.NewNetwork(1)
	defer net.Close()
	ps := startEmpty(t, net, 1, 2, 3, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ps[0].Bootstrap(ctx, []raftnode.Peer{{ID: 1, Addr: "mem://1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ps[0].WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{2, 3, 4} {
		if err := ps[0].AddLearner(ctx, id, fmt.Sprintf("mem://%d", id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ps[0].Propose(ctx, raftnodetest.PutCmd("k", "v")); err != nil {
		t.Fatal(err)
	}
	if err := ps[0].Reconfigure(ctx, nil, []uint64{2}, nil); !errors.Is(err, raftnode.ErrUnknownPeer) {
		t.Fatalf("demoting a learner: %v", err)
	}
	if err := ps[1].Reconfigure(ctx, []uint64{2}, nil, nil); !errors.Is(err, raftnode.ErrNotLeader) {
		t.Fatalf("on a follower: %v", err)
	}
	// Learners catch up; then 2 and 3 become voters together.
	for {
		err := ps[0].Reconfigure(ctx, []uint64{2, 3}, nil, nil)
		if err == nil {
			break
		}
		if !errors.Is(err, raftnode.ErrLearnerNotReady) || ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitStatus(ctx, t, ps[0], func(st raftnode.Status) bool {
		return !st.Joint && slices.Equal(st.Voters, []uint64{1, 2, 3}) && slices.Equal(st.Learners, []uint64{4})
	})
	prog, commit, err := ps[0].Progress(ctx)
	if err != nil || len(prog) != 4 || commit == 0 || !prog[1].RecentActive || !prog[4].IsLearner {
		t.Fatalf("Progress = %+v %d %v", prog, commit, err)
	}
	if _, _, err := ps[1].Progress(ctx); !errors.Is(err, raftnode.ErrNotLeader) {
		t.Fatalf("Progress on a follower: %v", err)
	}
	// Demote 3 and remove 4 at once.
	if err := ps[0].Reconfigure(ctx, nil, []uint64{3}, []uint64{4}); err != nil {
		t.Fatal(err)
	}
	waitStatus(ctx, t, ps[0], func(st raftnode.Status) bool {
		return !st.Joint && slices.Equal(st.Voters, []uint64{1, 2}) && slices.Equal(st.Learners, []uint64{3})
	})
}

func waitStatus(ctx context.Context, t *testing.T, n *raftnode.Node, ok func(raftnode.Status) bool) {
	t.Helper()
	for !ok(n.Status()) {
		if ctx.Err() != nil {
			t.Fatalf("status never matched: %+v", n.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
