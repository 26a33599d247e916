package raftnode

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// writer commits the raft goroutine's transactions to badger, which runs
// without SyncWrites. A commit is synced before anything that depends on
// it leaves the peer: raft log entries, a term or vote (the syncer syncs
// those, syncer.go), applied values in the value log. An apply of entries
// this peer already holds on disk is left to the next sync: after a
// crash the log replays it. On a three-peer cluster that halves the
// syncs of a write. A commit counts as unsynced until the writer itself
// syncs (flush), whatever the syncer did since.
//
// badger's Sync covers only the active memtable (and value-log file): a
// commit left unsynced in a memtable badger then rotated past could be
// lost to a power cut while a later, synced commit survives, leaving a
// hole in the applied state. badger rotates when a write finds the
// memtable full; the commit that rotated is the only one in the new
// memtable. So after a commit that rotated, the writer syncs the old
// memtable's file before anything else, if it holds unsynced commits (a
// file badger has already flushed to a table and removed is durable
// there). To know when to look for a rotation, it keeps an upper bound
// of the memtable's fill, from the size of what it writes, and looks
// after each commit that could have found the memtable full: a new
// memtable file means a rotation. Until it has seen one (after a
// restore, which rotates behind its back) it looks after every commit.
type writer struct {
	dir     string
	limit   int64                          // badger's MemTableSize
	commitF func(*badger.Txn) error        // Node.commit
	syncF   func(fid int, vlog bool) error // Node.sync
	oldF    func(fid int) error            // Node.syncOld
	fill    int64                          // upper bound of the active memtable's size; < 0: unknown
	fid     int                            // newest memtable file seen
	pending bool                           // some commit may not be synced yet
}

// Upper bounds of what badger adds to a memtable (skiplist arena and
// write-ahead log alike): per key, beside the key and value (a node of at
// most 103 bytes, an 8-byte version, a 3-byte value header); per commit
// (the transaction's end marker, in the log only); a fresh memtable.
const (
	memEntryOverhead  = 128
	memCommitOverhead = 256
	memBase           = 256
)

func newWriter(db *badger.DB, commit func(*badger.Txn) error, sync func(int, bool) error, syncOld func(int) error) (*writer, error) {
	w := &writer{dir: db.Opts().Dir, limit: db.Opts().MemTableSize, commitF: commit, syncF: sync, oldF: syncOld, fill: -1}
	if db.Opts().InMemory {
		w.fill, w.limit = 0, math.MaxInt64 // nothing to sync
		return w, nil
	}
	fid, err := newestMemFile(w.dir)
	if err != nil {
		return nil, err
	}
	// badger's Open starts a fresh memtable, and nothing has written since.
	w.fid, w.fill = fid, memBase
	return w, nil
}

// commit commits txn, which adds at most est bytes to the memtable,
// without syncing it.
func (w *writer) commit(txn *badger.Txn, est int64) error {
	est += memCommitOverhead
	mayRotate := w.fill < 0 || w.fill+est >= w.limit
	unsynced := w.pending
	if err := w.commitF(txn); err != nil {
		return err
	}
	w.pending = true
	if !mayRotate {
		w.fill += est
		return nil
	}
	fid, err := newestMemFile(w.dir)
	if err != nil {
		return err
	}
	switch {
	case fid != w.fid: // badger rotated for this commit: it alone is in the new memtable
		if unsynced {
			if err := w.oldF(w.fid); err != nil {
				return err
			}
		}
		w.fid, w.fill = fid, memBase+est
	case w.fill >= 0:
		w.fill += est
	}
	return nil
}

// flush syncs every commit so far.
func (w *writer) flush(vlog bool) error {
	if err := w.syncF(w.target(), vlog); err != nil {
		return err
	}
	w.pending = false
	return nil
}

// target returns the active memtable's file number, whose sync covers
// every commit so far that wrote no value-log value (-1 in memory). badger
// rotates memtables only when a write finds the active one full: while
// the fill is known, at a commit the writer checks; after a restore
// (forget), which may rotate behind the writer's back, the writer reads
// the newest file again after every commit until it sees a rotation. A
// commit that rotates syncs the memtable before (see commit), so a sync of
// the target covers every commit before it. Never badger's Sync: that
// syncs whichever memtable is active when it runs, maybe one a later
// commit rotated to, while an earlier one still waits for commit's sync.
func (w *writer) target() int {
	if w.dir == "" {
		return -1
	}
	return w.fid
}

// forget drops what the writer knows of the memtable's fill, after writes
// that did not go through it (a restore, which may switch memtables too),
// and notes the newest memtable file: a newer one means a switch for a
// later commit.
func (w *writer) forget() error {
	if w.dir == "" {
		return nil
	}
	fid, err := newestMemFile(w.dir)
	if err != nil {
		return err
	}
	w.fid, w.fill = fid, -1
	return nil
}

