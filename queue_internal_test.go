package concord

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestQueueOneNodeWakesOne: consumers of a queue on one node wait in
// turn, whether they share a Queue value or each has its own (and its own
// session), so a message costs the winning claim and one empty claim of
// the next waiter, not one claim per waiting goroutine.
func TestQueueOneNodeWakesOne(t *testing.T) {
	ctx, n, s := lockOpenSolo(t)
	shared := NewQueue[string](s, "herd")
	const waiters = 8
	got := make(chan string, waiters)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range waiters {
		q := shared
		if i%2 == 1 {
			own, err := NewSession(n)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { own.Close() })
			q = NewQueue[string](own, "herd")
		}
		wg.Go(func() {
			if m, err := q.Dequeue(wctx); err == nil {
				got <- m.Value
			}
		})
	}
	// Every waiter has claimed once and found nothing: then one waits on
	// the watch and the others for the turn.
	claims := func() int64 { return n.claims.Load() }
	settled := func() int64 {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		last, since := claims(), time.Now()
		for time.Since(since) < 100*time.Millisecond {
			if time.Now().After(deadline) {
				t.Fatal("claims never settle")
			}
			time.Sleep(5 * time.Millisecond) // polling, bounded by deadline
			if c := claims(); c != last {
				last, since = c, time.Now()
			}
		}
		return last
	}
	for claims() < waiters {
		if ctx.Err() != nil {
			t.Fatal("waiters never claimed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := settled()
	if _, err := shared.Enqueue(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "one" {
		t.Fatalf("got %q", v)
	}
	spent := settled() - before
	cancel()
	wg.Wait()
	if spent > 2 {
		t.Fatalf("one message cost %d claims with %d consumers waiting on one node, want at most 2", spent, waiters)
	}
}
