package raftnode

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/concordkv/concord/internal/wire"
	"github.com/concordkv/concord/transport"
)

// TestRemovedWhileMarkedStaysRemoved: a member marked to rejoin (as the
// guard marks a voter that came back with new data) that is then removed
// for good (RemovePeer, as Leave does) has its mark cleared and is not
// added back. From a helper's review: the first version added it back.
func TestRemovedWhileMarkedStaysRemoved(t *testing.T) {
	net := transport.NewNetwork(1)
	t.Cleanup(net.Close)
	peers := []Peer{{ID: 1, Addr: "mem://1"}, {ID: 2, Addr: "mem://2"}, {ID: 3, Addr: "mem://3"}}
	var nodes []*Node
	for i := uint64(1); i <= 3; i++ {
		n, err := Start(Config{ID: i, Peers: peers, Transport: net.Transport(i), Applier: nopApplier{},
			Incarnation: 100 + i, TickInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Stop() })
		nodes = append(nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait("every record everywhere", func() bool {
		for _, n := range nodes {
			for i := uint64(1); i <= 3; i++ {
				if inc, _ := n.Incarnation(i); inc != 100+i {
					return false
				}
			}
		}
		return true
	})
	var lead, victim *Node
	wait("a leader", func() bool {
		for _, n := range nodes {
			if n.IsLeader() {
				lead = n
				return true
			}
		}
		return false
	})
	for _, n := range nodes {
		if n != lead {
			victim = n
		}
	}
	v := victim.ID()
	if err := lead.recordMember(ctx, &wire.MemberRecord{Id: v, Rejoin: wire.MemberRecord_SET}); err != nil {
		t.Fatal(err)
	}
	wait("the mark applied on the member", func() bool { _, r := victim.Incarnation(v); return r })
	// Removed for good on the leader (a follower that removes itself may
	// never hear of the commit: see RemovePeer).
	if err := lead.RemovePeer(ctx, v); err != nil {
		t.Fatal(err)
	}
	wait("the mark cleared on the leader", func() bool { _, r := lead.Incarnation(v); return !r })
	// RemovePeer returns once the change is applied; the leader's status
	// follows at the end of that Ready.
	wait("the removal in the leader's status", func() bool {
		st := lead.Status()
		return !slices.Contains(st.Voters, v) && !slices.Contains(st.Learners, v)
	})
	// Give the leader's guard (every 100 ms here) 20 rounds to add it back.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		st := lead.Status()
		if slices.Contains(st.Voters, v) || slices.Contains(st.Learners, v) {
			t.Fatalf("member %x was removed for good but is a member again: voters %v, learners %v", v, st.Voters, st.Learners)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
