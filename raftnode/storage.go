package raftnode

import (
	"errors"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/schema"
)

// logCacheSize is how many of the newest log entries storage keeps decoded
// in memory, so that appends to followers and apply rarely touch badger.
var logCacheSize = 4096

// storage is the badger-backed raft.Storage. raft reads it from the loop
// goroutine; the loop is also its only writer. Status readers may call the
// index getters from other goroutines, hence the mutex.
type storage struct {
	db *badger.DB

	mu      sync.Mutex
	hs      *pb.HardState        // guarded by mu; the newest raft gave
	savedHS *pb.HardState        // guarded by mu; the newest on disk
	snap    *pb.SnapshotMetadata // guarded by mu; newest compaction point
	cs      *pb.ConfState        // guarded by mu; conf state as of the applied index
	last    uint64               // guarded by mu
	cache   []*pb.Entry          // guarded by mu; contiguous, ends at last
}

var _ raft.Storage = (*storage)(nil)

// openStorage loads the raft state persisted in db.
func openStorage(db *badger.DB) (*storage, error) {
	s := &storage{db: db, hs: &pb.HardState{}, snap: pb.EnsureSnapshotMetadata(nil)}
	err := db.View(func(txn *badger.Txn) error {
		if err := getProto(txn, schema.RaftHardState, s.hs); err != nil {
			return err
		}
		if err := getProto(txn, schema.RaftSnapshot, s.snap); err != nil {
			return err
		}
		s.cs = proto.Clone(s.snap.GetConfState()).(*pb.ConfState)
		if err := getProto(txn, schema.ConfState, s.cs); err != nil {
			return err
		}
		s.last = s.snap.GetIndex()
		opts := badger.DefaultIteratorOptions
		opts.Reverse, opts.PrefetchValues = true, false
		it := txn.NewIterator(opts)
		defer it.Close()
		it.Seek(schema.EntryKey(^uint64(0)))
		if it.ValidForPrefix(schema.RaftEntry) {
			if i := schema.EntryIndex(it.Item().Key()); i > s.last {
				s.last = i
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("raftnode: load raft state: %w", err)
	}
	pb.EnsureSnapshotMetadata(s.snap)
	s.savedHS = proto.Clone(s.hs).(*pb.HardState)
	return s, nil
}

// getProto reads key into m; a missing key leaves m as it is.
func getProto(txn *badger.Txn, key []byte, m proto.Message) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return item.Value(func(v []byte) error { return proto.Unmarshal(v, m) })
}

// raiseCommit raises the hard state's commit index, in memory, to
// applied, the applied index on disk, bounded by the last index. It goes
// to disk with the next hard state written.
func (s *storage) raiseCommit(applied uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := min(applied, s.last); c > s.hs.GetCommit() {
		s.hs.Commit = new(c)
	}
}

// InitialState implements raft.Storage.
func (s *storage) InitialState() (*pb.HardState, *pb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.Clone(s.hs).(*pb.HardState), proto.Clone(s.cs).(*pb.ConfState), nil
}

// FirstIndex implements raft.Storage.
func (s *storage) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap.GetIndex() + 1, nil
}

// LastIndex implements raft.Storage.
func (s *storage) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// Snapshot implements raft.Storage. The returned snapshot carries only
// metadata: its state is streamed by the transport when it is sent.
func (s *storage) Snapshot() (*pb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &pb.Snapshot{Metadata: proto.Clone(s.snap).(*pb.SnapshotMetadata)}, nil
}

// Term implements raft.Storage.
func (s *storage) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case i == s.snap.GetIndex():
		return s.snap.GetTerm(), nil
	case i < s.snap.GetIndex():
		return 0, raft.ErrCompacted
	case i > s.last:
		return 0, raft.ErrUnavailable
	}
	if e := s.cachedLocked(i); e != nil {
		return e.GetTerm(), nil
	}
	ents, err := s.readLocked(i, i+1, 0)
	if err != nil {
		return 0, err
	}
	return ents[0].GetTerm(), nil
}

// Entries implements raft.Storage.
func (s *storage) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lo <= s.snap.GetIndex() {
		return nil, raft.ErrCompacted
	}
	if hi > s.last+1 || lo >= hi {
		return nil, raft.ErrUnavailable
	}
	if n := len(s.cache); n > 0 && lo >= s.cache[0].GetIndex() {
		first := s.cache[0].GetIndex()
		return limitSize(append([]*pb.Entry(nil), s.cache[lo-first:hi-first]...), maxSize), nil
	}
	return s.readLocked(lo, hi, maxSize)
}

func (s *storage) cachedLocked(i uint64) *pb.Entry {
	if len(s.cache) == 0 || i < s.cache[0].GetIndex() || i > s.last {
		return nil
	}
	return s.cache[i-s.cache[0].GetIndex()]
}

// readLocked reads [lo, hi) from badger, at most maxSize bytes (at least one
// entry; 0 = no limit).
func (s *storage) readLocked(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	var out []*pb.Entry
	var size uint64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.RaftEntry, PrefetchValues: false})
		defer it.Close()
		for it.Seek(schema.EntryKey(lo)); it.Valid(); it.Next() {
			i := schema.EntryIndex(it.Item().Key())
			if i >= hi {
				break
			}
			if i != lo+uint64(len(out)) {
				return fmt.Errorf("raftnode: log gap at %d (want %d): %w", i, lo+uint64(len(out)), raft.ErrUnavailable)
			}
			e := &pb.Entry{}
			if err := it.Item().Value(func(v []byte) error { return proto.Unmarshal(v, e) }); err != nil {
				return err
			}
			size += uint64(proto.Size(e))
			if maxSize > 0 && len(out) > 0 && size > maxSize {
				break
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, raft.ErrUnavailable
	}
	return out, nil
}

func limitSize(ents []*pb.Entry, maxSize uint64) []*pb.Entry {
	if maxSize == 0 || len(ents) == 0 {
		return ents
	}
	size := uint64(proto.Size(ents[0]))
	for i := 1; i < len(ents); i++ {
		size += uint64(proto.Size(ents[i]))
		if size > maxSize {
			return ents[:i]
		}
	}
	return ents
}
