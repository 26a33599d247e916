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

// LeaderService serves the calls peers make to the leader with
// [Node.CallLeader]: requests that need the leader's volatile state (such
// as a lease's remaining time) but no entry in the log.
type LeaderService interface {
	// ServeLeader answers req, sent by peer from (this peer's own id for
	// a local call). raftnode calls it on the raft goroutine, only while
	// this peer is the leader: it must not block nor call into the Node.
	// It must call reply exactly once, at once or later from any
	// goroutine; reply does not block and drops the answer if the caller
	// is gone. req belongs to ServeLeader; resp must not be modified after
	// reply. A call may be served more than once (it is sent again when
	// it may have been lost), so requests should be idempotent.
	ServeLeader(from uint64, req []byte, reply func(resp []byte))
}

// ErrNoLeaderService is returned by CallLeader on a peer started without
// Config.LeaderService.
var ErrNoLeaderService = errors.New("raftnode: no leader service configured")

// Calls travel outside the log as raftpb messages of callMsgType, their
// content in Context: a type raft only uses inside a process (IsLocalMsg),
// so no raft peer ever sends it, and raft refuses it if stepped. Transports
// treat it as any message, so their faults (drops, partitions) apply to
// calls as they do to raft's own traffic.
const callMsgType = pb.MsgCheckQuorum

// Kinds of wire.PeerCall.
const (
	callRequest   = 1
	callAnswer    = 2
	callNotLeader = 3

	callQuorumRequest = 4
	callQuorumAnswer  = 5
)

// call is one CallLeader awaiting its answer.
type call struct {
	seq      uint64
	req      []byte
	resC     chan []byte // buffered 1; written once by the loop
	canceled atomic.Bool

	sentAt uint64 // loop-owned: tick of the last send; 0 = to send
}

// callReply is an answer of the local service, for the loop to route.
type callReply struct {
	to, origin, seq uint64
	data            []byte
}

// CallLeader sends req to the leader's LeaderService and returns its
// answer. It works on every peer; on the leader the service is called
// directly. The leader serves it once it has applied as far as this peer
// had when it sent the call, so the service knows everything the caller
// does (a follower may apply a commit before the leader). A call that may
// have been lost (the leader changed, a message was dropped) is sent
// again, to the leader of the moment, until it is answered or ctx ends.
// Nothing is written to the log.
func (n *Node) CallLeader(ctx context.Context, req []byte) ([]byte, error) {
	if n.cfg.LeaderService == nil {
		return nil, ErrNoLeaderService
	}
	c := &call{seq: n.seq.Add(1), req: req, resC: make(chan []byte, 1)}
	return submit(ctx, n, n.ctlC, func(l *loop) { l.addCall(c) }, c.resC, &c.canceled)
}

// Changed returns a channel closed at the next change of the leader, of
// this peer's role, of the term or of Status.ConfIndex; read Status then.
func (n *Node) Changed() <-chan struct{} { return n.changedC() }

// reply returns the reply function for a call served here.
func (n *Node) reply(to, origin, seq uint64) func([]byte) {
	var once atomic.Bool
	return func(data []byte) {
		if once.Swap(true) {
			return
		}
		select {
		case n.ctlC <- func(l *loop) { l.onReply(callReply{to: to, origin: origin, seq: seq, data: data}) }:
		default: // the caller sends again
		}
	}
}

// addCall registers a new call and sends it if a leader is known.
func (l *loop) addCall(c *call) {
	l.calls[c.seq] = c
	l.callsDue = true
}

// flushCalls sends the calls due: new ones, those of a leader change and
// those unanswered for an election timeout.
func (l *loop) flushCalls() {
	if !l.callsDue || l.lead == raft.None {
		return
	}
	l.callsDue = false
	for seq, c := range l.calls {
		switch {
		case c.canceled.Load():
			delete(l.calls, seq)
		case c.sentAt == 0:
			l.sendCall(c)
		}
	}
}

func (l *loop) sendCall(c *call) {
	c.sentAt = max(l.tick, 1)
	n := l.n
	if l.state == raft.StateLeader {
		n.cfg.LeaderService.ServeLeader(n.cfg.ID, c.req, n.reply(n.cfg.ID, n.origin, c.seq))
		return
	}
	l.sendPeerCall(l.lead, &wire.PeerCall{Kind: callRequest, Origin: n.origin, Seq: c.seq, Data: c.req, Applied: n.applied.Load()})
}

