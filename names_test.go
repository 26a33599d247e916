package concord_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// Primitives nest like paths: "a" and "a/b" are two locks, elections,
// barriers or queues, and one never counts the other's keys.

// shortCtx bounds a call that must block: it returns once d has passed.
func shortCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(testCtx(t), d)
	t.Cleanup(cancel)
	return ctx
}

func TestNestedLockNames(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	// A nested Mutex that lost its session while holding leaves its
	// lock-delay record, attached to no lease, under the parent's prefix.
	sc, err := concord.NewSession(n, concord.WithSessionTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := concord.NewMutex(sc, "locks/a/b", concord.WithLockDelay(time.Second)).Lock(ctx); err != nil {
		t.Fatal(err)
	}
	sc.Orphan()
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	if get(t, n, "locks/a/b/~delay").Count != 1 {
		t.Fatal("the nested lock left no lock-delay record: the test proves nothing")
	}
	s := lockSession(t, n)
	held := concord.NewMutex(lockSession(t, n), "locks/a/b")
	if err := held.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	parent := concord.NewMutex(s, "locks/a")
	if err := parent.TryLock(ctx); err != nil {
		t.Fatalf("TryLock of locks/a while only locks/a/b is held: %v", err)
	}
	if err := parent.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := parent.Lock(shortCtx(t, 5*time.Second)); err != nil {
		t.Fatalf("Lock of locks/a while only locks/a/b is held: %v", err)
	}

	rwChild := concord.NewRWMutex(lockSession(t, n), "rw/a/b")
	if err := rwChild.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := concord.NewRWMutex(s, "rw/a").Lock(shortCtx(t, 5*time.Second)); err != nil {
		t.Fatalf("RWMutex rw/a while only rw/a/b is held: %v", err)
	}

	if err := concord.NewSemaphore(lockSession(t, n), "sem/a/b", 1).Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := concord.NewSemaphore(s, "sem/a", 1).TryAcquire(ctx); err != nil {
		t.Fatalf("TryAcquire of sem/a while only sem/a/b is full: %v", err)
	}
}

func TestNestedElectionNames(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	parent := concord.NewElection[string](lockSession(t, n), "el/a")
	obs := parent.Observe(ctx)
	if l := <-obs; l.Key != "" {
		t.Fatalf("observed %+v before any campaign", l)
	}
	if err := concord.NewElection[string](lockSession(t, n), "el/a/b").Campaign(ctx, "child"); err != nil {
		t.Fatal(err)
	}
	if l, err := parent.Leader(ctx); !errors.Is(err, concord.ErrNoLeader) {
		t.Fatalf("Leader of el/a while only el/a/b has one: %+v, %v", l, err)
	}
	if err := parent.Campaign(shortCtx(t, 5*time.Second), "parent"); err != nil {
		t.Fatalf("Campaign in el/a while only el/a/b has a leader: %v", err)
	}
	l, err := parent.Leader(ctx)
	if err != nil || l.Value != "parent" || l.Key != parent.Key() {
		t.Fatalf("Leader of el/a: %+v, %v", l, err)
	}
	// The observer saw the parent's leader, never the child's.
	if l := <-obs; l.Value != "parent" {
		t.Fatalf("Observe on el/a delivered %+v, want the parent's leader", l)
	}
}

func TestNestedDoubleBarrierNames(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	// The barrier "db/a/waiters/x" keeps its keys under db/a/waiters/.
	if err := concord.NewDoubleBarrier(lockSession(t, n), "db/a/waiters/x", 2).Enter(shortCtx(t, 200*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a lone participant of a barrier of 2 entered: %v", err)
	}
	nested := concord.NewDoubleBarrier(lockSession(t, n), "db/a/waiters/x", 2)
	nctx, stop := context.WithCancel(ctx)
	nestedDone := make(chan error, 1)
	go func() { nestedDone <- nested.Enter(nctx) }() // stays in: its key stays under db/a/waiters/
	defer func() {
		stop()
		<-nestedDone
	}()
	eventually(t, 10*time.Second, "the nested participant's key", func() bool {
		return get(t, n, "db/a/waiters/x/waiters/", concord.WithPrefix(), concord.WithCountOnly()).Count >= 1
	})
	first := concord.NewDoubleBarrier(lockSession(t, n), "db/a", 2)
	if err := first.Enter(shortCtx(t, 300*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a lone participant of db/a entered beside db/a/waiters/x's: %v", err)
	}
	done := make(chan error, 1)
	a := concord.NewDoubleBarrier(lockSession(t, n), "db/a", 2)
	go func() { done <- a.Enter(ctx) }()
	if err := concord.NewDoubleBarrier(lockSession(t, n), "db/a", 2).Enter(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestQueueNameClashRefused(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	s := lockSession(t, n)
	for _, name := range []string{"jobs/m", "jobs/c/x", "a/b/w", "jobs/dead", "a//m"} {
		before := get(t, n, "x").Header.Revision
		_, err := concord.NewQueue[string](s, name).Enqueue(ctx, "v")
		wantErr(t, err, concord.ErrInvalidRequest)
		if after := get(t, n, "x").Header.Revision; after != before {
			t.Fatalf("refused Enqueue on %q moved the revision from %d to %d", name, before, after)
		}
	}
	// Nested names that do not clash are two queues.
	child := concord.NewQueue[string](s, "jobs/urgent")
	if _, err := child.Enqueue(ctx, "for the child"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"m", "m/x", "jobs/mx"} {
		if _, err := concord.NewQueue[string](s, name).Enqueue(ctx, "v"); err != nil {
			t.Fatalf("queue %q: %v", name, err)
		}
	}
	parent := concord.NewQueue[string](s, "jobs")
	if l, err := parent.Len(ctx); err != nil || l != 0 {
		t.Fatalf("Len of jobs: %d, %v", l, err)
	}
	if m, err := parent.Dequeue(shortCtx(t, 200*time.Millisecond)); err == nil {
		t.Fatalf("jobs delivered %q, a message of jobs/urgent", m.Value)
	}
	m, err := child.Dequeue(ctx)
	if err != nil || m.Value != "for the child" {
		t.Fatalf("jobs/urgent: %v, %v", m, err)
	}
}
