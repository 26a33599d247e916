package raftnode

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/internal/schema"
	"github.com/concordkv/concord/transport"
)

// Node is a raft peer. Create it with Start; all methods are safe for
// concurrent use.
type Node struct {
	cfg     Config
	db      *badger.DB
	st      *storage
	tr      transport.Transport
	origin  uint64        // random per start: names this run's proposals
	seq     atomic.Uint64 // last proposal sequence number
	applied atomic.Uint64
	status  atomic.Pointer[Status]
	changed atomic.Pointer[chan struct{}] // closed on leader, role, term or conf change
	log     *slog.Logger
	commit  func(*badger.Txn) error        // commits, unsynced; tests wrap it
	sync    func(fid int, vlog bool) error // syncs every commit so far (memSyncer.sync); tests wrap it
	syncOld func(fid int) error            // syncs a memtable badger rotated past (syncMemFile); tests wrap it
	w       *writer                        // the raft goroutine's commits
	mems    memSyncer                      // syncs memtable files for the writer and the syncer

	restoring atomic.Pointer[string] // the spool file an install (running, or failed) restores from

	propC    chan *proposal
	recvC    chan *pb.Message
	readKick chan struct{}    // capacity 1: reads are pending
	ctlC     chan func(*loop) // everything else the loop is asked to do: calls, replies, reports, conf changes

	stopC     chan struct{}
	doneC     chan struct{}
	stopOnce  sync.Once
	closeOnce sync.Once
	tmpDir    string // snapshot dir of an in-memory peer, removed on Stop
	closeErr  error
	crashed   atomic.Bool

	readMu      sync.Mutex
	readPending []*readRequest // guarded by readMu; reads the loop has not taken yet
	readStopped bool           // guarded by readMu; the loop has ended: no more reads

	errMu sync.Mutex
	err   error // guarded by errMu; why the loop ended

	wg sync.WaitGroup // background goroutines (snapshot senders, the incarnation guard)

	members   atomic.Pointer[map[uint64]memberState] // replicated member records (incarnation.go)
	guardKick chan struct{}                          // capacity 1: Admit refused a voter
	helloMu   sync.Mutex
	basis     map[uint64]uint64 // guarded by helloMu; accepted incarnations not (yet) recorded (see accepted)
	pending   map[uint64]uint64 // guarded by helloMu; the new incarnation of each member Admit refused
}

