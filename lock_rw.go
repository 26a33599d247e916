package concord

import (
	"context"
	"fmt"
)

// RWMutex is a distributed readers-writer lock (etcd's recipe RWMutex) on
// the queue of Mutex: each RWMutex is one participant whose key's value
// says "r" or "w". A reader holds once no older writer waits or holds; a
// writer once no older key of any kind remains. A reader arriving after a
// waiting writer queues behind it, so writers are not starved. Each
// waiter watches only the youngest key that blocks it.
//
// An RWMutex holds one lock at a time: RLock or Lock while it holds or
// waits returns an error wrapping ErrLocked. Its methods are safe for
// concurrent use.
type RWMutex struct {
	q  lockQueue
	st lockState
}

// NewRWMutex returns an RWMutex on the lock called name; its keys live
// under name + "/". Do not use one name for a Mutex and an RWMutex. An
// empty name makes RLock and Lock fail with ErrEmptyKey.
func NewRWMutex(s *Session, name string) *RWMutex {
	return &RWMutex{q: newLockQueue(s, "RWMutex", name)}
}

// RLock blocks until the read lock is held. On ctx's end or the session's,
// it cleans up as Mutex.Lock.
func (rw *RWMutex) RLock(ctx context.Context) error {
	if err := rw.lock(ctx, "r"); err != nil {
		return fmt.Errorf("concord.RWMutex.RLock: %w", err)
	}
	return nil
}

// Lock blocks until the write lock is held. On ctx's end or the
// session's, it cleans up as Mutex.Lock.
func (rw *RWMutex) Lock(ctx context.Context) error {
	if err := rw.lock(ctx, "w"); err != nil {
		return fmt.Errorf("concord.RWMutex.Lock: %w", err)
	}
	return nil
}

// RUnlock releases the read lock, as Mutex.Unlock. While this RWMutex
// holds the write lock it returns an error wrapping ErrInvalidRequest and
// releases nothing.
func (rw *RWMutex) RUnlock(ctx context.Context) error {
	if err := rw.unlock(ctx, "r"); err != nil {
		return fmt.Errorf("concord.RWMutex.RUnlock: %w", err)
	}
	return nil
}

// Unlock releases the write lock, as Mutex.Unlock. While this RWMutex
// holds the read lock it returns an error wrapping ErrInvalidRequest and
// releases nothing.
func (rw *RWMutex) Unlock(ctx context.Context) error {
	if err := rw.unlock(ctx, "w"); err != nil {
		return fmt.Errorf("concord.RWMutex.Unlock: %w", err)
	}
	return nil
}

// IsOwner returns a compare that holds while this RWMutex holds its read
// or write lock; see Mutex.IsOwner.
func (rw *RWMutex) IsOwner() Cmp { return rw.q.ownerCmp(rw.st.held(rw.q.s)) }

func (rw *RWMutex) lock(ctx context.Context, mode string) error {
	if rw.q.err != nil {
		return rw.q.err
	}
	if err := rw.st.begin("RWMutex", rw.q.pfx, rw.q.s); err != nil {
		return err
	}
	rev, err := rw.q.acquire(ctx, mode, 1, func(kv *KeyValue) bool { return mode == "w" || string(kv.Value) == "w" })
	rw.st.end(rev, mode, err) // the record is the mode held
	return err
}

func (rw *RWMutex) unlock(ctx context.Context, mode string) error {
	if held := rw.st.heldRecord(); held != "" && held != mode {
		return fmt.Errorf("%w: this RWMutex holds the %s lock", ErrInvalidRequest, map[string]string{"r": "read", "w": "write"}[held])
	}
	return rw.st.release(ctx, &rw.q, nil)
}
