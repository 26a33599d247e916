package raftnode

import (
	"context"
	"sync/atomic"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/quorum"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/wire"
)

// QuorumService serves the leader's quorum calls ([Node.CallQuorum]) on
// every voter, the leader included.
type QuorumService interface {
	// ServeQuorum answers req, a quorum call of the leader of term (from
	// is this peer's own id when it leads). raftnode calls it on the raft
	// goroutine, and only while this peer's durable term (its raft term as
	// last persisted) is term: so every call of an earlier term it ever
	// serves comes before it, and every call of a later term after it, a
	// restart included. It must not block nor call into the Node. It
	// returns the answer, or ok false to refuse the call, which then
	// counts as unanswered. A call may be served more than once.
	ServeQuorum(from, term uint64, req []byte) (resp []byte, ok bool)
}

// qcall is one CallQuorum awaiting a quorum of answers.
type qcall struct {
	seq, term uint64
	req       []byte
	resC      chan qresult // buffered 1; written once by the loop
	canceled  atomic.Bool

	answers map[uint64][]byte // loop-owned, by voter
	sentAt  uint64            // loop-owned: tick of the last send
}

type qresult struct {
	answers map[uint64][]byte
	err     error
}

// CallQuorum sends req to the QuorumService of every voter, this peer's
// own included, and returns their answers by voter id once the voters that
// answered are a quorum (of both halves of a joint configuration). Only the
// leader of term may call it: it returns ErrNotLeader unless this peer
// leads in term (with term durable), and as soon as it no longer does.
// Voters that have not answered are asked again every heartbeat. Nothing
// is written to the log.
func (n *Node) CallQuorum(ctx context.Context, term uint64, req []byte) (map[uint64][]byte, error) {
	q := &qcall{seq: n.seq.Add(1), term: term, req: req, resC: make(chan qresult, 1), answers: map[uint64][]byte{}}
	r, err := submit(ctx, n, n.ctlC, func(l *loop) { l.addQuorumCall(q) }, q.resC, &q.canceled)
	if err != nil {
		return nil, err
	}
	return r.answers, r.err
}

// leadsIn tells whether this peer leads in term, with term durable.
func (l *loop) leadsIn(term uint64) bool {
	return l.state == raft.StateLeader && l.n.Status().Term == term && l.durableTerm() == term
}

// durableTerm returns the newest term this peer has made durable: the
// hard state is written unsynced, and the syncer syncs it. In memory,
// the current term.
func (l *loop) durableTerm() uint64 {
	if l.sy == nil {
		return l.n.Status().Term
	}
	return l.sy.durableTerm()
}

// addQuorumCall registers q and sends it to every voter.
func (l *loop) addQuorumCall(q *qcall) {
	if !l.leadsIn(q.term) {
		q.resC <- qresult{err: ErrNotLeader}
		return
	}
	l.qcalls[q.seq] = q
	l.sendQuorumCall(q)
}

// sendQuorumCall asks the voters that have not answered q, this peer
// first, then settles q if that makes a quorum.
func (l *loop) sendQuorumCall(q *qcall) {
	q.sentAt = max(l.tick, 1)
	n := l.n
	cs := l.st.confState()
	var data []byte
	send := func(id uint64) {
		if _, ok := q.answers[id]; ok {
			return
		}
		if id == n.cfg.ID {
			if n.cfg.QuorumService != nil {
				if resp, ok := n.cfg.QuorumService.ServeQuorum(id, q.term, q.req); ok {
					q.answers[id] = resp
				}
			}
			return
		}
		if data == nil {
			var err error
			data, err = proto.Marshal(&wire.PeerCall{Kind: callQuorumRequest, Origin: n.origin, Seq: q.seq, Term: q.term, Data: q.req})
			if err != nil {
				return // unreachable for well-formed messages
			}
		}
		n.tr.Send([]*pb.Message{{Type: callMsgType.Enum(), To: new(id), From: new(n.cfg.ID), Context: data}})
	}
	for _, id := range cs.GetVoters() {
		send(id)
	}
	for _, id := range cs.GetVotersOutgoing() {
		send(id)
	}
	l.settleQuorumCall(q)
}

// settleQuorumCall hands q its answers once they come from a quorum of
// the current configuration.
func (l *loop) settleQuorumCall(q *qcall) {
	cs := l.st.confState()
	votes := make(map[uint64]bool, len(q.answers))
	for id := range q.answers {
		votes[id] = true
	}
	jc := quorum.JointConfig{majority(cs.GetVoters()), majority(cs.GetVotersOutgoing())}
	if jc.VoteResult(votes) == quorum.VoteWon {
		delete(l.qcalls, q.seq)
		q.resC <- qresult{answers: q.answers}
	}
}

func majority(ids []uint64) quorum.MajorityConfig {
	if len(ids) == 0 {
		return nil
	}
	m := make(quorum.MajorityConfig, len(ids))
	for _, id := range ids {
		m[id] = struct{}{}
	}
	return m
}

// tickQuorumCalls drops abandoned calls and those of a term this peer no
// longer leads in, and asks again the voters that have not answered.
func (l *loop) tickQuorumCalls() {
	every := uint64(l.n.cfg.HeartbeatTicks)
	for seq, q := range l.qcalls {
		switch {
		case q.canceled.Load():
			delete(l.qcalls, seq)
		case !l.leadsIn(q.term):
			delete(l.qcalls, seq)
			q.resC <- qresult{err: ErrNotLeader}
		case l.tick-q.sentAt >= every:
			l.sendQuorumCall(q)
		}
	}
}

// dropQuorumCalls fails the calls of a term this peer no longer leads in.
func (l *loop) dropQuorumCalls() {
	for seq, q := range l.qcalls {
		if !l.leadsIn(q.term) {
			delete(l.qcalls, seq)
			q.resC <- qresult{err: ErrNotLeader}
		}
	}
}

// onQuorumRequest serves a quorum call of the leader from, if this peer's
// durable term is the call's.
func (l *loop) onQuorumRequest(from uint64, pc *wire.PeerCall) {
	n := l.n
	if n.cfg.QuorumService == nil || pc.GetTerm() != n.Status().Term || pc.GetTerm() != l.durableTerm() {
		return // the caller asks again; a stale one gives up
	}
	resp, ok := n.cfg.QuorumService.ServeQuorum(from, pc.GetTerm(), pc.GetData())
	if ok {
		l.sendPeerCall(from, &wire.PeerCall{Kind: callQuorumAnswer, Origin: pc.GetOrigin(), Seq: pc.GetSeq(), Term: pc.GetTerm(), Data: resp})
	}
}

// onQuorumAnswer records a voter's answer to one of this peer's calls.
func (l *loop) onQuorumAnswer(from uint64, pc *wire.PeerCall) {
	q, ok := l.qcalls[pc.GetSeq()]
	if !ok || pc.GetOrigin() != l.n.origin || pc.GetTerm() != q.term {
		return
	}
	q.answers[from] = pc.GetData()
	l.settleQuorumCall(q)
}
