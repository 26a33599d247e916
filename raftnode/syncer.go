package raftnode

import (
	"fmt"
	"runtime/debug"
	"slices"
	"sync"

	pb "go.etcd.io/raft/v3/raftpb"
)

// syncer makes the raft goroutine's appends durable off that goroutine
// (raft's AsyncStorageWrites): the loop commits an append to badger
// unsynced and queues the messages that vouch for it; the syncer syncs,
// then sends the remote ones and hands the local ones (raft's own
// acknowledgements) back to the loop. Meanwhile the loop goes on stepping
// messages, applying what is committed and sending; appends queued during
// one sync share the next (group commit).
//
// Requests are served in order, so a message is released only once every
// append before it is durable too. A sync failure stops the peer: nothing
// queued after it is released.
type syncer struct {
	n *Node

	mu     sync.Mutex
	queue  []syncReq     // guarded by mu; not yet released
	busy   bool          // guarded by mu; run holds a batch it has not released
	synced uint64        // guarded by mu; the newest need a finished sync covered
	term   uint64        // guarded by mu; the newest term a finished sync covered
	local  []*pb.Message // guarded by mu; released, for the loop to step
	err    error         // guarded by mu; a failed sync
	kick   chan struct{} // capacity 1: queue is not empty
	ready  chan struct{} // capacity 1: local or err is set
	stopC  chan struct{}
	doneC  chan struct{}
}

// syncReq is one append's messages and what to sync for it.
type syncReq struct {
	need   uint64 // the loop's count of writes that must be synced, after this append's
	term   uint64 // the term on disk after this append
	fid    int    // writer.target() after the append's commit
	vlog   bool   // the append may have put a value in the value log
	remote []*pb.Message
	local  []*pb.Message
}

// newSyncer returns the syncer of n, whose term on disk, term, is durable.
func newSyncer(n *Node, term uint64) *syncer {
	return &syncer{n: n, term: term, kick: make(chan struct{}, 1), ready: make(chan struct{}, 1), stopC: make(chan struct{}), doneC: make(chan struct{})}
}

// add queues r, to be released after a sync that begins after this call,
// or reports that r may be released now: nothing is queued or waiting for
// the loop before it, and a finished sync covered what it needs (an
// append that wrote nothing to sync, such as a follower's response to an
// append that only moved the commit index).
func (s *syncer) add(r syncReq) (now bool) {
	s.mu.Lock()
	if len(s.queue) == 0 && !s.busy && len(s.local) == 0 && r.need <= s.synced {
		s.term = max(s.term, r.term)
		s.mu.Unlock()
		return true
	}
	s.queue = append(s.queue, r)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return false
}

// durableTerm returns the newest term a finished sync made durable.
func (s *syncer) durableTerm() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.term
}

// take returns the local messages released so far and any sync error.
func (s *syncer) take() ([]*pb.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.local
	s.local = nil
	return out, s.err
}

func (s *syncer) stop() {
	close(s.stopC)
	<-s.doneC
}

func (s *syncer) run() {
	defer close(s.doneC)
	defer func() {
		if r := recover(); r != nil { // the peer halts, not the process
			s.fail(fmt.Errorf("%w: panic in the syncer: %v\n%s", ErrHalted, r, debug.Stack()))
		}
	}()
	for {
		select {
		case <-s.stopC:
			return
		case <-s.kick:
		}
		s.mu.Lock()
		batch, synced := s.queue, s.synced
		s.queue, s.busy = nil, len(s.queue) > 0
		s.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		need := batch[len(batch)-1].need
		if need > synced {
			if err := s.syncAll(batch); err != nil {
				s.fail(err)
				return
			}
		}
		var remote, local []*pb.Message
		for _, r := range batch {
			remote = append(remote, r.remote...)
			local = append(local, r.local...)
		}
		if len(remote) > 0 {
			s.n.tr.Send(remote)
		}
		s.mu.Lock()
		s.local = append(s.local, local...)
		s.synced, s.busy = max(s.synced, need), false
		s.term = max(s.term, batch[len(batch)-1].term)
		s.mu.Unlock()
		if len(local) > 0 {
			s.signal()
		}
	}
}

// syncAll syncs what batch's appends wrote: the memtable each request
// names (one, unless badger rotated in between), the value log if any
// wrote to it.
func (s *syncer) syncAll(batch []syncReq) error {
	vlog := false
	var fids []int
	for _, r := range batch {
		vlog = vlog || r.vlog
		if !slices.Contains(fids, r.fid) {
			fids = append(fids, r.fid)
		}
	}
	for i, fid := range fids {
		if err := s.n.sync(fid, vlog && i == len(fids)-1); err != nil {
			return err
		}
	}
	return nil
}

// fail reports err to the loop; nothing is released after it.
func (s *syncer) fail(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.signal()
}

func (s *syncer) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}
