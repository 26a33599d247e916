package concord_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

// barrierWindow is how long a test leaves a blocked call the chance to
// return too early before it lets it go: not a wait for a condition, the
// window in which a broken barrier would show.
const barrierWindow = 150 * time.Millisecond

// TestBarrierWaitUntilRelease: on three nodes, Wait blocks while the
// barrier is held and every waiter returns once it is released; Hold on
// a held barrier is ErrKeyExists; Wait on a free barrier returns at once.
func TestBarrierWaitUntilRelease(t *testing.T) {
	c := concordtest.NewCluster(t, 3)
	ctx := testCtx(t)
	holder := concord.NewBarrier(c.Node(0), "barrier/b")
	if err := holder.Wait(ctx); err != nil {
		t.Fatalf("Wait on a free barrier: %v", err)
	}
	if err := holder.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	if err := concord.NewBarrier(c.Node(1), "barrier/b").Hold(ctx); !errors.Is(err, concord.ErrKeyExists) {
		t.Fatalf("second Hold: %v, want ErrKeyExists", err)
	}
	var released atomic.Bool
	errc := make(chan error, 6)
	var started sync.WaitGroup
	for i := range 6 {
		started.Add(1)
		go func() {
			b := concord.NewBarrier(c.Node(i%3), "barrier/b")
			started.Done()
			err := b.Wait(ctx)
			if err == nil && !released.Load() {
				err = fmt.Errorf("waiter %d: Wait returned before Release", i)
			}
			errc <- err
		}()
	}
	started.Wait()
	time.Sleep(barrierWindow)
	released.Store(true)
	if err := holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a waiter still blocked 20s after Release")
		}
	}
	if err := holder.Release(ctx); err != nil {
		t.Fatalf("Release of a free barrier: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	if err := holder.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(barrierWindow); cancel() }()
	if err := holder.Wait(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait: %v, want context.Canceled", err)
	}
}

// TestDoubleBarrierEnterLeave: three participants on three nodes, two
// rounds: no Enter returns before all three have entered, no Leave
// returns before all three have called Leave; the barrier is reusable.
func TestDoubleBarrierEnterLeave(t *testing.T) {
	c := concordtest.NewCluster(t, 3)
	ctx := testCtx(t)
	const count = 3
	for round := range 2 {
		var entering, leaving atomic.Int32
		var wg sync.WaitGroup
		errc := make(chan error, count)
		for i := range count {
			s := newSession(t, c.Node(i))
			wg.Go(func() {
				b := concord.NewDoubleBarrier(s, "barrier/double", count)
				// Participants arrive one by one, a window apart.
				time.Sleep(time.Duration(i) * barrierWindow)
				entering.Add(1)
				if err := b.Enter(ctx); err != nil {
					errc <- err
					return
				}
				if n := entering.Load(); n < count {
					errc <- fmt.Errorf("round %d: participant %d left Enter with %d of %d entered", round, i, n, count)
					return
				}
				// Round 0: the first in leaves last; round 1: first.
				order := count - 1 - i
				if round == 1 {
					order = i
				}
				time.Sleep(time.Duration(order) * barrierWindow)
				leaving.Add(1)
				if err := b.Leave(ctx); err != nil {
					errc <- err
					return
				}
				if n := leaving.Load(); n < count {
					errc <- fmt.Errorf("round %d: participant %d left Leave with %d of %d leaving", round, i, n, count)
				}
			})
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		if r := get(t, c.Node(0), "barrier/double/", concord.WithPrefix()); r.Count != 0 {
			t.Fatalf("round %d: keys left behind: %v", round, keys(r.Kvs))
		}
	}
}

// TestDoubleBarrierFailedEnter: a participant whose Enter is cancelled,
// or whose session ends while it waits (ErrSessionExpired), is not
// counted: the barrier still waits for count live participants.
func TestDoubleBarrierFailedEnter(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	const name = "barrier/failed"
	if err := concord.NewDoubleBarrier(newSession(t, n), name, 0).Enter(ctx); !errors.Is(err, concord.ErrInvalidRequest) {
		t.Fatalf("count 0: %v, want ErrInvalidRequest", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(barrierWindow); cancel() }()
	if err := concord.NewDoubleBarrier(newSession(t, n), name, 2).Enter(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Enter: %v, want context.Canceled", err)
	}
	s := newSession(t, n)
	go func() { time.Sleep(barrierWindow); n.Revoke(ctx, s.Lease()) }()
	if err := concord.NewDoubleBarrier(s, name, 2).Enter(ctx); !errors.Is(err, concord.ErrSessionExpired) {
		t.Fatalf("Enter whose session ended: %v, want ErrSessionExpired", err)
	}
	barrierEnterTogether(t, n, name, "a failed Enter was counted")
}

// TestDoubleBarrierEnterNodeClosed: a participant waiting in Enter for
// the others gets ErrClosed when its node closes, never nil (the barrier
// did not open). Its watch ends with the node: Enter reads again instead
// of taking that for the ready key's put.
func TestDoubleBarrierEnterNodeClosed(t *testing.T) {
	for i := range 10 {
		n := openOne(t)
		const name = "barrier/closed"
		b := concord.NewDoubleBarrier(newSession(t, n), name, 2)
		errc := make(chan error, 1)
		go func() { errc <- b.Enter(testCtx(t)) }()
		eventually(t, 10*time.Second, "the participant's key", func() bool {
			return get(t, n, name+"/waiters/", concord.WithPrefix()).Count == 1
		})
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; !errors.Is(err, concord.ErrClosed) {
			t.Fatalf("run %d: Enter on a closed node: %v, want ErrClosed", i, err)
		}
	}
}

// TestDoubleBarrierLeaveSessionExpired: the lowest participant, waiting
// in Leave, loses its session: it gets ErrSessionExpired; the other one
// leaves, and, since the last one out never reopened the barrier, removes
// the ready key itself, so the next round waits for its participants.
func TestDoubleBarrierLeaveSessionExpired(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	const name = "barrier/leave"
	s1, s2 := newSession(t, n), newSession(t, n)
	b1, b2 := concord.NewDoubleBarrier(s1, name, 2), concord.NewDoubleBarrier(s2, name, 2)
	errc := make(chan error, 1)
	go func() { errc <- b1.Enter(ctx) }() // b1 first: the lowest
	eventually(t, 10*time.Second, "b1's key", func() bool {
		return get(t, n, name+"/waiters/", concord.WithPrefix()).Count == 1
	})
	if err := b2.Enter(ctx); err != nil { // b2 opens the barrier
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// b1 waits in Leave for b2, which has not left.
	go func() { time.Sleep(barrierWindow); n.Revoke(ctx, s1.Lease()) }()
	if err := b1.Leave(ctx); !errors.Is(err, concord.ErrSessionExpired) {
		t.Fatalf("Leave whose session ended: %v, want ErrSessionExpired", err)
	}
	if err := b2.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if r := get(t, n, name+"/", concord.WithPrefix()); r.Count != 0 {
		t.Fatalf("keys left behind: %v", keys(r.Kvs))
	}
}

// TestDoubleBarrierLowestDies: the non-lowest participant leaves first
// and waits for the lowest, whose session then ends without a Leave: the
// waiter returns, removes the ready key the last one out never removed,
// and the next round waits for its participants again.
func TestDoubleBarrierLowestDies(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	const name = "barrier/lowest"
	s1, s2 := newSession(t, n), newSession(t, n)
	b1, b2 := concord.NewDoubleBarrier(s1, name, 2), concord.NewDoubleBarrier(s2, name, 2)
	waiters := func() int64 { return get(t, n, name+"/waiters/", concord.WithPrefix()).Count }
	errc := make(chan error, 1)
	go func() { errc <- b1.Enter(ctx) }() // b1 first: the lowest
	eventually(t, 10*time.Second, "b1's key", func() bool { return waiters() == 1 })
	if err := b2.Enter(ctx); err != nil { // b2 opens the barrier
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	go func() { errc <- b2.Leave(ctx) }()
	eventually(t, 10*time.Second, "b2 to leave its key", func() bool { return waiters() == 1 })
	if err := n.Revoke(ctx, s1.Lease()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if r := get(t, n, name+"/", concord.WithPrefix()); r.Count != 0 {
		t.Fatalf("keys left behind: %v", keys(r.Kvs))
	}
	doneWithin(t, s1, 5*time.Second, "a revoke")
	if err := b1.Leave(ctx); !errors.Is(err, concord.ErrSessionExpired) {
		t.Fatalf("Leave after the session ended: %v, want ErrSessionExpired", err)
	}
	barrierEnterTogether(t, n, name, "a stale ready key")
}

// barrierEnterTogether checks that a double barrier name for two lets the
// first participant out of Enter only once the second has come; why
// names the fault an early return would show.
func barrierEnterTogether(t *testing.T, n *concord.Node, name, why string) {
	t.Helper()
	ctx := testCtx(t)
	var second atomic.Bool
	errc := make(chan error, 1)
	go func() {
		err := concord.NewDoubleBarrier(newSession(t, n), name, 2).Enter(ctx)
		if err == nil && !second.Load() {
			err = fmt.Errorf("Enter returned with one participant: %s", why)
		}
		errc <- err
	}()
	time.Sleep(barrierWindow)
	second.Store(true)
	if err := concord.NewDoubleBarrier(newSession(t, n), name, 2).Enter(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestPrimitivesRefuseEmptyName: a Barrier, a DoubleBarrier or an Election
// with an empty name (its keys would lie under "/") fails every call with
// ErrEmptyKey and writes nothing, as a Mutex or a Queue does.
func TestPrimitivesRefuseEmptyName(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	s, err := concord.NewSession(n)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, db, e := concord.NewBarrier(n, ""), concord.NewDoubleBarrier(s, "", 2), concord.NewElection[string](s, "")
	for name, f := range map[string]func() error{
		"Barrier.Hold":        func() error { return b.Hold(ctx) },
		"Barrier.Release":     func() error { return b.Release(ctx) },
		"Barrier.Wait":        func() error { return b.Wait(ctx) },
		"DoubleBarrier.Enter": func() error { return db.Enter(ctx) },
		"Election.Campaign":   func() error { return e.Campaign(ctx, "a") },
		"Election.Proclaim":   func() error { return e.Proclaim(ctx, "a") },
		"Election.Leader":     func() error { _, err := e.Leader(ctx); return err },
	} {
		t.Run(name, func(t *testing.T) { unchanged(t, n, concord.ErrEmptyKey, f) })
	}
	if _, open := <-e.Observe(ctx); open {
		t.Fatal("Observe of an election with an empty name delivered a value")
	}
	if c := get(t, n, "/", concord.WithPrefix(), concord.WithCountOnly()).Count; c != 0 {
		t.Fatalf("%d keys under \"/\"", c)
	}
}
