package raftnode

import (
	"errors"

	"github.com/dgraph-io/badger/v4"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/schema"
)

// chain is a sequence of badger transactions used as one ordered write
// batch: when a transaction fills up it is committed and synced, and a new
// one begun. So a crash keeps a prefix of the chain: raft tolerates a log
// that ends early (those entries were never acknowledged), and applied
// state always commits with its applied index.
type chain struct {
	db    *badger.DB
	txn   *badger.Txn
	w     committer
	vlog  bool  // a value set since the last sync may be in the value log
	vthr  int64 // badger's ValueThreshold: values this long go to the value log
	est   int64 // upper bound of what txn adds to badger's memtable
	limit int   // if > 0, rotate before txn holds more key and value bytes
	bytes int   // keys and values set in txn
	ops   int   // sets and deletes in txn
}

// committer commits a chain's transactions: a Node's writer, or a
// dbCommitter.
type committer interface {
	commit(txn *badger.Txn, est int64) error // commits txn, unsynced
	flush(vlog bool) error                   // syncs every commit so far
}

func newChain(db *badger.DB, w committer) *chain {
	return &chain{db: db, txn: db.NewTransaction(true), w: w, vthr: db.Opts().ValueThreshold}
}

// restoreTxnBytes caps the keys and values one transaction of a restore's
// chain holds in memory until its commit. badger's own limit, ErrTxnTooBig,
// counts only a pointer for a value bound for the value log (at or above
// ValueThreshold): without this cap a restore of large values kept the
// whole state in memory until its one commit.
const restoreTxnBytes = 4 << 20

// newRestoreChain returns a chain straight to db that also rotates every
// restoreTxnBytes, for writes of unbounded size such as a snapshot's state.
func newRestoreChain(db *badger.DB) *chain {
	c := newChain(db, dbCommitter{db})
	c.limit = restoreTxnBytes
	return c
}

func (c *chain) set(k, v []byte) error {
	if c.limit > 0 && c.bytes > 0 && c.bytes+len(k)+len(v) > c.limit {
		if err := c.rotate(); err != nil {
			return err
		}
	}
	err := c.txn.Set(k, v)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = c.rotate(); err == nil {
			err = c.txn.Set(k, v)
		}
	}
	if err == nil {
		c.note(len(k), len(v))
	}
	return err
}

func (c *chain) delete(k []byte) error {
	err := c.txn.Delete(k)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = c.rotate(); err == nil {
			err = c.txn.Delete(k)
		}
	}
	if err == nil {
		c.note(len(k), 0)
	}
	return err
}

// note counts a set (or, with no value, a delete) made in c.txn.
func (c *chain) note(klen, vlen int) {
	c.bytes += klen + vlen
	c.ops++
	c.est += int64(klen+vlen) + memEntryOverhead
	c.vlog = c.vlog || int64(vlen) >= c.vthr
}

// rotate commits and syncs the current transaction and begins the next.
func (c *chain) rotate() error {
	if err := c.done(); err != nil {
		return err
	}
	c.txn, c.bytes, c.ops, c.est = c.db.NewTransaction(true), 0, 0, 0
	return nil
}

// done commits the last transaction and syncs; the chain is spent after
// it unless rotate goes on with it.
func (c *chain) done() error {
	if err := c.commitOnly(); err != nil {
		return err
	}
	return c.flush()
}

// commitOnly commits the last transaction without syncing: its effects
// are visible, and durable after the next flush of the same writer.
func (c *chain) commitOnly() error { return c.w.commit(c.txn, c.est) }

// flush syncs every commit of the chain's writer so far.
func (c *chain) flush() error {
	if err := c.w.flush(c.vlog); err != nil {
		return err
	}
	c.vlog = false
	return nil
}

func (c *chain) discard() { c.txn.Discard() }
func (c *chain) setProto(k []byte, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return c.set(k, b)
}

