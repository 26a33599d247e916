package raftnode

import (
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// Applier is the state machine a raftnode replicates.
//
// Every peer calls Apply for every committed command, in log order, exactly
// once per command over the life of its data dir (restarts included): raftnode
// writes the applied index in the same badger transaction as the applier's
// writes, and skips duplicate proposals by their id.
//
// All methods but Snapshot are called from the raft goroutine and block it
// while they run: keep them fast and never call back into the Node.
type Applier interface {
	// Apply applies the command cmd of the committed entry at index. All
	// reads and writes go through txn, which raftnode commits together with
	// the applied index; Apply must not use txn after it returns, nor keep
	// cmd (raftnode may reuse it).
	//
	// Apply must be deterministic: the same state and command give the same
	// writes and result on every peer, with no clock, randomness or I/O.
	// Outcomes of the command (e.g. a failed compare) belong in result,
	// which is handed to the caller of Propose on the proposing peer once
	// the transaction is committed. A non-nil error means the state can no
	// longer be trusted (e.g. badger failed): the node stops with it.
	Apply(txn *Txn, index uint64, cmd []byte) (result []byte, err error)

	// Snapshot writes the applier's whole state as seen by txn to w. It
	// is called on a goroutine of its own while the raft goroutine goes on;
	// txn stays valid until Snapshot returns. The stream is read back by
	// Restore on another peer; its format is the applier's.
	Snapshot(txn *badger.Txn, w io.Writer) error

	// Restore replaces the applier's whole state (every key it owns in db)
	// with the one written by Snapshot, read from r. r is a stream: Restore
	// must not need all of it in memory. Writes need not be atomic: a crash
	// during Restore makes the next start redo it.
	Restore(db *badger.DB, r io.Reader) error
}

// CommitNotifier is an optional interface of an Applier: Committed is called
// on the raft goroutine after the transaction holding every Apply up to and
// including index is committed, before results reach proposers. It must not
// block.
type CommitNotifier interface {
	Committed(index uint64)
}

// ErrCommandTooLarge is returned by Txn writes when one command's writes
// overflow a badger transaction.
var ErrCommandTooLarge = errors.New("raftnode: command writes too much for one transaction")

// ErrReservedKey is returned by Txn writes to a key of raftnode's own:
// keys starting with "m/", "r/" or "a/" hold its log, applied index and
// membership in the same DB. An Applier keeps its keys elsewhere (concord
// uses "s/"), and so do StreamPrefix and LoadPrefix's prefix.
var ErrReservedKey = errors.New("raftnode: key reserved for raftnode")

// reserved tells whether key lies under one of raftnode's prefixes.
func reserved(key []byte) bool {
	return len(key) >= 2 && key[1] == '/' && (key[0] == 'm' || key[0] == 'r' || key[0] == 'a')
}

// Txn is the transaction an Apply call reads and writes through. It
// reads its own writes.
type Txn struct {
	txn  *badger.Txn
	c    *chain // counts the writes, so apply commits early between commands
	term uint64
}

// Term returns the raft term of the entry being applied: the term of the
// leader that appended it to the log, the same on every peer. A command
// proposed by the leader of term t is applied from an entry of term t
// unless it was lost and proposed again later, through another leader.
func (t *Txn) Term() uint64 { return t.term }

// Get returns a copy of key's value, or badger.ErrKeyNotFound.
func (t *Txn) Get(key []byte) ([]byte, error) {
	item, err := t.txn.Get(key)
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// Set writes key=val; a key under raftnode's prefixes gets ErrReservedKey.
// Neither slice may be changed until the entry's
// transaction commits (after Apply returns raftnode owns them).
func (t *Txn) Set(key, val []byte) error {
	if reserved(key) {
		return fmt.Errorf("%w: %q", ErrReservedKey, key)
	}
	t.count(len(key), len(val))
	return t.tooBig(t.txn.Set(key, val))
}

// Delete removes key.
func (t *Txn) Delete(key []byte) error {
	if reserved(key) {
		return fmt.Errorf("%w: %q", ErrReservedKey, key)
	}
	t.count(len(key), 0)
	return t.tooBig(t.txn.Delete(key))
}

func (t *Txn) count(klen, vlen int) {
	if t.c != nil {
		t.c.note(klen, vlen)
	}
}

// NewIterator opens an iterator over the transaction's view, own writes
// included. Only one may be open at a time; close it before Apply returns.
func (t *Txn) NewIterator(opt badger.IteratorOptions) *badger.Iterator {
	return t.txn.NewIterator(opt)
}

// Badger returns the underlying transaction, for readers that need it.
func (t *Txn) Badger() *badger.Txn { return t.txn }

func (t *Txn) tooBig(err error) error {
	if errors.Is(err, badger.ErrTxnTooBig) {
		return errors.Join(ErrCommandTooLarge, err)
	}
	return err
}