// Start opens (or creates) the peer's data and starts its raft goroutine
// and transport. It returns once the peer runs; it does not wait for a
// leader.
func Start(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	db, err := openDB(cfg)
	if err != nil {
		return nil, err
	}
	n, err := start(cfg, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return n, nil
}

func start(cfg Config, db *badger.DB) (*Node, error) {
	tmpSnapDir := ""
	switch {
	case cfg.SnapshotDir != "":
	case cfg.DataDir != "":
		cfg.SnapshotDir = filepath.Join(cfg.DataDir, "snap")
	default:
		dir, err := os.MkdirTemp("", "raftnode-snap-")
		if err != nil {
			return nil, fmt.Errorf("raftnode: snapshot dir: %w", err)
		}
		cfg.SnapshotDir, tmpSnapDir = dir, dir
	}
	started := false
	defer func() {
		if !started && tmpSnapDir != "" {
			os.RemoveAll(tmpSnapDir)
		}
	}()
	if err := os.MkdirAll(cfg.SnapshotDir, 0o700); err != nil {
		return nil, fmt.Errorf("raftnode: snapshot dir: %w", err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:       cfg,
		db:        db,
		tr:        cfg.Transport,
		origin:    binary.LittleEndian.Uint64(b[:]) | 1,
		propC:     make(chan *proposal, 4096),
		recvC:     make(chan *pb.Message, 4096),
		readKick:  make(chan struct{}, 1),
		ctlC:      make(chan func(*loop), 4096),
		stopC:     make(chan struct{}),
		doneC:     make(chan struct{}),
		tmpDir:    tmpSnapDir,
		log:       cfg.Logger,
		commit:    (*badger.Txn).Commit,
		guardKick: make(chan struct{}, 1),
		basis:     map[uint64]uint64{},
		pending:   map[uint64]uint64{},
	}
	n.sync = func(fid int, vlog bool) error { return n.mems.sync(db, fid, vlog) }
	n.syncOld = func(fid int) error { return syncMemFile(db.Opts().Dir, fid) }
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if cfg.testHook != nil {
		cfg.testHook(n)
	}
	n.sync, n.syncOld = stickySyncs(n.sync, n.syncOld)
	// badger reads back what a killed process wrote but never synced as if
	// it were durable: sync it before anything vouches for it.
	if err := syncFiles(db); err != nil {
		return nil, fmt.Errorf("raftnode: sync on open: %w", err)
	}
	w, err := newWriter(db, n.commit, n.sync, n.syncOld)
	if err != nil {
		return nil, err
	}
	n.w = w
	defer func() {
		if !started {
			n.mems.close()
		}
	}()
	st, err := openStorage(db)
	if err != nil {
		return nil, err
	}
	n.st = st
	if err := n.resumeRestore(); err != nil {
		return nil, err
	}
	n.removeSpools() // bodies received but never installed before a stop
	if err := n.loadMembers(); err != nil {
		return nil, err
	}
	l, err := newLoop(n)
	if err != nil {
		return nil, err
	}
	if err := n.tr.Start((*handler)(n)); err != nil {
		return nil, fmt.Errorf("raftnode: start transport: %w", err)
	}
	go l.run()
	n.wg.Go(n.guard)
	started = true
	return n, nil
}

// newChain begins a write chain committed through the peer's writer.
func (n *Node) newChain() *chain {
	return newChain(n.db, n.w)
}

// ID returns this peer's raft id.
func (n *Node) ID() uint64 { return n.cfg.ID }

// DB returns the badger DB the peer persists to. Readers may use it (e.g.
// db.View for local reads); writes belong in Applier.Apply.
func (n *Node) DB() *badger.DB { return n.db }

// AppliedIndex returns the index of the last entry applied and committed to
// the DB.
func (n *Node) AppliedIndex() uint64 { return n.applied.Load() }

// Done is closed when the raft goroutine has ended (Stop, a fatal error or
// removal from the cluster); Err tells why.
func (n *Node) Done() <-chan struct{} { return n.doneC }

// Err returns why the peer stopped, or nil while it runs or after Stop.
func (n *Node) Err() error {
	n.errMu.Lock()
	defer n.errMu.Unlock()
	return n.err
}

// Stop stops the raft goroutine and the transport, waits for them, and
// closes the DB. Everything acknowledged is already durable. Idempotent.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() { close(n.stopC) })
	<-n.doneC
	n.closeOnce.Do(func() {
		trErr := n.tr.Close() // ends snapshot streams, so their writers return
		n.wg.Wait()
		n.mems.close()
		n.closeErr = errors.Join(trErr, n.db.Close())
		n.removeSpools()
		n.removeTmpDir()
	})
	return n.closeErr
}

// removeSpools deletes received snapshot bodies left in the snapshot dir,
// but for the one a failed install was restoring from: the restore
// marker names it, and the next start redoes the install from it.
func (n *Node) removeSpools() {
	keep := ""
	if p := n.restoring.Load(); p != nil {
		keep = *p
	}
	names, _ := filepath.Glob(filepath.Join(n.cfg.SnapshotDir, "*.snap"))
	for _, name := range names {
		if name != keep {
			os.Remove(name)
		}
	}
}

func (n *Node) removeTmpDir() {
	if n.tmpDir != "" {
		os.RemoveAll(n.tmpDir)
	}
}

// Crash stops the peer where it is, for tests: the raft goroutine ends
// without finishing pending calls. badger is then closed as by Stop
// (its memtable written to a table), so Crash does not lose writes that
// were not synced; for that, kill a process running the peer (as
// internal/killtest does).
func (n *Node) Crash() {
	n.crashed.Store(true)
	n.Stop()
}

// fail records a fatal error and stops the loop.
func (n *Node) fail(err error) {
	n.errMu.Lock()
	if n.err == nil {
		n.err = err
	}
	n.errMu.Unlock()
	n.stopOnce.Do(func() { close(n.stopC) })
}

// stoppedErr is what calls return once the loop ended.
func (n *Node) stoppedErr() error {
	if err := n.Err(); err != nil {
		return errors.Join(ErrStopped, err)
	}
	return ErrStopped
}

// do runs f on the raft goroutine and waits for it.
func (n *Node) do(ctx context.Context, f func(*loop)) error {
	done := make(chan struct{})
	select {
	case n.ctlC <- func(l *loop) { f(l); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.doneC:
		return n.stoppedErr()
	}
	select {
	case <-done:
		return nil
	case <-n.doneC:
		return n.stoppedErr()
	}
}

// submit hands x to the loop on ch and waits for its result on resC. If
// ctx ends first it marks x canceled, for the loop to drop it.
func submit[T, R any](ctx context.Context, n *Node, ch chan<- T, x T, resC <-chan R, canceled *atomic.Bool) (R, error) {
	var zero R
	select {
	case ch <- x:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-n.doneC:
		return zero, n.stoppedErr()
	}
	select {
	case r := <-resC:
		return r, nil
	case <-ctx.Done():
		canceled.Store(true)
		return zero, ctx.Err()
	case <-n.doneC:
		return zero, n.stoppedErr()
	}
}

// Status describes the peer as of its last Ready.
type Status struct {
	ID, Term, Vote, Commit, Applied, Leader uint64
	State                                   raft.StateType
	Voters, Learners                        []uint64
	// LeadTransferee is the target of a leadership transfer in progress.
	LeadTransferee uint64
	// ConfIndex changes whenever the voters may have: it is the index of
	// the newest conf change applied, or of the applied state as of the
	// start or of a snapshot installed since.
	ConfIndex uint64
	// Joint tells that the configuration is joint: a multi-member change
	// is being applied.
	Joint bool
}

// Status returns the peer's state as of its last Ready. It does not block.
func (n *Node) Status() Status {
	if s := n.status.Load(); s != nil {
		return *s
	}
	return Status{ID: n.cfg.ID}
}

// Leader returns the current leader's id, 0 when none is known.
func (n *Node) Leader() uint64 {
	if n.stopped() {
		return raft.None
	}
	return n.Status().Leader
}

// IsLeader tells whether this peer is the leader; false once it stopped.
func (n *Node) IsLeader() bool { return !n.stopped() && n.Status().State == raft.StateLeader }

// stopped tells whether the raft goroutine has ended.
func (n *Node) stopped() bool {
	select {
	case <-n.doneC:
		return true
	default:
		return false
	}
}

// Peers returns the members' addresses as replicated through conf changes.
func (n *Node) Peers() map[uint64]string {
	out := map[uint64]string{}
	_ = n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.PeerPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, _ := it.Item().ValueCopy(nil)
			out[schema.PeerID(it.Item().Key())] = string(v)
		}
		return nil
	})
	return out
}
