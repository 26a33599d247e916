package concord_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// TestQueueConditionStart: consumers gated by a barrier that
// ReleaseWhenQueued releases start only once n messages are ready (a due
// delayed message counts), then drain them; a late consumer passes at
// once.
func TestQueueConditionStart(t *testing.T) {
	n := openOne(t)
	const need = 5
	q := concord.NewQueue[string](newSession(t, n), "cq")
	gate := concord.NewBarrier(n, "cq/gate")
	if err := gate.Hold(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	released := make(chan error, 1)
	go func() { released <- concord.ReleaseWhenQueued(testCtx(t), gate, q, need) }()
	var started atomic.Int32
	var got sync.Map
	var wg sync.WaitGroup
	for range 3 {
		c := concord.NewQueue[string](newSession(t, n), "cq")
		wg.Go(func() {
			if err := gate.Wait(testCtx(t)); err != nil {
				t.Error(err)
				return
			}
			started.Add(1)
			for {
				ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
				m, err := c.Dequeue(ctx)
				cancel()
				if err != nil {
					return // drained
				}
				got.Store(m.ID, true)
				if err := m.Ack(testCtx(t)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for i := range need - 1 {
		queueEnqueue(t, q, string(rune('a'+i)))
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	wantErr(t, gate.Wait(ctx), context.DeadlineExceeded)
	cancel()
	if s := started.Load(); s != 0 {
		t.Fatalf("%d consumers started with %d of %d messages queued", s, need-1, need)
	}
	start := time.Now()
	queueEnqueue(t, q, "late", concord.WithDelay(200*time.Millisecond))
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("released %v after the delayed 5th message, before it was due", el)
	}
	wg.Wait()
	k := 0
	got.Range(func(any, any) bool { k++; return true })
	if s := started.Load(); s != 3 || k != need {
		t.Fatalf("%d consumers started, %d messages consumed; want 3, %d", s, k, need)
	}
	if err := gate.Wait(testCtx(t)); err != nil {
		t.Fatalf("late consumer: %v", err)
	}
}

// TestQueueConditionKey: the condition-key form of the recipe: the
// barrier is released in the Txn that makes the condition hold.
func TestQueueConditionKey(t *testing.T) {
	n := openOne(t)
	gate := concord.NewBarrier(n, "ck/gate")
	if err := gate.Hold(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	passed := make(chan error, 1)
	go func() { passed <- gate.Wait(testCtx(t)) }()
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	wantErr(t, gate.Wait(ctx), context.DeadlineExceeded)
	cancel()
	_, err := n.Txn(testCtx(t)).Then(concord.OpPut("ck/config", "ready"), concord.OpDelete("ck/gate/hold")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-passed; err != nil {
		t.Fatal(err)
	}
}
