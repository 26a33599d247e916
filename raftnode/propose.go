package raftnode

import (
	"context"
	"errors"
	"sync/atomic"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/wire"
)

// proposal is one Propose call (or conf change) awaiting its applied result.
type proposal struct {
	seq      uint64
	data     []byte             // command, or nil for a conf change
	cc       *pb.ConfChangeV2   // conf change, or nil
	member   *wire.MemberRecord // a member record (incarnation.go), or nil
	resC     chan result        // buffered 1; written once by the loop
	canceled atomic.Bool        // the caller gave up
	floor    uint64             // 1 + this peer's applied index at the first proposal (wire.Proposal.floor)

	proposedAt uint64 // loop-owned: tick of the last proposal to raft
	queued     bool   // loop-owned: in loop.toSend
}

type result struct {
	data []byte
	err  error
}

// Propose replicates data as one command and returns the Applier's result
// for it once it is applied on this peer. It works on any peer: followers
// forward to the leader, and a proposal that may have been lost (leader
// change, dropped message) is proposed again under the same id, which the
// apply path recognises, so a command applies once however often it is sent.
//
// If ctx ends first, Propose returns ctx.Err(); the command may or may not
// be applied later. If this peer catches up by installing a snapshot that
// already holds the command's effects, the command was applied (once) but
// its result is lost: Propose returns ErrAppliedBySnapshot.
func (n *Node) Propose(ctx context.Context, data []byte) ([]byte, error) {
	p := &proposal{seq: n.seq.Add(1), data: data, resC: make(chan result, 1)}
	return n.propose(ctx, p)
}

func (n *Node) propose(ctx context.Context, p *proposal) ([]byte, error) {
	p.floor = n.applied.Load() + 1
	r, err := submit(ctx, n, n.propC, p, p.resC, &p.canceled)
	if err != nil {
		return nil, err
	}
	return r.data, r.err
}

func (l *loop) addProposal(p *proposal) {
	l.pending[p.seq] = p
	if !p.queued {
		p.queued = true
		l.toSend = append(l.toSend, p)
	}
}

// flushProposals hands queued proposals to raft, packing commands into
// entries of at most MaxProposalBatch bytes.
func (l *loop) flushProposals() {
	if len(l.toSend) == 0 || l.lead == raft.None {
		return
	}
	var batch wire.ProposalBatch
	size := 0
	flush := func() {
		if len(batch.Proposals) == 0 {
			return
		}
		data, err := proto.Marshal(&batch)
		batch.Proposals, size = nil, 0
		if err != nil {
			return // unreachable for well-formed messages; retried later
		}
		l.step(&pb.Message{Type: pb.MsgProp.Enum(), From: new(l.n.cfg.ID), Entries: []*pb.Entry{{Data: data}}})
	}
	for _, p := range l.toSend {
		p.queued = false
		if p.canceled.Load() {
			delete(l.pending, p.seq)
			continue
		}
		p.proposedAt = l.tick
		if p.cc != nil {
			if err := l.rn.ProposeConfChange(p.cc); err != nil && !errors.Is(err, raft.ErrProposalDropped) {
				delete(l.pending, p.seq)
				p.resC <- result{err: err}
			}
			continue
		}
		if size > 0 && size+len(p.data) > l.n.cfg.MaxProposalBatch {
			flush()
		}
		batch.Proposals = append(batch.Proposals, &wire.Proposal{Origin: l.n.origin, Seq: p.seq, Data: p.data, Member: p.member, Floor: p.floor})
		size += len(p.data) + 24
	}
	flush()
	l.toSend = l.toSend[:0]
}

// ErrProposalExpired is returned by Propose for a command that was
// retried (after a leader change or a partition) until the log had moved
// more than the duplicate window past its first proposal: its copies
// committed that late are refused, not applied, since an earlier copy
// may have been applied and forgotten. Whether one was is not known here.
var ErrProposalExpired = errors.New("raftnode: proposal retried past the duplicate window; whether an earlier copy applied is unknown")

// ErrAppliedBySnapshot is returned by Propose for a command that was
// applied, exactly once, but that this peer received as part of a snapshot
// rather than as a log entry, so that the Applier's result for it is not
// known here.
var ErrAppliedBySnapshot = errors.New("raftnode: command applied through a snapshot; its result is unknown")

// answerSnapshotted answers the pending local proposals that a snapshot just
// installed has already applied. apply never sees them: their entries are
// below the snapshot, and a retried copy is skipped as a duplicate, so
// without this the proposal would be re-proposed every retry period, each
// time adding a useless entry to the log, for as long as its caller waits.
// Call it after the dedup table was reloaded from the snapshot.
func (l *loop) answerSnapshotted() {
	for seq, p := range l.pending {
		if _, ok := l.dedup.appliedAt(pid{l.n.origin, seq}); !ok {
			continue
		}
		delete(l.pending, seq)
		p.canceled.Store(true) // so that flushProposals drops it from toSend
		if p.cc != nil {
			p.resC <- result{} // a conf change has no result to lose
		} else {
			p.resC <- result{err: ErrAppliedBySnapshot}
		}
	}
}

// deliver hands an applied result to a waiting local proposer.
func (l *loop) deliver(seq uint64, r result) {
	if p, ok := l.pending[seq]; ok {
		delete(l.pending, seq)
		p.resC <- r
	}
}
