package concord_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

// lockSession opens a session on n, closed at cleanup.
func lockSession(t *testing.T, n *concord.Node, opts ...concord.SessionOption) *concord.Session {
	t.Helper()
	s, err := concord.NewSession(n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// lockWaiters returns the number of waiter keys of the lock called name.
func lockWaiters(t *testing.T, n *concord.Node, name string) int64 {
	t.Helper()
	resp, err := n.Get(testCtx(t), name+"/", concord.WithRange(name+"/~"), concord.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// lockWantKeys fails with msg (a format taking the count) unless the lock
// called name has want keys.
func lockWantKeys(t *testing.T, n *concord.Node, name string, want int64, msg string) {
	t.Helper()
	if c := lockWaiters(t, n, name); c != want {
		t.Fatalf(msg, c)
	}
}

// lockStart runs f (a Lock, Acquire, ...) on a goroutine and waits until
// the lock called name has want keys; f's error comes on the channel.
func lockStart(t *testing.T, n *concord.Node, name string, want int64, f func() error) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- f() }()
	eventually(t, 10*time.Second, name+" waiter queued", func() bool { return lockWaiters(t, n, name) == want })
	return errc
}

// lockGuardedPut puts key=val if cmp holds and tells whether it did.
func lockGuardedPut(t *testing.T, n *concord.Node, cmp concord.Cmp, key, val string) bool {
	t.Helper()
	resp, err := n.Txn(testCtx(t)).If(cmp).Then(concord.OpPut(key, val)).Commit()
	if err != nil {
		t.Fatal(err)
	}
	return resp.Succeeded
}

func TestMutexLockUnlockRelock(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	m := concord.NewMutex(lockSession(t, n), "locks/a")
	if m.Token() != 0 || m.Key() != "" || lockGuardedPut(t, n, m.IsOwner(), "x", "before") {
		t.Fatal("a Mutex that never locked looks like a holder")
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	tok, owner := m.Token(), m.IsOwner()
	if tok <= 0 || m.Key() == "" {
		t.Fatalf("token %d key %q after Lock", tok, m.Key())
	}
	if kv := get(t, n, m.Key()).Kvs; len(kv) != 1 || kv[0].CreateRevision != tok {
		t.Fatalf("token %d is not the holder key's create revision (%v)", tok, kv)
	}
	if !lockGuardedPut(t, n, owner, "x", "held") {
		t.Fatal("IsOwner does not hold while locked")
	}
	wantErr(t, m.Lock(ctx), concord.ErrLocked) // one participant: no re-entry
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if lockGuardedPut(t, n, owner, "x", "stale") || m.Token() != 0 {
		t.Fatal("the holding's IsOwner still holds after Unlock")
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("second Unlock: %v", err)
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	if m.Token() <= tok {
		t.Fatalf("token %d after re-Lock, not above %d", m.Token(), tok)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	lockWantKeys(t, n, "locks/a", 0, "%d keys left after Unlock")
}

func TestMutexTryLock(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	s := lockSession(t, n)
	a, b := concord.NewMutex(s, "locks/t"), concord.NewMutex(s, "locks/t")
	if err := a.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	// Same session, other Mutex: another participant, refused.
	wantErr(t, b.TryLock(ctx), concord.ErrLocked)
	lockWantKeys(t, n, "locks/t", 1, "%d keys after a refused TryLock, want the holder's alone")
	if b.Token() != 0 || lockGuardedPut(t, n, b.IsOwner(), "x", "b") {
		t.Fatal("a refused TryLock left its Mutex looking like a holder")
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.TryLock(ctx); err != nil {
		t.Fatalf("TryLock of a free lock: %v", err)
	}
}

// lockQueueUp starts Lock on each mutex in turn, each once the previous
// one's key is queued, and returns the order they acquire in.
func lockQueueUp(t *testing.T, n *concord.Node, name string, ms []*concord.Mutex, base int64) (<-chan int, *sync.WaitGroup) {
	t.Helper()
	order := make(chan int, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			if err := m.Lock(testCtx(t)); err != nil {
				t.Error(err)
				return
			}
			order <- i
		})
		eventually(t, 10*time.Second, "waiter queued", func() bool { return lockWaiters(t, n, name) == base+int64(i)+1 })
	}
	return order, &wg
}

// TestMutexHandOffFIFO: waiters on the three nodes of a cluster get the
// lock in the order they queued, one at a time, with increasing tokens.
func TestMutexHandOffFIFO(t *testing.T) {
	c := concordtest.NewCluster(t, 3)
	n := c.Node(0)
	ctx := testCtx(t)
	holder := concord.NewMutex(lockSession(t, n), "locks/fifo")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	ms := make([]*concord.Mutex, 6)
	for i := range ms {
		ms[i] = concord.NewMutex(lockSession(t, c.Node(i%3)), "locks/fifo")
	}
	order, wg := lockQueueUp(t, n, "locks/fifo", ms, 1)
	last := holder.Token()
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	for want := range ms {
		got := <-order
		if got != want {
			t.Fatalf("waiter %d acquired in turn %d", got, want)
		}
		if tok := ms[got].Token(); tok <= last {
			t.Fatalf("token %d after %d", tok, last)
		} else {
			last = tok
		}
		select {
		case extra := <-order:
			t.Fatalf("waiter %d acquired while %d holds", extra, got)
		default:
		}
		if err := ms[got].Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestMutexCancelledLockRemovesKey(t *testing.T) {
	n := openOne(t)
	holder := concord.NewMutex(lockSession(t, n), "locks/c")
	if err := holder.Lock(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	w := concord.NewMutex(lockSession(t, n), "locks/c")
	ctx, cancel := context.WithCancel(testCtx(t))
	errc := lockStart(t, n, "locks/c", 2, func() error { return w.Lock(ctx) })
	cancel()
	err := <-errc
	wantErr(t, err, context.Canceled)
	lockWantKeys(t, n, "locks/c", 1, "%d keys after a cancelled Lock, want the holder's alone")
	// The cancelled Mutex can queue again and gets the lock on Unlock.
	errc2 := lockStart(t, n, "locks/c", 2, func() error { return w.Lock(testCtx(t)) })
	if err := holder.Unlock(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-errc2; err != nil {
		t.Fatal(err)
	}
}

func TestMutexWaiterSessionExpired(t *testing.T) {
	n := openOne(t)
	holder := concord.NewMutex(lockSession(t, n), "locks/s")
	if err := holder.Lock(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	ws := lockSession(t, n)
	w := concord.NewMutex(ws, "locks/s")
	errc := lockStart(t, n, "locks/s", 2, func() error { return w.Lock(testCtx(t)) })
	// The lease goes from under the waiter (revoked by someone else).
	if err := n.Revoke(testCtx(t), ws.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		wantErr(t, err, concord.ErrSessionExpired)
		if errors.Is(err, concord.ErrClosed) {
			t.Fatalf("%v: ErrClosed, but the node runs", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiter whose session ended still waits")
	}
	wantErr(t, w.Lock(testCtx(t)), concord.ErrSessionExpired)
	lockWantKeys(t, n, "locks/s", 1, "%d keys, want the holder's alone")
}

func TestMutexRepeatedUnlockKeepsNewerHolder(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	s := lockSession(t, n)
	a, b := concord.NewMutex(s, "locks/r"), concord.NewMutex(s, "locks/r")
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	errc := lockStart(t, n, "locks/r", 2, func() error { return b.Lock(ctx) })
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for range 2 { // etcd#22082: a repeated Unlock on the same session deleted b's key
		if err := a.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !lockGuardedPut(t, n, b.IsOwner(), "x", "b") {
		t.Fatal("a repeated Unlock took the lock from its newer holder")
	}
}

func TestMutexLockOnEndedSession(t *testing.T) {
	n := openOne(t)
	s := lockSession(t, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	m := concord.NewMutex(s, "locks/e")
	wantErr(t, m.Lock(testCtx(t)), concord.ErrSessionExpired)
	wantErr(t, m.TryLock(testCtx(t)), concord.ErrSessionExpired)
	lockWantKeys(t, n, "locks/e", 0, "%d keys left")
}

// TestLocksAfterHoldersSessionEnded: a Mutex, RWMutex or Semaphore whose
// holding went with its session's lease answers a new acquire with
// ErrSessionExpired, not ErrLocked ("already holds"): the holding is gone.
func TestLocksAfterHoldersSessionEnded(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	s := lockSession(t, n)
	m := concord.NewMutex(s, "locks/ended/m")
	rw := concord.NewRWMutex(s, "locks/ended/rw")
	sem := concord.NewSemaphore(s, "locks/ended/sem", 2)
	for _, acquire := range []func(context.Context) error{m.Lock, rw.RLock, sem.Acquire} {
		if err := acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.TryLock(ctx); !errors.Is(err, concord.ErrLocked) {
		t.Fatalf("TryLock while holding: %v, want ErrLocked", err)
	}
	if err := n.Revoke(ctx, s.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("the session did not end")
	}
	if m.Token() != 0 {
		t.Fatalf("Token %d after the session ended", m.Token())
	}
	for name, acquire := range map[string]func(context.Context) error{
		"Mutex.Lock": m.Lock, "Mutex.TryLock": m.TryLock, "RWMutex.Lock": rw.Lock,
		"RWMutex.RLock": rw.RLock, "Semaphore.Acquire": sem.Acquire, "Semaphore.TryAcquire": sem.TryAcquire,
	} {
		err := acquire(ctx)
		if !errors.Is(err, concord.ErrSessionExpired) || errors.Is(err, concord.ErrLocked) {
			t.Errorf("%s after the session ended: %v, want ErrSessionExpired", name, err)
		}
	}
	lockWantKeys(t, n, "locks/ended/", 0, "%d keys left")
}

// lockExpectLockWithin locks m and checks how long it took.
func lockTime(t *testing.T, m *concord.Mutex) time.Duration {
	t.Helper()
	start := time.Now()
	if err := m.Lock(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func TestMutexLockDelay(t *testing.T) {
	n := openOne(t)
	const delay = 700 * time.Millisecond
	ctx := testCtx(t)
	// A holder whose session ends without Unlock: nobody gets the lock
	// for the delay, neither a waiter queued before (whatever its own
	// options) nor one that comes later.
	dead := lockSession(t, n)
	if err := concord.NewMutex(dead, "locks/d", concord.WithLockDelay(delay)).Lock(ctx); err != nil {
		t.Fatal(err)
	}
	s := lockSession(t, n)
	queued := concord.NewMutex(s, "locks/d")
	errc := lockStart(t, n, "locks/d", 2, func() error { return queued.Lock(ctx) })
	died := time.Now()
	if err := dead.Close(); err != nil { // revokes: the key goes, the record stays
		t.Fatal(err)
	}
	wantErr(t, concord.NewMutex(s, "locks/d").TryLock(ctx), concord.ErrLocked)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(died); took < delay {
		t.Fatalf("lock granted %v after its holder died, before the %v lock-delay", took, delay)
	}
	if err := queued.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	dead = lockSession(t, n)
	if err := concord.NewMutex(dead, "locks/d", concord.WithLockDelay(delay)).Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dead.Close(); err != nil {
		t.Fatal(err)
	}
	if took := lockTime(t, concord.NewMutex(s, "locks/d")); took < delay {
		t.Fatalf("lock granted %v after its holder died, before the %v lock-delay", took, delay)
	}
	// A holder that unlocks leaves no delay behind.
	m := concord.NewMutex(s, "locks/d2", concord.WithLockDelay(delay))
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if took := lockTime(t, concord.NewMutex(s, "locks/d2")); took >= delay {
		t.Fatalf("lock took %v after an Unlock: a delay applied", took)
	}
	// Without the option a dead holder's lock passes on at once.
	dead2 := lockSession(t, n)
	if err := concord.NewMutex(dead2, "locks/d3").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dead2.Close(); err != nil {
		t.Fatal(err)
	}
	if took := lockTime(t, concord.NewMutex(s, "locks/d3")); took >= delay {
		t.Fatalf("lock took %v without a lock-delay", took)
	}
}

// TestMutexLockDelayTryLockOnly: with no Lock to wait it out, the delay
// still ends: TryLock is refused for the delay, then succeeds.
func TestMutexLockDelayTryLockOnly(t *testing.T) {
	n := openOne(t)
	const delay = 500 * time.Millisecond
	ctx := testCtx(t)
	dead := lockSession(t, n)
	if err := concord.NewMutex(dead, "locks/dt", concord.WithLockDelay(delay)).Lock(ctx); err != nil {
		t.Fatal(err)
	}
	died := time.Now()
	if err := dead.Close(); err != nil {
		t.Fatal(err)
	}
	m := concord.NewMutex(lockSession(t, n), "locks/dt")
	tries := 0
	eventually(t, 10*time.Second, "TryLock to succeed after the delay", func() bool {
		tries++
		err := m.TryLock(ctx)
		if err != nil && !errors.Is(err, concord.ErrLocked) {
			t.Fatal(err)
		}
		return err == nil
	})
	if took := time.Since(died); took < delay || tries < 2 {
		t.Fatalf("TryLock succeeded %v after the holder died, try %d: the %v delay did not hold", took, tries, delay)
	}
	lockWantKeys(t, n, "locks/dt", 1, "%d keys: want the holder's alone")
}

// TestLockEmptyName: a Mutex, RWMutex or Semaphore with an empty name
// (keys under "/") is refused with ErrEmptyKey by every acquire, as a
// Queue or Registry with an empty name is, and nothing is written; so is
// a Mutex with a negative WithLockDelay, with ErrInvalidRequest.
func TestLockEmptyName(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	s := lockSession(t, n)
	m, rw, sem := concord.NewMutex(s, ""), concord.NewRWMutex(s, ""), concord.NewSemaphore(s, "", 1)
	for name, f := range map[string]func() error{
		"Mutex.Lock":             func() error { return m.Lock(ctx) },
		"Mutex.TryLock":          func() error { return m.TryLock(ctx) },
		"RWMutex.RLock":          func() error { return rw.RLock(ctx) },
		"RWMutex.Lock":           func() error { return rw.Lock(ctx) },
		"Semaphore.Acquire":      func() error { return sem.Acquire(ctx) },
		"Semaphore.TryAcquire":   func() error { return sem.TryAcquire(ctx) },
		"Semaphore with limit 0": func() error { return concord.NewSemaphore(s, "", 0).Acquire(ctx) },
	} {
		t.Run(name, func(t *testing.T) { unchanged(t, n, concord.ErrEmptyKey, f) })
	}
	neg := concord.NewMutex(s, "neg-delay", concord.WithLockDelay(-time.Second))
	unchanged(t, n, concord.ErrInvalidRequest, func() error { return neg.Lock(ctx) })
	unchanged(t, n, concord.ErrInvalidRequest, func() error { return neg.TryLock(ctx) })
	if c := get(t, n, "/", concord.WithPrefix(), concord.WithCountOnly()).Count; c != 0 {
		t.Fatalf("%d keys under \"/\"", c)
	}
}
