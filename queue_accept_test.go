package concord_test

import (
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

var (
	queueAcceptMessages = flag.Int("concord.queue.messages", 2000, "TestQueueAcceptance: messages (the issue's acceptance run is 100000)")
	queueAcceptSeed     = flag.Uint64("concord.queue.seed", 0, "TestQueueAcceptance: seed (0: random)")
)

// queueItem is what the acceptance test's producers enqueue.
type queueItem struct {
	P, I, Prio int
	Poison     bool // always nacked: must end in the dead letters
}

// queueDelivery is one delivery the acceptance test saw.
type queueDelivery struct {
	deliveries int
	rev        int64
	end        string // how it ended: acked, nacked, crashed, expired
}

// queueBook is the acceptance test's record of what happened.
type queueBook struct {
	mu         sync.Mutex
	items      map[string]queueItem       // guarded by mu: enqueued, by id
	deliveries map[string][]queueDelivery // guarded by mu
	acks       map[string]int             // guarded by mu
	crashes    int                        // guarded by mu
	expired    int                        // guarded by mu: sessions that expired on their own
	// waiting holds the messages whose AckAndDequeue runs (guarded by
	// mu): one that acked waits for the next message, maybe until the end.
	waiting map[*concord.Message[queueItem]]bool
}

// TestQueueAcceptance is issue 5's queue acceptance on a 3-node cluster:
// 8 producers, 8 consumers that crash at random (session orphaned or
// revoked, claims in hand). Every message is acked exactly once or
// dead-lettered, none lost; a message is delivered again only after its
// holder crashed or nacked it (duplicates counted); Deliveries counts
// every delivery; within a priority, each producer's messages are first
// claimed in the order it enqueued them.
func TestQueueAcceptance(t *testing.T) {
	const producers, consumers, maxDeliveries = 8, 8, 3
	total := *queueAcceptMessages
	seed := *queueAcceptSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (-concord.queue.seed), %d messages", seed, total)
	c := concordtest.NewCluster(t, 3)
	b := &queueBook{items: map[string]queueItem{}, deliveries: map[string][]queueDelivery{},
		acks: map[string]int{}, waiting: map[*concord.Message[queueItem]]bool{}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cctx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	start := time.Now()

	var wg sync.WaitGroup
	for p := range producers {
		s := newSession(t, c.Node(p%3))
		q := concord.NewQueue[queueItem](s, "accept", concord.WithMaxDeliveries(maxDeliveries))
		rng := rand.New(rand.NewPCG(seed, uint64(p)))
		n := total/producers + min(1, max(0, total%producers-p))
		wg.Go(func() {
			for i := range n {
				it := queueItem{P: p, I: i, Prio: rng.IntN(3), Poison: rng.IntN(400) == 0}
				id, err := q.Enqueue(ctx, it, concord.WithPriority(it.Prio))
				if err != nil {
					t.Errorf("producer %d: %v", p, err)
					return
				}
				b.mu.Lock()
				b.items[id] = it
				b.mu.Unlock()
			}
		})
	}
	for i := range consumers {
		rng := rand.New(rand.NewPCG(seed, uint64(100+i)))
		wg.Go(func() { queueConsume(t, cctx, c.Node(i%3), b, rng, maxDeliveries) })
	}

	// Done when every message is acked or dead.
	probe := concord.NewQueue[queueItem](newSession(t, c.Node(0)), "accept")
	var dead []concord.DeadLetter[queueItem]
	lastTenth := 0
	for {
		b.mu.Lock()
		acked := len(b.acks)
		for m := range b.waiting {
			if m.Acked() && b.acks[m.ID] == 0 {
				acked++ // acked, its AckAndDequeue waits for the next message
			}
		}
		b.mu.Unlock()
		var err error
		if dead, err = probe.DeadLetters(ctx); err != nil {
			t.Fatal(err)
		}
		if acked+len(dead) >= total || t.Failed() {
			break
		}
		if tenth := (acked + len(dead)) * 10 / total; tenth > lastTenth {
			lastTenth = tenth
			t.Logf("%v: %d acked, %d dead", time.Since(start).Round(time.Second), acked, len(dead))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out: %d acked, %d dead of %d", acked, len(dead), total)
		case <-time.After(50 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	stopConsumers()
	wg.Wait()
	queueCheckBook(t, b, dead, total, maxDeliveries)
	if l, err := probe.Len(ctx); err != nil || l != 0 {
		t.Fatalf("Len = %d, %v at the end, want 0", l, err)
	}
	t.Logf("%d messages in %v (%.0f/s end to end)", total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())
}

// queueConsume is one consumer slot: it dequeues and acks (nacks poison)
// until ctx ends, and now and then crashes with a message in hand, its
// session orphaned or revoked, and starts again with a new session. Half
// of its acks are AckAndDequeue, which hands it the next message.
func queueConsume(t *testing.T, ctx context.Context, n *concord.Node, b *queueBook, rng *rand.Rand, maxDeliveries int) {
	for ctx.Err() == nil {
		s, err := concord.NewSession(n, concord.WithSessionTTL(3*time.Second))
		if errors.Is(err, concord.ErrTimeout) && ctx.Err() == nil {
			continue // a loaded machine: a real consumer tries again
		}
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("NewSession: %v", err)
			}
			return
		}
		q := concord.NewQueue[queueItem](s, "accept", concord.WithMaxDeliveries(maxDeliveries))
		var next *concord.Message[queueItem]
	deliveries:
		for {
			m, err := next, error(nil)
			if m == nil {
				m, err = q.Dequeue(ctx)
			}
			next = nil
			if ctx.Err() != nil {
				s.Close()
				return
			}
			if errors.Is(err, concord.ErrSessionExpired) {
				b.mu.Lock()
				b.expired++
				b.mu.Unlock()
				break
			}
			if err != nil {
				t.Errorf("Dequeue: %v", err)
				s.Close()
				return
			}
			if rng.IntN(100) == 0 {
				b.record(m, "crashed")
				b.mu.Lock()
				b.crashes++
				b.mu.Unlock()
				if rng.IntN(2) == 0 {
					s.Orphan()
				} else {
					s.Close()
				}
				break
			}
			switch {
			case m.Value.Poison:
				err = m.Nack(ctx)
			case rng.IntN(2) == 0:
				err = m.Ack(ctx)
			default:
				b.mu.Lock()
				b.waiting[m] = true
				b.mu.Unlock()
				next, err = m.AckAndDequeue(ctx)
				b.mu.Lock()
				delete(b.waiting, m)
				b.mu.Unlock()
				if err == nil || errors.Is(err, concord.ErrNotClaimed) {
					break // as for Ack
				}
				// The Dequeue part failed, after the ack or before it.
				switch {
				case m.Acked():
					b.record(m, "acked")
				case ctx.Err() != nil:
					b.record(m, "stopped")
				default:
					b.record(m, "expired") // the session ended before the ack: m's claim with it
				}
				if errors.Is(err, concord.ErrSessionExpired) {
					b.mu.Lock()
					b.expired++
					b.mu.Unlock()
					break deliveries
				}
				if ctx.Err() == nil {
					t.Errorf("AckAndDequeue after %s: %v", m.ID, err)
				}
				s.Close()
				return
			}
			switch {
			case err == nil && m.Value.Poison:
				b.record(m, "nacked")
			case err == nil:
				b.record(m, "acked")
			case errors.Is(err, concord.ErrNotClaimed) && queueEnded(s):
				b.record(m, "expired")
			case ctx.Err() == nil:
				t.Errorf("settle %s: %v", m.ID, err)
			default:
				b.record(m, "stopped")
			}
		}
	}
}

func queueEnded(s *concord.Session) bool {
	select {
	case <-s.Done():
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// record records a delivery of m and how it ended.
func (b *queueBook) record(m *concord.Message[queueItem], end string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deliveries[m.ID] = append(b.deliveries[m.ID], queueDelivery{m.Deliveries, m.Revision, end})
	if end == "acked" {
		b.acks[m.ID]++
	}
}

func queueCheckBook(t *testing.T, b *queueBook, dead []concord.DeadLetter[queueItem], total, maxDeliveries int) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.items) != total {
		t.Fatalf("%d messages enqueued, want %d", len(b.items), total)
	}
	isDead := map[string]bool{}
	for _, d := range dead {
		if d.Err != nil || isDead[d.ID] {
			t.Fatalf("dead letter %s: err %v, twice %v", d.ID, d.Err, isDead[d.ID])
		}
		isDead[d.ID] = true
	}
	dups := 0
	type pp struct{ p, prio int }
	firsts := map[pp][]queueItem{}
	firstRev := map[pp]int64{} // by producer and index
	for id, it := range b.items {
		ds := b.deliveries[id]
		sort.Slice(ds, func(i, j int) bool { return ds[i].rev < ds[j].rev })
		switch {
		case b.acks[id] == 1 && !isDead[id] && !it.Poison:
		case b.acks[id] == 0 && isDead[id] && len(ds) == maxDeliveries:
		default:
			t.Fatalf("message %s %+v: acked %d times, dead %v, %d deliveries", id, it, b.acks[id], isDead[id], len(ds))
		}
		if len(ds) == 0 {
			t.Fatalf("message %s was never delivered", id)
		}
		for k, d := range ds {
			if d.deliveries != k+1 {
				t.Fatalf("message %s: delivery %d reported Deliveries %d", id, k+1, d.deliveries)
			}
			if k == len(ds)-1 {
				break
			}
			// Delivered again: its holder must have crashed, or nacked
			// a poison message.
			switch {
			case d.end == "crashed" || d.end == "expired":
				dups++
			case d.end == "nacked" && it.Poison:
			default:
				t.Fatalf("message %s delivered again (delivery %d) after its holder %s it", id, k+2, d.end)
			}
		}
		firsts[pp{it.P, it.Prio}] = append(firsts[pp{it.P, it.Prio}], it)
		firstRev[pp{it.P, it.I}] = ds[0].rev
	}
	for k, its := range firsts {
		sort.Slice(its, func(i, j int) bool { return its[i].I < its[j].I })
		for i := 1; i < len(its); i++ {
			a, z := firstRev[pp{k.p, its[i-1].I}], firstRev[pp{k.p, its[i].I}]
			if a >= z {
				t.Fatalf("producer %d priority %d: message %d first claimed at %d, after message %d at %d", k.p, k.prio, its[i-1].I, a, its[i].I, z)
			}
		}
	}
	t.Logf("acked %d, dead-lettered %d, consumer crashes %d (+%d sessions expired on their own), duplicate deliveries from crashed consumers %d",
		len(b.acks), len(dead), b.crashes, b.expired, dups)
}
