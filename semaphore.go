package concord

import (
	"context"
	"fmt"
)

// Semaphore is a distributed counting semaphore on the queue of Mutex: at
// most limit participants hold it at once, in arrival (create revision)
// order. Each Semaphore is one participant holding at most one slot. A
// waiter holds once fewer than limit older keys remain, and watches only
// the limit youngest of them: a release wakes at most limit waiters, and
// for limit 1 exactly one. Every participant of one name must use the
// same limit. Its methods are safe for concurrent use.
type Semaphore struct {
	q     lockQueue
	limit int
	st    lockState
}

// NewSemaphore returns a Semaphore of limit slots called name; its keys
// live under name + "/". An empty name makes Acquire and TryAcquire fail
// with ErrEmptyKey, a limit below 1 with ErrInvalidRequest.
func NewSemaphore(s *Session, name string, limit int) *Semaphore {
	return &Semaphore{q: newLockQueue(s, "Semaphore", name), limit: limit}
}

// Acquire blocks until a slot is held. On ctx's end or the session's, it
// cleans up as Mutex.Lock.
func (sem *Semaphore) Acquire(ctx context.Context) error {
	if err := sem.acquire(ctx, true); err != nil {
		return fmt.Errorf("concord.Semaphore.Acquire: %w", err)
	}
	return nil
}

// TryAcquire takes a slot if one is free and no one waits, else returns
// ErrLocked and leaves nothing behind.
func (sem *Semaphore) TryAcquire(ctx context.Context) error {
	if err := sem.acquire(ctx, false); err != nil {
		return fmt.Errorf("concord.Semaphore.TryAcquire: %w", err)
	}
	return nil
}

// Release gives the slot back. It does nothing if the Semaphore holds no
// slot (or its session lost it); on an error it still holds.
func (sem *Semaphore) Release(ctx context.Context) error {
	if err := sem.st.release(ctx, &sem.q, nil); err != nil {
		return fmt.Errorf("concord.Semaphore.Release: %w", err)
	}
	return nil
}

// Token returns the create revision of the held slot's key (0 if none).
func (sem *Semaphore) Token() int64 { return sem.st.held(sem.q.s) }

// IsOwner returns a compare that holds while this Semaphore holds its
// slot; see Mutex.IsOwner.
func (sem *Semaphore) IsOwner() Cmp { return sem.q.ownerCmp(sem.st.held(sem.q.s)) }

func (sem *Semaphore) acquire(ctx context.Context, wait bool) error {
	if sem.q.err != nil {
		return sem.q.err
	}
	if sem.limit < 1 {
		return fmt.Errorf("%w: semaphore limit %d, want >= 1", ErrInvalidRequest, sem.limit)
	}
	if err := sem.st.begin("Semaphore", sem.q.pfx, sem.q.s); err != nil {
		return err
	}
	var rev int64
	var err error
	if wait {
		rev, err = sem.q.acquire(ctx, "", sem.limit, nil)
	} else {
		rev, err = sem.q.try(ctx, sem.limit)
	}
	sem.st.end(rev, "", err)
	return err
}