// memPath is the path of badger's memtable file fid in dir.
func memPath(dir string, fid int) string {
	return filepath.Join(dir, fmt.Sprintf("%05d.mem", fid))
}

// syncMemFile syncs badger's memtable file fid in dir. A file badger has
// removed was flushed to a table, and badger synced that table and its
// manifest before removing it.
func syncMemFile(dir string, fid int) error {
	f, err := os.OpenFile(memPath(dir, fid), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = fdatasync(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// newestMemFile returns the number of badger's newest memtable file in dir.
func newestMemFile(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	newest := -1
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".mem")
		if !ok {
			continue
		}
		if fid, err := strconv.Atoi(name); err == nil && fid > newest {
			newest = fid
		}
	}
	return newest, nil
}

// stickySyncs returns syncF and old behind one gate: they run one at a
// time, and once one has failed every later call returns its error. A
// failed fdatasync may have dropped the pages it was to write, and Linux
// reports a writeback error once, so a later sync of the same file (by
// the syncer or by the loop) could succeed without them and vouch for
// writes that are lost.
func stickySyncs(syncF func(fid int, vlog bool) error, old func(fid int) error) (func(int, bool) error, func(int) error) {
	var (
		mu     sync.Mutex
		failed error
	)
	gate := func(f func() error) error {
		mu.Lock()
		defer mu.Unlock()
		if failed != nil {
			return failed
		}
		failed = f()
		return failed
	}
	return func(fid int, vlog bool) error { return gate(func() error { return syncF(fid, vlog) }) },
		func(fid int) error { return gate(func() error { return old(fid) }) }
}

// memSyncer syncs badger's memtable files for the raft goroutine and the
// syncer (syncer.go), keeping the newest one open.
type memSyncer struct {
	mu  sync.Mutex
	f   *os.File // memtable file fid, open to be synced
	fid int
}

// sync makes every commit so far durable. fid, if >= 0, is the active
// memtable's file (writer.target): syncing it alone covers every commit
// that wrote no value-log value, and skips the flush of a clean value-log
// file that badger's Sync would add. A file badger has removed since was
// flushed to a table, and badger synced that table and its manifest
// before removing it. fid -1 (a DB written outside the writer, a restore)
// means badger's Sync: the active memtable and value-log file. With vlog set, some value went to the value log
// since the last sync and may have filled a file badger has moved past
// (it syncs a full one only under SyncWrites), so every value-log file is
// synced as well, before the memtable that points into it.
func (m *memSyncer) sync(db *badger.DB, fid int, vlog bool) error {
	if db.Opts().InMemory {
		return nil
	}
	if vlog {
		// The value log first: a durable memtable pointing at a value lost
		// with the value log would fail the read of that entry for good.
		paths, err := filepath.Glob(filepath.Join(db.Opts().ValueDir, "*.vlog"))
		if err != nil {
			return err
		}
		for _, p := range paths {
			if err := syncFile(p); err != nil {
				return err
			}
		}
	}
	if fid >= 0 {
		return m.syncMem(db.Opts().Dir, fid)
	}
	return db.Sync()
}

func (m *memSyncer) syncMem(dir string, fid int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil || m.fid != fid {
		m.closeLocked()
		f, err := os.OpenFile(memPath(dir, fid), os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // flushed to a table
		}
		if err != nil {
			return err
		}
		m.f, m.fid = f, fid
	}
	return fdatasync(m.f)
}

// close closes the memtable file held open, if any.
func (m *memSyncer) close() {
	m.mu.Lock()
	m.closeLocked()
	m.mu.Unlock()
}

func (m *memSyncer) closeLocked() {
	if m.f != nil {
		_ = m.f.Close() // opened only to be synced
		m.f = nil
	}
}

// syncFiles syncs every memtable and value-log file of db.
func syncFiles(db *badger.DB) error {
	if db.Opts().InMemory {
		return nil
	}
	mems, err := filepath.Glob(filepath.Join(db.Opts().Dir, "*.mem"))
	if err != nil {
		return err
	}
	vlogs, err := filepath.Glob(filepath.Join(db.Opts().ValueDir, "*.vlog"))
	if err != nil {
		return err
	}
	for _, p := range append(mems, vlogs...) {
		if err := syncFile(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func syncFile(path string) error { return syncOpened(os.OpenFile(path, os.O_RDWR, 0)) }

// syncOpened syncs and closes f, opened with err.
func syncOpened(f *os.File, err error) error {
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// dbCommitter commits and syncs straight to a DB, for a chain written
// outside the raft goroutine's writer (an Applier's restore).
type dbCommitter struct{ db *badger.DB }

func (d dbCommitter) commit(txn *badger.Txn, _ int64) error { return txn.Commit() }
func (d dbCommitter) flush(vlog bool) error                 { return (&memSyncer{}).sync(d.db, -1, vlog) }
