package raftnode

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/wire"
)

// learnerSlack is how many entries a learner may trail the leader's commit
// index and still be promoted.
var learnerSlack uint64 = 1000

// AddLearner adds peer id, reachable at addr, as a non-voting member and
// returns once the change is applied on this peer. The new peer starts with
// an empty Peers list (and Config.Join naming members it can reach) and
// catches up from the leader (by snapshot if the log was compacted). Given
// a voter's id, it makes that voter a learner, as raft does.
func (n *Node) AddLearner(ctx context.Context, id uint64, addr string) error {
	return n.confChange(ctx, pb.ConfChangeAddLearnerNode, id, addr)
}

// AddVoter adds peer id as a voter directly (or promotes it if it is a
// learner). Prefer AddLearner then PromoteLearner for a new peer.
func (n *Node) AddVoter(ctx context.Context, id uint64, addr string) error {
	return n.confChange(ctx, pb.ConfChangeAddNode, id, addr)
}

// PromoteLearner makes learner id a voter. It must be called on the leader,
// and fails with ErrLearnerNotReady unless the learner is caught up.
func (n *Node) PromoteLearner(ctx context.Context, id uint64) error {
	var err error
	if e := n.do(ctx, func(l *loop) { err = l.checkPromotable(id) }); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	return n.confChange(ctx, pb.ConfChangeAddNode, id, "")
}

// RemovePeer removes peer id from the cluster; an id that is not a member
// gets ErrUnknownPeer. Removing the leader makes it step down; transfer
// leadership first to avoid an election. A removed follower learns of its
// removal (and stops with ErrRemoved) only if the commit reaches it before
// the leader, having applied the change, stops talking to it, which raft
// does not promise: to be sure a peer stops, make it the leader and remove
// it there (what concord's Leave does), or Stop it yourself.
func (n *Node) RemovePeer(ctx context.Context, id uint64) error {
	member := false
	if err := n.do(ctx, func(l *loop) {
		cs := l.st.confState()
		member = slices.Contains(cs.GetVoters(), id) || slices.Contains(cs.GetLearners(), id) ||
			slices.Contains(cs.GetVotersOutgoing(), id) || slices.Contains(cs.GetLearnersNext(), id)
	}); err != nil {
		return err
	}
	if !member {
		return fmt.Errorf("%w: %d", ErrUnknownPeer, id)
	}
	return n.confChange(ctx, pb.ConfChangeRemoveNode, id, "")
}

func (l *loop) checkPromotable(id uint64) error {
	if l.state != raft.StateLeader {
		return ErrNotLeader
	}
	st := l.rn.Status()
	pr, ok := st.Progress[id]
	if !ok {
		return fmt.Errorf("%w: %d", ErrUnknownPeer, id)
	}
	if !pr.IsLearner {
		return nil
	}
	if pr.Match+learnerSlack < st.GetCommit() {
		return fmt.Errorf("%w: match %d, commit %d", ErrLearnerNotReady, pr.Match, st.GetCommit())
	}
	return nil
}

func (n *Node) confChange(ctx context.Context, typ pb.ConfChangeType, id uint64, addr string) error {
	if id == 0 {
		return fmt.Errorf("%w: peer id 0", ErrUnknownPeer)
	}
	seq := n.seq.Add(1)
	cctx, err := proto.Marshal(&wire.Proposal{Origin: n.origin, Seq: seq, Data: []byte(addr)})
	if err != nil {
		return err
	}
	cc := &pb.ConfChangeV2{
		Changes: []*pb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(id)}},
		Context: cctx,
	}
	_, err = n.propose(ctx, &proposal{seq: seq, cc: cc, resC: make(chan result, 1)})
	return err
}

// TransferLeadership asks the leader to hand leadership to peer to and
// waits until to leads or ctx ends. It must be called on the leader or on
// peer to: raft forwards a transfer from a third peer in to's name, which
// the transport rightly drops as a spoofed sender, so a third peer gets
// ErrNotLeader.
func (n *Node) TransferLeadership(ctx context.Context, to uint64) error {
	if n.stopped() {
		return n.stoppedErr()
	}
	if n.Leader() != to && !n.IsLeader() && n.cfg.ID != to {
		return fmt.Errorf("%w: transfer leadership on the leader or on peer %d", ErrNotLeader, to)
	}
	for {
		ch := n.changedC()
		if n.Leader() == to {
			return nil
		}
		started := false
		if err := n.do(ctx, func(l *loop) { started = l.transfer(to) }); err != nil {
			return err
		}
		// raft gives up a transfer after an election timeout; one not
		// started (to is silent) is tried again after a heartbeat.
		wait := n.cfg.TickInterval * time.Duration(n.cfg.ElectionTicks)
		if !started {
			wait = n.cfg.TickInterval * time.Duration(n.cfg.HeartbeatTicks)
		}
		t := time.NewTimer(wait)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-n.doneC:
			t.Stop()
			return n.stoppedErr()
		}
		t.Stop()
	}
}

// changedC returns a channel closed at the next leader or term change.
func (n *Node) changedC() <-chan struct{} { return *n.changed.Load() }

// WaitLeader blocks until some leader is known to this peer and returns
// its id.
func (n *Node) WaitLeader(ctx context.Context) (uint64, error) {
	for {
		ch := n.changedC()
		if id := n.Leader(); id != raft.None {
			return id, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-n.doneC:
			return 0, n.stoppedErr()
		}
	}
}
