package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/schema"
	"github.com/concordkv/concord/raftnode"
)

// Hard limits of the state machine. They are part of its deterministic
// behaviour, so they are constants, not configuration: a put over them is
// refused with TOO_LARGE on every peer. They keep every badger write valid
// (badger caps keys at 65000 bytes and, in memory, values at 1 MiB); the
// node's own, smaller, limits are checked before proposing.
const (
	MaxKeySize   = 16 << 10
	MaxValueSize = 1000 << 10
)

// Config configures an FSM.
type Config struct {
	// OnCommit, if set, receives what each committed batch of applies
	// changed: it is called from Committed once the batch is durable, and
	// from Restore. It runs on the raft goroutine and must not block; the
	// Commit and its events are the callee's to keep but not to change:
	// they share memory with later events.
	OnCommit func(Commit)
	// OnLeases, if set, receives what each committed batch of applies
	// changed in the lease table, at the same moments and under the same
	// rules as OnCommit (it is called first).
	OnLeases func(LeaseCommit)
}

// Commit is what one committed batch changed.
type Commit struct {
	// Revision and CompactRevision are the store's after the batch.
	Revision, CompactRevision int64
	// Events are the batch's changes in revision order, and within one
	// revision in key order (as History replays them). Each event's
	// Kv.ModRevision is its revision; PrevKv is set for keys that existed.
	Events []*command.Event
	// Restored tells that a snapshot replaced the whole state: the changes
	// up to Revision were not reported; read them with History.
	Restored bool
}

// FSM is concord's MVCC key-value state machine; see the package doc. It
// implements raftnode.Applier and raftnode.CommitNotifier. Create it with
// New; one FSM serves one raftnode.Node.
type FSM struct {
	cfg Config

	// Apply state, kept on the raft goroutine (Apply, Committed, Restore).
	// It runs ahead of the committed state within a batch; raftnode stops
	// the node if a batch fails to commit.
	loaded       bool
	rev          int64            // current revision, as applied
	compact      int64            // compact revision, as applied
	credit       int64            // bytes the sweep may delete (see sweep.go)
	dirty        bool             // the command changed rev, compact or credit
	sweepPos     []byte           // history key suffix the sweep visits next
	sweepRev     int64            // revision in sweepPos
	lastIndex    uint64           // index of the last Apply
	notified     [2]int64         // rev and compact last given to OnCommit
	events       []*command.Event // since the last Committed, if OnCommit is set
	leaseChanges []LeaseChange    // since the last Committed, if OnLeases is set
	arena        arena
	cache        kvCache
	live         liveIndex // the live keys, as applied (live.go)
	reads        readCache // for any goroutine

	// Committed state, for any goroutine.
	committedRev     atomic.Int64
	committedCompact atomic.Int64

	// restoreMu is held for writing while Restore replaces the state (in
	// several badger transactions, after dropping the old one), and for
	// reading by View.
	restoreMu sync.RWMutex
}

var (
	_ raftnode.Applier        = (*FSM)(nil)
	_ raftnode.CommitNotifier = (*FSM)(nil)
)

// New returns an FSM. It loads its state lazily from the first Apply's
// transaction; call Load to have the revision accessors right before that.
func New(cfg Config) *FSM { return &FSM{cfg: cfg} }

// Load reads the committed revisions from db, for Revision and
// CompactRevision before the first commit. It may run concurrently with
// the raft goroutine.
func (f *FSM) Load(db *badger.DB) error {
	return db.View(func(txn *badger.Txn) error {
		rev, compact, err := ReadRevisions(txn)
		if err == nil {
			f.publish(rev, compact)
			f.reads.start(rev, compact)
		}
		return err
	})
}

// View runs fn on a read-only transaction of db that sees no Restore half
// done: a Restore drops the old state and loads the new one in several
// transactions, so a plain transaction opened meanwhile may see a torn
// state. View waits for a Restore in progress, and a Restore waits for the
// Views in progress; keep fn short.
func (f *FSM) View(db *badger.DB, fn func(*badger.Txn) error) error {
	f.restoreMu.RLock()
	defer f.restoreMu.RUnlock()
	return db.View(fn)
}

// Revision returns the store's current revision as committed: 1 when
// nothing was ever written (the first write gets revision 2, as in etcd).
// It is 0 until Load or the first commit.
func (f *FSM) Revision() int64 { return f.committedRev.Load() }

// CompactRevision returns the committed compact revision; 0 = none.
func (f *FSM) CompactRevision() int64 { return f.committedCompact.Load() }

// ReadRevisions returns the current and compact revisions as seen by txn.
func ReadRevisions(txn *badger.Txn) (rev, compact int64, err error) {
	rev, compact, _, err = readMeta(txn)
	return rev, compact, err
}

// readMeta reads schema.StateMeta.
func readMeta(txn *badger.Txn) (rev, compact, credit int64, err error) {
	item, err := txn.Get(schema.StateMeta)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 1, 0, 0, nil
	}
	if err != nil {
		return 0, 0, 0, err
	}
	err = item.Value(func(v []byte) error {
		if len(v) != 24 {
			return fmt.Errorf("fsm: corrupt %s", schema.StateMeta)
		}
		rev = int64(binary.BigEndian.Uint64(v))
		compact = int64(binary.BigEndian.Uint64(v[8:]))
		credit = int64(binary.BigEndian.Uint64(v[16:]))
		return nil
	})
	return rev, compact, credit, err
}

// publish raises the committed revisions to rev and compact; they never
// go down (a restored snapshot is always newer).
func (f *FSM) publish(rev, compact int64) {
	raise(&f.committedRev, rev)
	raise(&f.committedCompact, compact)
}

