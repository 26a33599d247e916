package concord

import (
	"context"
	"fmt"
	"sync"
)

// lockState is what a Mutex, RWMutex or Semaphore knows of its own
// holding: one participant holds or waits at most once at a time.
type lockState struct {
	mu     sync.Mutex
	busy   bool   // guarded by mu: an acquire is running or the lock is held
	rev    int64  // guarded by mu: the held key's create revision; 0 = not held
	record string // guarded by mu: Mutex: the lock-delay record it wrote; RWMutex: the mode held

	beforeRelease func() // tests: runs as release starts its round trip
}

// begin marks an acquire as running; it fails if one runs or the lock is
// held. A holding whose session s has ended is gone (its key went with
// the lease): begin forgets it, and the acquire then fails with
// ErrSessionExpired.
func (st *lockState) begin(kind, pfx string, s *Session) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.busy && st.rev != 0 && electSessionDone(s) {
		st.busy, st.rev, st.record = false, 0, ""
	}
	if st.busy {
		return fmt.Errorf("%w: this %s already holds or waits for %q", ErrLocked, kind, pfx)
	}
	st.busy = true
	return nil
}

// end records the outcome of the acquire begin started.
func (st *lockState) end(rev int64, record string, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err != nil {
		rev, record = 0, ""
	}
	st.busy, st.rev, st.record = err == nil, rev, record
}

// held returns the held key's create revision, 0 if none or if s, the
// holder's session, has ended (its keys go with its lease).
func (st *lockState) held(s *Session) int64 {
	select {
	case <-s.Done():
		return 0
	default:
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.rev
}

// heldRecord returns the record of the holding, "" if none.
func (st *lockState) heldRecord() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.rev == 0 {
		return ""
	}
	return st.record
}

// release deletes q's held key, with extra(record) in the same txn, if it
// is still the one held; nothing if nothing is held. On an error the
// holding stays, for a retry. mu is not held across the round trip, so
// Token and IsOwner answer meanwhile (the holding lasts until the delete
// commits); a concurrent release finds the key gone and changes nothing.
func (st *lockState) release(ctx context.Context, q *lockQueue, extra func(record string) []Op) error {
	st.mu.Lock()
	rev, record := st.rev, st.record
	st.mu.Unlock()
	if rev == 0 {
		return nil
	}
	ops := []Op{OpDelete(q.key)}
	if extra != nil {
		ops = append(ops, extra(record)...)
	}
	if st.beforeRelease != nil {
		st.beforeRelease()
	}
	if _, err := q.s.n.Txn(ctx).If(q.ownerCmp(rev)).Then(ops...).Commit(); err != nil {
		return err
	}
	st.mu.Lock()
	if st.rev == rev {
		st.busy, st.rev, st.record = false, 0, ""
	}
	st.mu.Unlock()
	return nil
}
