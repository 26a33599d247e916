package concord_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

func TestRWMutexReadersShareWriterExcludes(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	const name = "locks/rw"
	readers := make([]*concord.RWMutex, 3)
	for i := range readers {
		readers[i] = concord.NewRWMutex(lockSession(t, n), name)
		if err := readers[i].RLock(ctx); err != nil { // all hold at once
			t.Fatal(err)
		}
	}
	w := concord.NewRWMutex(lockSession(t, n), name)
	wDone := lockStart(t, n, name, 4, func() error { return w.Lock(ctx) })
	// A reader arriving after the waiting writer queues behind it.
	late := concord.NewRWMutex(lockSession(t, n), name)
	lateDone := lockStart(t, n, name, 5, func() error { return late.RLock(ctx) })
	for i, r := range readers {
		select {
		case <-wDone:
			t.Fatalf("writer holds while %d readers hold", 3-i)
		case <-lateDone:
			t.Fatal("a reader overtook a waiting writer")
		default:
		}
		if err := r.RUnlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-wDone; err != nil {
		t.Fatal(err)
	}
	if !lockGuardedPut(t, n, w.IsOwner(), "x", "w") {
		t.Fatal("writer's IsOwner does not hold")
	}
	select {
	case <-lateDone:
		t.Fatal("a reader holds with the writer")
	case <-time.After(50 * time.Millisecond):
	}
	if err := w.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-lateDone; err != nil {
		t.Fatal(err)
	}
	wantErr(t, late.Lock(ctx), concord.ErrLocked) // one lock per RWMutex
}

func TestSemaphoreNeverOverLimit(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	const name, limit, workers = "sem/x", 3, 8
	s := lockSession(t, n)
	var cur, peak, rounds atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		sem := concord.NewSemaphore(s, name, limit)
		wg.Go(func() {
			for range 3 {
				if err := sem.Acquire(ctx); err != nil {
					t.Error(err)
					return
				}
				c := cur.Add(1)
				for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
				}
				// Also in the store: the guarded writes of holders count.
				if r, err := n.Get(ctx, name+"/", concord.WithRange(name+"/~"), concord.WithCountOnly()); err != nil || r.Count < c {
					t.Errorf("count %v, %v", r, err)
				}
				time.Sleep(5 * time.Millisecond) // hold a little so that holders overlap
				rounds.Add(1)
				cur.Add(-1)
				if err := sem.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > limit || p < 2 {
		t.Fatalf("peak of %d concurrent holders, limit %d", p, limit)
	}
	if rounds.Load() != 3*workers {
		t.Fatalf("%d rounds", rounds.Load())
	}
}

func TestSemaphoreTryAcquire(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	s := lockSession(t, n)
	a, b, c := concord.NewSemaphore(s, "sem/t", 2), concord.NewSemaphore(s, "sem/t", 2), concord.NewSemaphore(s, "sem/t", 2)
	for _, sem := range []*concord.Semaphore{a, b} {
		if err := sem.TryAcquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, c.TryAcquire(ctx), concord.ErrLocked)
	lockWantKeys(t, n, "sem/t", 2, "%d keys after a refused TryAcquire")
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.TryAcquire(ctx); err != nil {
		t.Fatal(err)
	}
	wantErr(t, concord.NewSemaphore(s, "sem/bad", 0).Acquire(ctx), concord.ErrInvalidRequest)
}

// TestSemaphoreAndRWMutexWaitersCleanUp: a cancelled Acquire and an RLock
// whose session ends leave no key behind and say why.
func TestSemaphoreAndRWMutexWaitersCleanUp(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	full := concord.NewSemaphore(lockSession(t, n), "sem/c", 1)
	if err := full.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	waiter := concord.NewSemaphore(lockSession(t, n), "sem/c", 1)
	errc := lockStart(t, n, "sem/c", 2, func() error { return waiter.Acquire(cctx) })
	cancel()
	wantErr(t, <-errc, context.Canceled)
	lockWantKeys(t, n, "sem/c", 1, "%d keys after a cancelled Acquire")

	w := concord.NewRWMutex(lockSession(t, n), "locks/rwc")
	if err := w.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	rs := lockSession(t, n)
	errc = lockStart(t, n, "locks/rwc", 2, func() error { return concord.NewRWMutex(rs, "locks/rwc").RLock(ctx) })
	rs.Orphan() // its keep-alives stop: Done closes, the waiter gives up
	wantErr(t, <-errc, concord.ErrSessionExpired)
	lockWantKeys(t, n, "locks/rwc", 1, "%d keys after the reader's session ended") // its lease lives on, its key does not
}

// TestRWMutexWrongUnlock: RUnlock while holding the write lock, or Unlock
// while holding the read lock, is refused with ErrInvalidRequest and
// releases nothing; the matching call then releases.
func TestRWMutexWrongUnlock(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	s := lockSession(t, n)
	w, r := concord.NewRWMutex(s, "wrong-w"), concord.NewRWMutex(s, "wrong-r")
	if err := w.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	unchanged(t, n, concord.ErrInvalidRequest, func() error { return w.RUnlock(ctx) })
	unchanged(t, n, concord.ErrInvalidRequest, func() error { return r.Unlock(ctx) })
	for _, c := range []struct {
		name string
		rw   *concord.RWMutex
		f    func(context.Context) error
	}{{"write", w, w.Unlock}, {"read", r, r.RUnlock}} {
		if resp, err := n.Txn(ctx).If(c.rw.IsOwner()).Commit(); err != nil || !resp.Succeeded {
			t.Fatalf("the %s lock was released by the wrong call (%v)", c.name, err)
		}
		if err := c.f(ctx); err != nil {
			t.Fatal(err)
		}
		if resp, err := n.Txn(ctx).If(c.rw.IsOwner()).Commit(); err != nil || resp.Succeeded {
			t.Fatalf("the %s lock is still held after its release (%v)", c.name, err)
		}
	}
}
