package raftnode

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/wire"
)

// ErrNotPristine is returned by Bootstrap on a peer that already has raft
// state: a log, a vote or a term.
var ErrNotPristine = errors.New("raftnode: peer already has raft state")

// Bootstrap starts a new cluster with peers as its voters on a peer that
// was started with no Peers and has no raft state yet, as if it had been
// started with them: every peer bootstrapped with the same list has the
// same initial log. It fails with ErrNotPristine once the peer has any raft
// state (it may have been added to a cluster, or have voted, meanwhile),
// since bootstrapping then could undo a vote.
func (n *Node) Bootstrap(ctx context.Context, peers []Peer) error {
	if len(peers) == 0 || !slices.ContainsFunc(peers, func(p Peer) bool { return p.ID == n.cfg.ID }) {
		return fmt.Errorf("%w: bootstrap peers must include this peer's ID %d", ErrInvalidConfig, n.cfg.ID)
	}
	peers = slices.Clone(peers)
	slices.SortFunc(peers, func(a, b Peer) int { return cmp.Compare(a.ID, b.ID) })
	var err error
	e := n.do(ctx, func(l *loop) { err = l.bootstrap(peers) })
	return errors.Join(e, err)
}

func (l *loop) bootstrap(peers []Peer) error {
	hs, _, _ := l.st.InitialState()
	last, _ := l.st.LastIndex()
	if !raft.IsEmptyHardState(hs) || last != 0 || l.rn.HasReady() || l.rn.BasicStatus().HardState.GetTerm() != 0 {
		return ErrNotPristine
	}
	rps := make([]raft.Peer, len(peers))
	for i, p := range peers {
		rps[i] = raft.Peer{ID: p.ID, Context: []byte(p.Addr)}
		if p.ID != l.n.cfg.ID {
			l.n.tr.AddPeer(p.ID, p.Addr)
		}
	}
	if err := l.rn.Bootstrap(rps); err != nil {
		return fmt.Errorf("raftnode: bootstrap: %w", err)
	}
	l.lone = len(peers) == 1
	l.campaignLone()
	return nil
}

// Hint tells the transport where peer id listens, unless the replicated
// membership already knows its address: a peer waiting to be added to a
// cluster (or to bootstrap one) needs the others' addresses to answer them
// before its log tells it. Hints never override replicated addresses.
func (n *Node) Hint(ctx context.Context, id uint64, addr string) error {
	if id == 0 || id == n.cfg.ID || addr == "" {
		return nil
	}
	return n.do(ctx, func(l *loop) {
		if _, ok := n.Peers()[id]; !ok {
			n.tr.AddPeer(id, addr)
		}
	})
}

// Progress is what the leader knows of a member's replication.
type Progress struct {
	// Match is the highest log index known to be on the member.
	Match uint64
	// RecentActive tells that the leader heard from the member within the
	// last election timeout.
	RecentActive bool
	// IsLearner tells a non-voting member.
	IsLearner bool
}

// Progress returns the leader's view of every member's replication, and
// its commit index. On a peer that does not lead it returns ErrNotLeader.
func (n *Node) Progress(ctx context.Context) (map[uint64]Progress, uint64, error) {
	var out map[uint64]Progress
	var commit uint64
	err := n.do(ctx, func(l *loop) {
		if l.state != raft.StateLeader {
			return
		}
		out = map[uint64]Progress{}
		commit = l.rn.BasicStatus().HardState.GetCommit()
		l.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
			out[id] = Progress{Match: pr.Match, RecentActive: pr.RecentActive || id == n.cfg.ID, IsLearner: pr.IsLearner}
		})
	})
	if err != nil {
		return nil, 0, err
	}
	if out == nil {
		return nil, 0, ErrNotLeader
	}
	return out, commit, nil
}

// Reconfigure changes the roles of existing members at once: promote
// learners to voters, demote voters to learners, remove members. More than
// one change goes through joint consensus (raft leaves the joint
// configuration by itself), so that, e.g., two learners become voters
// together and the voter count never passes through an even number. It must
// be called on the leader, outside a joint configuration; a promoted
// learner must be caught up (ErrLearnerNotReady otherwise). It returns once
// the change is applied on this peer.
func (n *Node) Reconfigure(ctx context.Context, promote, demote, remove []uint64) error {
	var changes []*pb.ConfChangeSingle
	add := func(typ pb.ConfChangeType, ids []uint64) {
		for _, id := range ids {
			changes = append(changes, &pb.ConfChangeSingle{Type: typ.Enum(), NodeId: new(id)})
		}
	}
	add(pb.ConfChangeAddNode, promote)
	add(pb.ConfChangeAddLearnerNode, demote)
	add(pb.ConfChangeRemoveNode, remove)
	if len(changes) == 0 {
		return nil
	}
	var err error
	e := n.do(ctx, func(l *loop) { err = l.checkReconfigure(promote, demote, remove) })
	if err = errors.Join(e, err); err != nil {
		return err
	}
	seq := n.seq.Add(1)
	cctx, err := proto.Marshal(&wire.Proposal{Origin: n.origin, Seq: seq})
	if err != nil {
		return err
	}
	// The default transition: a single change is simple, several go
	// through joint consensus that raft leaves by itself.
	cc := &pb.ConfChangeV2{Changes: changes, Context: cctx}
	_, err = n.propose(ctx, &proposal{seq: seq, cc: cc, resC: make(chan result, 1)})
	return err
}

func (l *loop) checkReconfigure(promote, demote, remove []uint64) error {
	if l.state != raft.StateLeader {
		return ErrNotLeader
	}
	cs := l.st.confState()
	if len(cs.GetVotersOutgoing()) > 0 {
		return fmt.Errorf("%w: a joint configuration is still being left", ErrConfChangeInProgress)
	}
	member := func(id uint64) bool {
		return slices.Contains(cs.GetVoters(), id) || slices.Contains(cs.GetLearners(), id)
	}
	for _, id := range promote {
		if err := l.checkPromotable(id); err != nil {
			return err
		}
	}
	for _, id := range demote {
		if !slices.Contains(cs.GetVoters(), id) {
			return fmt.Errorf("%w: %d is not a voter", ErrUnknownPeer, id)
		}
	}
	for _, id := range remove {
		if !member(id) {
			return fmt.Errorf("%w: %d", ErrUnknownPeer, id)
		}
	}
	return nil
}

// ErrConfChangeInProgress is returned by Reconfigure while an earlier
// membership change is not finished.
var ErrConfChangeInProgress = errors.New("raftnode: membership change in progress")
