package concord

import (
	"context"
	"sync"
	"testing"
	"time"
)

// lockOpenSolo opens a one-node cluster and a session on it, closed at
// cleanup, and returns them with a context bounding the test.
func lockOpenSolo(t *testing.T) (context.Context, *Node, *Session) {
	t.Helper()
	cfg := DefaultLocalConfig()
	cfg.Name = "solo"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	n, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	s, err := NewSession(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return ctx, n, s
}

// TestMutexNoThunderingHerd: with 8 waiters queued behind a holder, each
// waiter watches only the key just ahead of it, once, through all the
// hand-offs (etcd's recipe before waitDeletes, or a prefix watch, would
// wake every waiter on every release).
func TestMutexNoThunderingHerd(t *testing.T) {
	ctx, _, s := lockOpenSolo(t)
	holder := NewMutex(s, "herd")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	watched := map[string][]string{} // waiter key -> keys it watched
	keyOrder := []string{holder.q.key}
	var wg sync.WaitGroup
	for i := range 8 {
		m := NewMutex(s, "herd")
		m.q.onWatch = func(key string) {
			mu.Lock()
			watched[m.q.key] = append(watched[m.q.key], key)
			mu.Unlock()
		}
		keyOrder = append(keyOrder, m.q.key)
		wg.Go(func() {
			if err := m.Lock(ctx); err != nil {
				t.Error(err)
				return
			}
			if err := m.Unlock(ctx); err != nil {
				t.Error(err)
			}
		})
		// Queue them in order: wait until this one watches.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if time.Now().After(deadline) {
				t.Fatalf("waiter %d never watched its predecessor", i)
			}
			mu.Lock()
			done := len(watched[m.q.key]) > 0
			mu.Unlock()
			if done {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, key := range keyOrder[1:] {
		if got := watched[key]; len(got) != 1 || got[0] != keyOrder[i] {
			t.Errorf("waiter %d watched %q, want only its predecessor %q", i, got, keyOrder[i])
		}
	}
}

// TestRWMutexLeftoverReadKeyNotUpgraded: an RWMutex whose read key was
// left behind (a cleanup that failed) does not turn it into a write key in
// place, ahead of a reader that went past it.
func TestRWMutexLeftoverReadKeyNotUpgraded(t *testing.T) {
	ctx, n, s := lockOpenSolo(t)
	rw := NewRWMutex(s, "rwleft")
	if _, err := n.Put(ctx, rw.q.key, "r", WithLease(s.Lease())); err != nil { // the leftover
		t.Fatal(err)
	}
	reader := NewRWMutex(s, "rwleft")
	if err := reader.RLock(ctx); err != nil { // an older reader does not block it
		t.Fatal(err)
	}
	lctx, lcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer lcancel()
	if err := rw.Lock(lctx); err == nil {
		t.Fatal("the write lock was granted while a reader holds")
	}
	if err := reader.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rw.Lock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLockAccessorsAnswerDuringUnlock: Token, Key and IsOwner do no I/O
// and never block, also while an Unlock of the same Mutex waits for its
// commit: they still report the holding, which lasts until the delete
// commits.
func TestLockAccessorsAnswerDuringUnlock(t *testing.T) {
	ctx, _, s := lockOpenSolo(t)
	m := NewMutex(s, "busy")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	token := m.Token()
	inTxn, proceed := make(chan struct{}), make(chan struct{})
	m.st.beforeRelease = func() {
		close(inTxn)
		<-proceed
	}
	unlocked := make(chan error, 1)
	go func() { unlocked <- m.Unlock(ctx) }()
	<-inTxn
	answered := make(chan int64, 1)
	go func() {
		_ = m.Key()
		_ = m.IsOwner()
		answered <- m.Token()
	}()
	select {
	case got := <-answered:
		if got != token {
			t.Errorf("Token during the Unlock = %d, want %d (still held)", got, token)
		}
	case <-time.After(10 * time.Second):
		t.Error("Token, Key and IsOwner blocked while the Unlock was in flight")
	}
	close(proceed)
	if err := <-unlocked; err != nil {
		t.Fatal(err)
	}
	if m.Token() != 0 || m.Key() != "" {
		t.Fatalf("after Unlock: Token %d, Key %q; want 0 and empty", m.Token(), m.Key())
	}
}

// TestLockTokenEndsWithSession: once the holder's session has ended (its
// lease revoked, so its keys are gone), Token is 0 and Key is empty, for
// a Mutex and for an elected campaigner, as IsLeader already says.
func TestLockTokenEndsWithSession(t *testing.T) {
	ctx, n, s := lockOpenSolo(t)
	m := NewMutex(s, "gone")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	e := NewElection[string](s, "gone-el")
	if err := e.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if m.Token() == 0 || e.Token() == 0 {
		t.Fatalf("held: Mutex token %d, election token %d; want both set", m.Token(), e.Token())
	}
	if err := n.Revoke(ctx, s.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("session not done after its lease was revoked")
	}
	if m.Token() != 0 || m.Key() != "" || e.Token() != 0 || e.Key() != "" {
		t.Fatalf("after the session ended: Mutex %d %q, election %d %q; want 0 and empty", m.Token(), m.Key(), e.Token(), e.Key())
	}
}
