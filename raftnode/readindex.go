package raftnode

import (
	"context"
	"encoding/binary"

	"go.etcd.io/raft/v3"
)

type readRequest struct {
	doneC   chan struct{} // closed once the local state is fresh enough, or the loop ended
	stopped bool          // set before doneC closes if the loop ended
}

// readRound is one raft ReadIndex round shared by every read that arrived
// while the previous round was in flight.
type readRound struct {
	id     uint64
	reqs   []*readRequest
	issued uint64 // tick
	index  uint64 // commit index to wait for, once known
}

// readState batches linearizable reads: at most one round is in flight;
// reads that arrive meanwhile wait for the next one. Loop-owned.
type readState struct {
	nextID   uint64
	pending  []*readRequest
	inflight *readRound
	waiting  []*readRound // index known, waiting for apply; ascending
}

// ReadIndex returns once this peer has applied everything committed before
// the call began, as confirmed by the leader with a quorum: a read of the
// local state after it is linearizable. Concurrent calls share one raft
// round. It works on followers and learners too.
//
// A read costs no channel send to the loop and no select on a channel
// every read shares: it is queued under readMu, the loop is kicked, and
// the read waits on its own channel, which the loop closes, also when it
// ends (stopReads).
func (n *Node) ReadIndex(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &readRequest{doneC: make(chan struct{})}
	n.readMu.Lock()
	if n.readStopped {
		n.readMu.Unlock()
		return n.stoppedErr()
	}
	n.readPending = append(n.readPending, r)
	n.readMu.Unlock()
	select {
	case n.readKick <- struct{}{}:
	default: // a kick is pending already
	}
	select {
	case <-r.doneC:
		if r.stopped {
			return n.stoppedErr()
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// takeReads moves the queued reads into the next round.
func (l *loop) takeReads() {
	l.n.readMu.Lock()
	l.takeReadsLocked()
	l.n.readMu.Unlock()
}

func (l *loop) takeReadsLocked() {
	n := l.n
	l.reads.pending = append(l.reads.pending, n.readPending...)
	clear(n.readPending)
	n.readPending = n.readPending[:0]
}

// stopReads fails every read, queued or in a round, and refuses new ones:
// the loop is ending.
func (l *loop) stopReads() {
	n := l.n
	n.readMu.Lock()
	n.readStopped = true
	l.takeReadsLocked()
	n.readMu.Unlock()
	rs := &l.reads
	rs.retryInflight()
	for _, r := range rs.waiting {
		rs.pending = append(rs.pending, r.reqs...)
	}
	rs.waiting = nil
	for _, r := range rs.pending {
		r.stopped = true
		close(r.doneC)
	}
	rs.pending = nil
}

// startRead issues a round for the pending reads if none is in flight.
func (l *loop) startRead() {
	rs := &l.reads
	if rs.inflight != nil || len(rs.pending) == 0 || l.lead == raft.None || !l.leadCommitted() {
		return
	}
	rs.nextID++
	rs.inflight = &readRound{id: rs.nextID, reqs: rs.pending, issued: l.tick}
	rs.pending = nil
	// The origin (random per start) keeps a late answer to a round of an
	// earlier run of this peer from being taken for one of this run.
	rctx := binary.BigEndian.AppendUint64(nil, l.n.origin)
	l.rn.ReadIndex(binary.BigEndian.AppendUint64(rctx, rs.nextID))
}

// indexed records the commit indexes raft answered with for this run's
// rounds (origin).
func (rs *readState) indexed(states []raft.ReadState, origin, applied uint64) {
	for _, s := range states {
		c := s.RequestCtx
		if rs.inflight == nil || len(c) != 16 || binary.BigEndian.Uint64(c) != origin || binary.BigEndian.Uint64(c[8:]) != rs.inflight.id {
			continue // an abandoned round, or one of an earlier run
		}
		r := rs.inflight
		rs.inflight = nil
		r.index = s.Index
		rs.waiting = append(rs.waiting, r)
	}
	rs.release(applied)
}

// release completes rounds whose index is applied.
func (rs *readState) release(applied uint64) {
	i := 0
	for ; i < len(rs.waiting) && rs.waiting[i].index <= applied; i++ {
		for _, r := range rs.waiting[i].reqs {
			close(r.doneC)
		}
	}
	rs.waiting = rs.waiting[i:]
}

// expire gives up on a round unanswered for retry ticks; its reads go into
// the next round.
func (rs *readState) expire(tick, retry uint64) {
	if rs.inflight != nil && tick-rs.inflight.issued >= retry {
		rs.retryInflight()
	}
}

func (rs *readState) retryInflight() {
	if rs.inflight != nil {
		rs.pending = append(rs.inflight.reqs, rs.pending...)
		rs.inflight = nil
	}
}

// leadCommitted tells whether this peer, if it leads, has committed an
// entry of its term. raft makes a leader wait for one before it answers a
// ReadIndex, except a lone voter, which it answers at once with its
// commit index: after a restart that index may lag entries committed,
// applied and acknowledged before (a commit index alone is not synced,
// nor is an apply), which a read must see. The loop tries again after
// each Ready.
func (l *loop) leadCommitted() bool {
	if l.state != raft.StateLeader {
		return true
	}
	bs := l.rn.BasicStatus()
	t, err := l.st.Term(bs.HardState.GetCommit())
	return err == nil && t == bs.HardState.GetTerm()
}
