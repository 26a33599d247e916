package concord

import (
	"context"
	"fmt"
	"time"
)

// Mutex is a distributed lock (etcd's concurrency.Mutex), a thin client
// of Txn, Lease and Watch. Each Mutex is one participant: it queues a key
// of its own, name/<lease>-<id>, attached to its session's lease, and the
// oldest key (lowest create revision) holds the lock. Waiters are served
// in that order, each watching only the key just ahead of it: a release
// wakes exactly one waiter.
//
// Two Mutexes of one name on one session are two participants that
// exclude each other: etcd instead names the key after the lease alone and
// lets a Lock re-acquire an existing key of its lease, so that two
// goroutines sharing a session could both hold the lock. Here a key of
// the same lease belongs to another participant; only a Mutex's own key,
// left by a Lock whose cleanup failed, is reused (it keeps its place). So
// a process that reopens its old lease (WithSessionLease) does not take
// over the lock its old Mutex held: it queues behind that key, which goes
// when that Mutex unlocks or the lease ends.
// Unlike sync.Mutex, a Mutex may be locked again after Unlock, and its
// methods are safe for concurrent use; but it is one participant: a Lock
// while it holds or waits returns an error wrapping ErrLocked.
//
// The lock lasts as long as the session: when the session's lease ends
// the key goes and the next waiter holds. Guard writes with IsOwner, or
// give Token to a Fence, so that a holder that lost the lock without
// noticing cannot do harm.
type Mutex struct {
	q     lockQueue
	delay time.Duration
	st    lockState
}

// MutexOption configures NewMutex.
type MutexOption func(*Mutex)

// WithLockDelay makes a lock that this Mutex held be granted to no one for
// d after its session ends without an Unlock (the lock-delay of Chubby and
// Consul): a holder that lost its session may still be finishing a write
// to a resource that cannot check fencing tokens. The holder records d in
// a key beside the waiters (name/~delay, attached to no lease) that Unlock
// deletes. The next participant in line, whatever its own options, that
// finds the record of a holder gone without Unlock starts the delay: a key
// attached to a lease of d (at least the election timeout), timed by the
// leader's clock, so at least d after the loss. Lock waits for it to end;
// TryLock returns ErrLocked until then. Then the record is cleared. A
// negative d makes Lock and TryLock fail with ErrInvalidRequest.
func WithLockDelay(d time.Duration) MutexOption {
	return func(m *Mutex) { m.delay = d }
}

// NewMutex returns a Mutex on the lock called name; its keys live under
// name + "/". An empty name makes Lock and TryLock fail with ErrEmptyKey.
func NewMutex(s *Session, name string, opts ...MutexOption) *Mutex {
	m := &Mutex{q: newLockQueue(s, "Mutex", name)}
	for _, o := range opts {
		if o != nil {
			o(m)
		}
	}
	return m
}

// Lock blocks until the lock is held. If ctx ends first, Lock deletes its
// waiting key and returns an error wrapping ctx's error
// (context.Canceled). If the session ends while Lock waits, Lock returns
// an error wrapping ErrSessionExpired.
func (m *Mutex) Lock(ctx context.Context) error {
	if err := m.lock(ctx, true); err != nil {
		return fmt.Errorf("concord.Mutex.Lock: %w", err)
	}
	return nil
}

// TryLock takes the lock if no one holds or waits for it, else returns
// ErrLocked (and leaves nothing behind) without waiting.
func (m *Mutex) TryLock(ctx context.Context) error {
	if err := m.lock(ctx, false); err != nil {
		return fmt.Errorf("concord.Mutex.TryLock: %w", err)
	}
	return nil
}

func (m *Mutex) lock(ctx context.Context, wait bool) error {
	if m.q.err != nil {
		return m.q.err
	}
	if m.delay < 0 {
		return fmt.Errorf("%w: WithLockDelay(%v) is negative", ErrInvalidRequest, m.delay)
	}
	if err := m.st.begin("Mutex", m.q.pfx, m.q.s); err != nil {
		return err
	}
	rev, record, err := m.acquire(ctx, wait)
	m.st.end(rev, record, err)
	return err
}

// acquire queues, waits and honours a lock-delay record. Once the key is
// queued, any failure removes it.
func (m *Mutex) acquire(ctx context.Context, wait bool) (rev int64, record string, err error) {
	// The record is read in the queuing txn: when nothing is ahead, no
	// other read is needed.
	rev, resp, err := m.q.enqueue(ctx, "", OpGet(m.delayRecordKey()))
	if err != nil {
		return 0, "", err
	}
	queued := rev
	defer func() {
		if err != nil {
			m.q.remove(ctx, queued)
		}
	}()
	waiters, at, err := m.q.waiters(ctx)
	if err != nil {
		return 0, "", err
	}
	blockers := lockOlder(waiters, rev, nil)
	if !wait && len(blockers) > 0 {
		return 0, "", ErrLocked
	}
	first := resp.Responses[2].Get()
	if at != resp.Revision {
		first = nil // the record may have changed since the queuing txn
	}
	if len(blockers) > 0 {
		if err := m.q.wait(ctx, blockers, 1, at, rev, nil); err != nil {
			return 0, "", err
		}
		first = nil // read the record again: the holders ahead may have changed it
	}
	record, err = m.settleDelay(ctx, rev, wait, first)
	return rev, record, err
}

// Unlock releases the lock. It never deletes another holder's key: after
// the session lost the lock, or on a Mutex that does not hold it, Unlock
// does nothing and returns nil. On an error (ctx ended, no quorum) the
// Mutex still holds and Unlock may be called again.
func (m *Mutex) Unlock(ctx context.Context) error {
	err := m.st.release(ctx, &m.q, func(record string) []Op {
		if record == "" {
			return nil
		}
		rec := m.delayRecordKey()
		return []Op{OpTxn([]Cmp{Compare(Value(rec), "=", record)}, []Op{OpDelete(rec)}, nil)}
	})
	if err != nil {
		return fmt.Errorf("concord.Mutex.Unlock: %w", err)
	}
	return nil
}

// Token returns the fencing token of the current holding: the create
// revision of the Mutex's key, strictly greater than every earlier
// holder's. It is 0 when the Mutex does not hold the lock, or its session
// has ended. It does no I/O and never blocks.
func (m *Mutex) Token() int64 { return m.st.held(m.q.s) }

// Key returns the key the Mutex holds the lock with (name/<lease>-<id>),
// or "" when it does not hold it. It does no I/O.
func (m *Mutex) Key() string {
	if m.st.held(m.q.s) == 0 {
		return ""
	}
	return m.q.key
}

// IsOwner returns a compare that holds while this holding lasts:
// CreateRevision(Key()) = Token(). Put it in a Txn's If to write only
// while the lock is held. When the Mutex does not hold the lock the
// compare never holds. It does no I/O.
func (m *Mutex) IsOwner() Cmp { return m.q.ownerCmp(m.st.held(m.q.s)) }