func raise(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// load reads the apply state through txn, dropping whatever was applied
// but not committed.
func (f *FSM) load(txn *badger.Txn) error {
	rev, compact, credit, err := readMeta(txn)
	if err != nil {
		return err
	}
	f.rev, f.compact, f.credit, f.dirty = rev, compact, credit, false
	f.sweepPos, f.sweepRev = nil, 0
	item, err := txn.Get(schema.StateSweep)
	switch {
	case err == nil:
		if f.sweepPos, err = item.ValueCopy(nil); err != nil {
			return err
		}
		if len(f.sweepPos) < 8 {
			return fmt.Errorf("fsm: corrupt %s", schema.StateSweep)
		}
		f.sweepRev = int64(binary.BigEndian.Uint64(f.sweepPos))
	case !errors.Is(err, badger.ErrKeyNotFound):
		return err
	}
	f.events, f.leaseChanges = nil, nil
	f.cache.reset() // drops the log of what was never committed
	if err := f.live.build(txn); err != nil {
		return err
	}
	f.notified = [2]int64{rev, compact}
	f.loaded = true
	return nil
}

// Apply implements raftnode.Applier: it decodes cmd as a command.Request,
// executes it and returns the encoded command.Response. Outcomes (a
// malformed command included) are in the response; an error means badger
// failed.
func (f *FSM) Apply(txn *raftnode.Txn, index uint64, cmd []byte) ([]byte, error) {
	if !f.loaded || index < f.lastIndex {
		// A lower index means the batch holding the last Apply was never
		// committed and the node replays it: forget what it applied.
		if err := f.load(txn.Badger()); err != nil {
			return nil, err
		}
	}
	f.lastIndex = index
	resp := new(command.Response)
	var req command.Request
	if err := command.DecodeRequest(cmd, &req); err != nil {
		refuse(resp, command.Code_BAD_REQUEST, "malformed command: "+err.Error())
	} else if err := f.apply(txn, &req, resp); err != nil {
		return nil, err
	}
	if f.dirty {
		// A command that wrote earns the sweep some credit.
		f.credit = min(f.credit+sweepCredit, sweepMaxCredit)
		if err := f.sweep(txn); err != nil {
			return nil, err
		}
		if err := f.setMeta(txn); err != nil {
			return nil, err
		}
		f.dirty = false
	}
	resp.Revision, resp.CompactRevision = f.rev, f.compact
	return command.EncodeResponse(resp)
}

// refuse turns resp into a refusal with code and an explanation.
func refuse(resp *command.Response, code command.Code, msg string) {
	resp.Code = code
	resp.Error = strings.ToValidUTF8(msg, "?")
	resp.Response = nil
}

// Committed implements raftnode.CommitNotifier: everything applied so far
// is durable, so it is published to the revision accessors and OnCommit.
func (f *FSM) Committed(uint64) {
	if !f.loaded {
		return
	}
	if f.live.dirty {
		f.reads.fold(f.cache.log, f.rev, f.compact, f.live.clone(), true)
	} else {
		f.reads.fold(f.cache.log, f.rev, f.compact, nil, false)
	}
	clear(f.cache.log)
	f.cache.log = f.cache.log[:0]
	f.publish(f.rev, f.compact)
	if len(f.leaseChanges) > 0 {
		changes := f.leaseChanges
		f.leaseChanges = nil
		f.cfg.OnLeases(LeaseCommit{Changes: changes})
	}
	if f.cfg.OnCommit == nil || (len(f.events) == 0 && f.notified == [2]int64{f.rev, f.compact}) {
		return
	}
	c := Commit{Revision: f.rev, CompactRevision: f.compact, Events: f.events}
	f.events = nil
	f.notified = [2]int64{f.rev, f.compact}
	f.cfg.OnCommit(c)
}

// Snapshot implements raftnode.Applier: the state is every key under
// schema.State, streamed as raftnode.StreamPrefix writes it.
func (f *FSM) Snapshot(txn *badger.Txn, w io.Writer) error {
	return raftnode.StreamPrefix(txn, schema.State, w)
}

// Restore implements raftnode.Applier: it replaces the state with a
// Snapshot's, then reports it to OnCommit with Restored set.
func (f *FSM) Restore(db *badger.DB, r io.Reader) error {
	f.loaded, f.events, f.leaseChanges = false, nil, nil
	f.cache.reset()
	f.live.reset()
	f.reads.reset(0, 0) // no fills while the state is half restored
	f.restoreMu.Lock()
	err := raftnode.LoadPrefix(db, schema.State, r)
	f.restoreMu.Unlock()
	if err != nil {
		return err
	}
	var rev, compact int64
	err = db.View(func(txn *badger.Txn) error {
		var err error
		rev, compact, err = ReadRevisions(txn)
		return err
	})
	if err != nil {
		return err
	}
	f.reads.reset(rev, compact)
	f.publish(rev, compact)
	if f.cfg.OnLeases != nil {
		f.cfg.OnLeases(LeaseCommit{Restored: true})
	}
	if f.cfg.OnCommit != nil {
		f.cfg.OnCommit(Commit{Revision: rev, CompactRevision: compact, Restored: true})
	}
	return nil
}

// setMeta writes the apply state's revisions and sweep credit.
func (f *FSM) setMeta(txn *raftnode.Txn) error {
	v := f.arena.alloc(24)
	v = binary.BigEndian.AppendUint64(v, uint64(f.rev))
	v = binary.BigEndian.AppendUint64(v, uint64(f.compact))
	v = binary.BigEndian.AppendUint64(v, uint64(f.credit))
	return txn.Set(schema.StateMeta, v)
}