func (l *loop) sendPeerCall(to uint64, pc *wire.PeerCall) {
	data, err := proto.Marshal(pc)
	if err != nil {
		return // unreachable for well-formed messages
	}
	l.n.tr.Send([]*pb.Message{{Type: callMsgType.Enum(), To: new(to), From: new(l.n.cfg.ID), Context: data}})
}

// resendCalls marks every pending call to be sent again.
func (l *loop) resendCalls() {
	for _, c := range l.calls {
		c.sentAt = 0
	}
	l.callsDue = len(l.calls) > 0
}

// tickCalls drops abandoned calls and resends unanswered ones.
func (l *loop) tickCalls() {
	retry := uint64(l.n.cfg.ElectionTicks)
	for seq, c := range l.calls {
		switch {
		case c.canceled.Load():
			delete(l.calls, seq)
		case c.sentAt != 0 && l.tick-c.sentAt >= retry:
			c.sentAt = 0
			l.callsDue = true
		}
	}
}

// onPeerCall handles a call message from a peer.
func (l *loop) onPeerCall(m *pb.Message) {
	var pc wire.PeerCall
	if proto.Unmarshal(m.GetContext(), &pc) != nil {
		return
	}
	n := l.n
	from := m.GetFrom()
	switch pc.GetKind() {
	case callRequest:
		if l.state != raft.StateLeader || n.cfg.LeaderService == nil {
			l.sendPeerCall(from, &wire.PeerCall{Kind: callNotLeader, Origin: pc.GetOrigin(), Seq: pc.GetSeq()})
			return
		}
		if pc.GetApplied() > n.applied.Load() {
			// The caller applied entries this leader has not yet (a
			// follower may apply a commit before the leader, whose own
			// append may still be syncing): serve it once it has.
			if len(l.parked) < maxParkedCalls {
				l.parked = append(l.parked, parkedCall{from: from, pc: &pc})
			}
			return
		}
		n.cfg.LeaderService.ServeLeader(from, pc.GetData(), n.reply(from, pc.GetOrigin(), pc.GetSeq()))
	case callAnswer:
		if pc.GetOrigin() == n.origin {
			l.deliverCall(pc.GetSeq(), pc.GetData())
		}
	case callQuorumRequest:
		l.onQuorumRequest(from, &pc)
	case callQuorumAnswer:
		l.onQuorumAnswer(from, &pc)
	case callNotLeader:
		// Sent again once a leader is known that is not the sender, or
		// after the retry period.
		if c, ok := l.calls[pc.GetSeq()]; ok && pc.GetOrigin() == n.origin && l.lead != from && l.lead != raft.None {
			c.sentAt = 0
			l.callsDue = true
		}
	}
}

// onReply routes an answer of the local service.
func (l *loop) onReply(r callReply) {
	if r.to == l.n.cfg.ID {
		if r.origin == l.n.origin {
			l.deliverCall(r.seq, r.data)
		}
		return
	}
	l.sendPeerCall(r.to, &wire.PeerCall{Kind: callAnswer, Origin: r.origin, Seq: r.seq, Data: r.data})
}

func (l *loop) deliverCall(seq uint64, data []byte) {
	if c, ok := l.calls[seq]; ok {
		delete(l.calls, seq)
		c.resC <- data
	}
}

// maxParkedCalls bounds the calls a leader holds until it has applied as
// far as their callers; beyond it a call is dropped and sent again later.
const maxParkedCalls = 4096

// parkedCall is a call a leader holds until it has applied pc.Applied.
type parkedCall struct {
	from uint64
	pc   *wire.PeerCall
}

// serveParked serves the parked calls this peer has applied far enough
// for, and answers all of them "not the leader" once it no longer leads.
func (l *loop) serveParked() {
	if len(l.parked) == 0 {
		return
	}
	n := l.n
	applied := n.applied.Load()
	kept := l.parked[:0]
	for _, p := range l.parked {
		switch {
		case l.state != raft.StateLeader:
			l.sendPeerCall(p.from, &wire.PeerCall{Kind: callNotLeader, Origin: p.pc.GetOrigin(), Seq: p.pc.GetSeq()})
		case p.pc.GetApplied() <= applied:
			n.cfg.LeaderService.ServeLeader(p.from, p.pc.GetData(), n.reply(p.from, p.pc.GetOrigin(), p.pc.GetSeq()))
		default:
			kept = append(kept, p)
		}
	}
	clear(l.parked[len(kept):])
	l.parked = kept
}
