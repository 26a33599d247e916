package raftnode

import (
	"errors"

	"github.com/dgraph-io/badger/v4"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/schema"
)

// chain is a sequence of badger transactions used as one ordered write
// batch: when a transaction fills up it is committed and a new one begun.
// Only the last commit can be partial on a crash, and raft tolerates a log
// that ends early (the entries were never acknowledged).
type chain struct {
	db  *badger.DB
	txn *badger.Txn
}

func newChain(db *badger.DB) *chain { return &chain{db: db, txn: db.NewTransaction(true)} }

func (c *chain) set(k, v []byte) error {
	err := c.txn.Set(k, v)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = c.rotate(); err == nil {
			err = c.txn.Set(k, v)
		}
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
	return err
}

func (c *chain) rotate() error {
	if err := c.txn.Commit(); err != nil {
		return err
	}
	c.txn = c.db.NewTransaction(true)
	return nil
}

func (c *chain) commit() error { return c.txn.Commit() }
func (c *chain) discard()      { c.txn.Discard() }
func (c *chain) setProto(k []byte, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return c.set(k, b)
}

// append persists new entries and the hard state, then syncs if mustSync.
// Entries after the last new one are removed (raft overwrote them).
func (s *storage) append(ents []*pb.Entry, hs *pb.HardState, mustSync bool, sync func() error) error {
	if len(ents) == 0 && hs == nil {
		return nil
	}
	c := newChain(s.db)
	defer c.discard()
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
	if hs != nil {
		if err := c.setProto(schema.RaftHardState, hs); err != nil {
			return err
		}
	}
	if err := c.commit(); err != nil {
		return err
	}
	if mustSync {
		if err := sync(); err != nil {
			return err
		}
	}
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
			s.cache = append([]*pb.Entry(nil), s.cache[over:]...)
		}
	}
	return nil
}

// compact records meta as the newest snapshot point and deletes the log up
// to and including meta.Index. The caller guarantees meta.Index is applied.
func (s *storage) compact(meta *pb.SnapshotMetadata) error {
	s.mu.Lock()
	from := s.snap.GetIndex() + 1
	s.mu.Unlock()
	if meta.GetIndex() < from {
		return nil
	}
	c := newChain(s.db)
	defer c.discard()
	if err := c.setProto(schema.RaftSnapshot, meta); err != nil {
		return err
	}
	for i := from; i <= meta.GetIndex(); i++ {
		if err := c.delete(schema.EntryKey(i)); err != nil {
			return err
		}
	}
	if err := c.commit(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
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
func (s *storage) installSnapshot(meta *pb.SnapshotMetadata, sync func() error) error {
	s.mu.Lock()
	oldFirst, oldLast := s.snap.GetIndex()+1, s.last
	hs := proto.Clone(s.hs).(*pb.HardState)
	s.mu.Unlock()
	if hs.GetCommit() < meta.GetIndex() {
		hs.Commit = new(meta.GetIndex())
	}
	c := newChain(s.db)
	defer c.discard()
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
	if err := c.commit(); err != nil {
		return err
	}
	if err := sync(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = proto.Clone(meta).(*pb.SnapshotMetadata)
	s.hs = hs
	s.last = meta.GetIndex()
	s.cache = nil
	return nil
}