// stage writes new entries into c. Entries after the last new one are
// removed (raft overwrote them). Call appended once c is committed.
func (s *storage) stage(c *chain, ents []*pb.Entry) error {
	for _, e := range ents {
		if err := c.setProto(schema.EntryKey(e.GetIndex()), e); err != nil {
			return err
		}
	}
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	if n := len(ents); n > 0 {
		for i := ents[n-1].GetIndex() + 1; i <= last; i++ {
			if err := c.delete(schema.EntryKey(i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// unsaved returns the hard state to write with the next commit, if it is
// not on disk: hs, the Ready's, or else the newest raft gave (nil if that
// is on disk). mustSync tells whether its term or vote changed, which
// must be durable before this Ready's messages go out.
func (s *storage) unsaved(hs *pb.HardState) (save *pb.HardState, mustSync bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hs == nil {
		hs = s.hs
	}
	if proto.Equal(hs, s.savedHS) {
		return nil, false
	}
	return hs, hs.GetTerm() != s.savedHS.GetTerm() || hs.GetVote() != s.savedHS.GetVote()
}

// savedTerm returns the term of the hard state on disk (maybe not synced).
func (s *storage) savedTerm() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.savedHS.GetTerm()
}

// markSaved records hs (if not nil) as the hard state on disk.
func (s *storage) markSaved(hs *pb.HardState) {
	if hs == nil {
		return
	}
	s.mu.Lock()
	s.savedHS = proto.Clone(hs).(*pb.HardState)
	s.mu.Unlock()
}

// appended makes entries and hard state staged and committed by stage
// visible to raft.
func (s *storage) appended(ents []*pb.Entry, hs *pb.HardState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hs != nil {
		s.hs = proto.Clone(hs).(*pb.HardState)
	}
	if n := len(ents); n > 0 {
		first := ents[0].GetIndex()
		s.last = ents[n-1].GetIndex()
		if len(s.cache) > 0 && first > s.cache[0].GetIndex() && first <= s.cache[len(s.cache)-1].GetIndex()+1 {
			s.cache = append(s.cache[:first-s.cache[0].GetIndex()], ents...)
		} else {
			s.cache = append([]*pb.Entry(nil), ents...)
		}
		if over := len(s.cache) - logCacheSize; over > 0 {
			// Slide the newest entries down in place rather than copy
			// them to a new array: once the cache is full every Ready
			// trims it, and a fresh array each time cost two 32 KiB+
			// allocations per Ready (the next append had to grow it
			// again). Safe: Entries hands out copies, never the array.
			kept := copy(s.cache, s.cache[over:])
			clear(s.cache[kept:]) // release the dropped entries
			s.cache = s.cache[:kept]
		}
	}
}

// compact records meta as the newest snapshot point and deletes the log up
// to and including meta.Index, through c, which it commits and syncs. The
// caller guarantees meta.Index is applied.
func (s *storage) compact(c *chain, meta *pb.SnapshotMetadata) error {
	s.mu.Lock()
	from := s.snap.GetIndex() + 1
	hs := proto.Clone(s.hs).(*pb.HardState)
	s.mu.Unlock()
	// raft refuses to start from a hard state whose commit index is
	// below the log's start, and the commit index on disk may lag (see
	// unsaved): the newest is written with the compaction.
	if meta.GetIndex() < from || meta.GetIndex() > hs.GetCommit() {
		return nil
	}
	if err := c.setProto(schema.RaftSnapshot, meta); err != nil {
		return err
	}
	if err := c.setProto(schema.RaftHardState, hs); err != nil {
		return err
	}
	for i := from; i <= meta.GetIndex(); i++ {
		if err := c.delete(schema.EntryKey(i)); err != nil {
			return err
		}
	}
	if err := c.done(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.savedHS = hs
	s.snap = proto.Clone(meta).(*pb.SnapshotMetadata)
	if s.last < meta.GetIndex() {
		s.last = meta.GetIndex()
	}
	for len(s.cache) > 0 && s.cache[0].GetIndex() <= meta.GetIndex() {
		s.cache = s.cache[1:]
	}
	return nil
}

// setConfState records the conf state as of the applied index; the caller
// writes it to badger in the apply batch.
func (s *storage) setConfState(cs *pb.ConfState) {
	s.mu.Lock()
	s.cs = proto.Clone(cs).(*pb.ConfState)
	s.mu.Unlock()
}

// confState returns a copy of the conf state as of the applied index.
func (s *storage) confState() *pb.ConfState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.Clone(s.cs).(*pb.ConfState)
}

// installSnapshot makes meta the log's start after a received snapshot was
// restored: the whole old log is dropped and the hard state's commit moved
// up to the snapshot if it was behind.
func (s *storage) installSnapshot(c *chain, meta *pb.SnapshotMetadata) error {
	s.mu.Lock()
	oldFirst, oldLast := s.snap.GetIndex()+1, s.last
	hs := proto.Clone(s.hs).(*pb.HardState)
	s.mu.Unlock()
	if hs.GetCommit() < meta.GetIndex() {
		hs.Commit = new(meta.GetIndex())
	}
	for i := oldFirst; i <= oldLast; i++ {
		if err := c.delete(schema.EntryKey(i)); err != nil {
			return err
		}
	}
	if err := c.setProto(schema.RaftSnapshot, meta); err != nil {
		return err
	}
	if err := c.setProto(schema.RaftHardState, hs); err != nil {
		return err
	}
	if err := c.done(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = proto.Clone(meta).(*pb.SnapshotMetadata)
	s.hs = hs
	s.savedHS = proto.Clone(hs).(*pb.HardState)
	s.last = meta.GetIndex()
	s.cache = nil
	return nil
}
