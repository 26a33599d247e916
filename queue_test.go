package concord_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

func queueEnqueue(t *testing.T, q *concord.Queue[string], v string, opts ...concord.EnqueueOption) string {
	t.Helper()
	id, err := q.Enqueue(testCtx(t), v, opts...)
	if err != nil {
		t.Fatalf("Enqueue(%q): %v", v, err)
	}
	return id
}

func queueDequeue(t *testing.T, q *concord.Queue[string]) *concord.Message[string] {
	t.Helper()
	m, err := q.Dequeue(testCtx(t))
	if err != nil {
		t.Fatalf("Dequeue: %v", err)
	}
	return m
}

func queueLen(t *testing.T, q *concord.Queue[string]) int {
	t.Helper()
	l, err := q.Len(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// queueNothingWithin checks that Dequeue finds nothing within d.
func queueNothingWithin(t *testing.T, q *concord.Queue[string], d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), d)
	defer cancel()
	m, err := q.Dequeue(ctx)
	if err == nil {
		t.Fatalf("Dequeue got %q (deliveries %d), want nothing", m.Value, m.Deliveries)
	}
	wantErr(t, err, context.DeadlineExceeded)
}

// queueMarkers returns the number of claim markers of queue name.
func queueMarkers(t *testing.T, n *concord.Node, name string) int64 {
	t.Helper()
	return get(t, n, name+"/c/", concord.WithPrefix(), concord.WithCountOnly()).Count
}

// TestQueuePriorityOrder: higher priorities are delivered first, and
// within a priority the older message first.
func TestQueuePriorityOrder(t *testing.T) {
	n := openOne(t)
	q := concord.NewQueue[string](newSession(t, n), "jobs")
	for _, e := range []struct {
		v string
		p int
	}{{"p0-a", 0}, {"p5-a", 5}, {"neg", -1}, {"p5-b", 5}, {"p10", 10}, {"p0-b", 0}, {"min", -1 << 62}} {
		queueEnqueue(t, q, e.v, concord.WithPriority(e.p))
	}
	var got []string
	for range 7 {
		m := queueDequeue(t, q)
		got = append(got, m.Value)
		if err := m.Ack(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	want := "[p10 p5-a p5-b p0-a p0-b neg min]"
	if fmt.Sprint(got) != want {
		t.Fatalf("order %v, want %v", got, want)
	}
}

// TestQueueFIFOPerProducer: producers on the three nodes of a cluster
// enqueue at once; each producer's messages come out in its order.
func TestQueueFIFOPerProducer(t *testing.T) {
	c := concordtest.NewCluster(t, 3)
	const perProducer = 40
	var wg sync.WaitGroup
	for p := range 3 {
		q := concord.NewQueue[string](newSession(t, c.Node(p)), "fifo")
		wg.Go(func() {
			for i := range perProducer {
				if _, err := q.Enqueue(testCtx(t), fmt.Sprintf("%d/%03d", p, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	q := concord.NewQueue[string](newSession(t, c.Node(1)), "fifo")
	last := map[string]string{}
	for range 3 * perProducer {
		m := queueDequeue(t, q)
		p := m.Value[:1]
		if m.Value <= last[p] {
			t.Fatalf("producer %s: %q delivered after %q", p, m.Value, last[p])
		}
		last[p] = m.Value
		if err := m.Ack(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestQueueDelay: a delayed message is not delivered before its delay,
// is not counted by Len meanwhile, and a waiting Dequeue gets it once
// due.
func TestQueueDelay(t *testing.T) {
	n := openOne(t)
	q := concord.NewQueue[string](newSession(t, n), "delay")
	const delay = 400 * time.Millisecond
	start := time.Now()
	queueEnqueue(t, q, "later", concord.WithDelay(delay), concord.WithPriority(9))
	queueEnqueue(t, q, "now")
	if l := queueLen(t, q); l != 1 {
		t.Fatalf("Len = %d with one ready and one delayed message, want 1", l)
	}
	if m := queueDequeue(t, q); m.Value != "now" {
		t.Fatalf("first delivery %q, want the undelayed message", m.Value)
	}
	m := queueDequeue(t, q)
	if el := time.Since(start); m.Value != "later" || el < delay {
		t.Fatalf("got %q after %v, want \"later\" no sooner than %v", m.Value, el, delay)
	}
	if m.Deliveries != 1 {
		t.Fatalf("Deliveries = %d, want 1", m.Deliveries)
	}
}

// TestQueueLenCountsDueMessages: a delayed message counts in Len once it
// is due, before any Dequeue has moved it to the ready ones.
func TestQueueLenCountsDueMessages(t *testing.T) {
	n := openOne(t)
	q := concord.NewQueue[string](newSession(t, n), "due")
	queueEnqueue(t, q, "soon", concord.WithDelay(100*time.Millisecond))
	queueEnqueue(t, q, "later", concord.WithDelay(time.Hour))
	if l := queueLen(t, q); l != 0 {
		t.Fatalf("Len = %d before any message is due, want 0", l)
	}
	eventually(t, 5*time.Second, "Len to count the due message", func() bool { return queueLen(t, q) == 1 })
	if m := queueDequeue(t, q); m.Value != "soon" {
		t.Fatalf("got %q, want the due message", m.Value)
	}
	if l := queueLen(t, q); l != 0 {
		t.Fatalf("Len = %d with only a message due in an hour left, want 0", l)
	}
}

// TestQueueNack: after Nack the message is delivered again at once (to a
// consumer already waiting, too) with Deliveries one higher, and the old
// delivery can no longer be acked.
func TestQueueNack(t *testing.T) {
	n := openOne(t)
	a := concord.NewQueue[string](newSession(t, n), "nack")
	b := concord.NewQueue[string](newSession(t, n), "nack")
	queueEnqueue(t, a, "x")
	m1 := queueDequeue(t, a)
	if m1.Deliveries != 1 {
		t.Fatalf("first Deliveries = %d, want 1", m1.Deliveries)
	}
	got := make(chan *concord.Message[string])
	go func() {
		m, err := b.Dequeue(testCtx(t))
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	if err := m1.Nack(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	m2 := <-got
	if m2 == nil {
		t.FailNow()
	}
	if m2.ID != m1.ID || m2.Deliveries != 2 {
		t.Fatalf("redelivered %s with Deliveries %d, want %s with 2", m2.ID, m2.Deliveries, m1.ID)
	}
	wantErr(t, m1.Ack(testCtx(t)), concord.ErrNotClaimed)
	if err := m2.Nack(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if m3 := queueDequeue(t, a); m3.Deliveries != 3 {
		t.Fatalf("third Deliveries = %d, want 3", m3.Deliveries)
	}
}

// TestQueueDeadLetter: a message nacked max times goes to the dead
// letters instead of a further delivery; so does one that does not
// decode.
func TestQueueDeadLetter(t *testing.T) {
	n := openOne(t)
	q := concord.NewQueue[string](newSession(t, n), "dl", concord.WithMaxDeliveries(2))
	id := queueEnqueue(t, q, "poison")
	for i := 1; i <= 2; i++ {
		m := queueDequeue(t, q)
		if m.Deliveries != i {
			t.Fatalf("delivery %d has Deliveries %d", i, m.Deliveries)
		}
		if err := m.Nack(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	// Not JSON: it cannot decode as a string.
	put(t, n, "dl/m/00000000000000000000/bad", "{")
	queueNothingWithin(t, q, 300*time.Millisecond)
	dead, err := q.DeadLetters(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 || dead[0].ID != "00000000000000000000/bad" || !errors.Is(dead[0].Err, concord.ErrDecode) ||
		dead[1].ID != id || dead[1].Value != "poison" || dead[1].Err != nil {
		t.Fatalf("dead letters %+v, want the bad one and %s", dead, id)
	}
	if l, mk := queueLen(t, q), queueMarkers(t, n, "dl"); l != 0 || mk != 0 {
		t.Fatalf("Len %d, markers %d after dead-lettering, want 0, 0", l, mk)
	}
}

// TestQueueSessionDeath: the claims of a consumer whose session ends go
// back to the queue; its deliveries can no longer be acked; its waiting
// Dequeue returns ErrSessionExpired.
func TestQueueSessionDeath(t *testing.T) {
	c := concordtest.NewCluster(t, 3)
	s1 := newSession(t, c.Node(0))
	q1 := concord.NewQueue[string](s1, "sd")
	q2 := concord.NewQueue[string](newSession(t, c.Node(2)), "sd")
	queueEnqueue(t, q2, "a")
	queueEnqueue(t, q2, "b")
	m1, m2 := queueDequeue(t, q1), queueDequeue(t, q1)
	if l := queueLen(t, q2); l != 0 {
		t.Fatalf("Len = %d with both claimed, want 0", l)
	}
	errc := make(chan error)
	go func() {
		_, err := q1.Dequeue(testCtx(t))
		errc <- err
	}()
	if err := c.Node(1).Revoke(testCtx(t), s1.Lease()); err != nil {
		t.Fatal(err)
	}
	wantErr(t, <-errc, concord.ErrSessionExpired)
	for _, old := range []*concord.Message[string]{m1, m2} {
		m := queueDequeue(t, q2)
		if m.ID != old.ID || m.Deliveries != 2 {
			t.Fatalf("got %s (deliveries %d), want %s again", m.ID, m.Deliveries, old.ID)
		}
		wantErr(t, old.Ack(testCtx(t)), concord.ErrNotClaimed)
	}
	_, err := q1.Dequeue(testCtx(t))
	wantErr(t, err, concord.ErrSessionExpired)
}

// TestQueueNoDoubleClaim: consumers racing on several nodes each keep
// what they claim; no message is delivered twice.
func TestQueueNoDoubleClaim(t *testing.T) {
	c := concordtest.NewCluster(t, 3)
	const msgs, consumers = 120, 6
	p := concord.NewQueue[string](newSession(t, c.Node(0)), "race")
	for i := range msgs {
		queueEnqueue(t, p, fmt.Sprint(i))
	}
	var mu sync.Mutex
	held := map[string]int{}
	var wg sync.WaitGroup
	for i := range consumers {
		q := concord.NewQueue[string](newSession(t, c.Node(i%3)), "race")
		wg.Go(func() {
			for {
				mu.Lock()
				done := len(held) >= msgs
				mu.Unlock()
				if done {
					return
				}
				ctx, cancel := context.WithTimeout(testCtx(t), 500*time.Millisecond)
				m, err := q.Dequeue(ctx)
				cancel()
				if errors.Is(err, context.DeadlineExceeded) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				held[m.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for id, k := range held {
		if k != 1 {
			t.Errorf("message %s claimed %d times by live consumers", id, k)
		}
	}
	if len(held) != msgs {
		t.Fatalf("%d messages delivered, want %d", len(held), msgs)
	}
}

// TestQueueLen: Len counts the ready messages only.
func TestQueueLen(t *testing.T) {
	n := openOne(t)
	q := concord.NewQueue[string](newSession(t, n), "len")
	for _, v := range []string{"a", "b", "c"} {
		queueEnqueue(t, q, v)
	}
	queueEnqueue(t, q, "d", concord.WithDelay(time.Hour))
	want := func(what string, l int) {
		t.Helper()
		if got := queueLen(t, q); got != l {
			t.Fatalf("%s: Len = %d, want %d", what, got, l)
		}
	}
	want("3 ready, 1 delayed", 3)
	m := queueDequeue(t, q)
	want("one claimed", 2)
	if err := m.Nack(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	want("nacked", 3)
	if err := queueDequeue(t, q).Ack(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	want("one acked", 2)
}

// TestQueueCancelLeavesNothing: Dequeues canceled at random moments,
// waiting or claiming, leave no claim behind.
func TestQueueCancelLeavesNothing(t *testing.T) {
	n := openOne(t)
	q := concord.NewQueue[string](newSession(t, n), "cancel")
	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	_, err := q.Dequeue(ctx) // waiting on an empty queue
	cancel()
	wantErr(t, err, context.DeadlineExceeded)
	for i := range 20 {
		queueEnqueue(t, q, fmt.Sprint(i))
	}
	got := 0
	for i := range 200 {
		ctx, cancel := context.WithTimeout(testCtx(t), time.Duration(i%7)*100*time.Microsecond)
		m, err := q.Dequeue(ctx)
		cancel()
		if err == nil {
			got++
			if err := m.Ack(testCtx(t)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if mk := queueMarkers(t, n, "cancel"); mk != 0 {
		t.Fatalf("%d claim markers left by canceled Dequeues", mk)
	}
	if l := queueLen(t, q); l != 20-got {
		t.Fatalf("Len = %d after %d acks, want %d", l, got, 20-got)
	}
}

// TestQueueVisibilityTimeout: with a visibility timeout, a claim not
// acked in time is released though its session lives.
func TestQueueVisibilityTimeout(t *testing.T) {
	n := openOne(t)
	const vis = 300 * time.Millisecond
	q := concord.NewQueue[string](newSession(t, n), "vis", concord.WithVisibilityTimeout(vis))
	queueEnqueue(t, q, "slow")
	m1 := queueDequeue(t, q)
	claimed := time.Now()
	m2 := queueDequeue(t, q)
	if el := time.Since(claimed); m2.ID != m1.ID || m2.Deliveries != 2 || el < vis {
		t.Fatalf("got %s (deliveries %d) after %v, want %s again no sooner than %v", m2.ID, m2.Deliveries, el, m1.ID, vis)
	}
	wantErr(t, m1.Ack(testCtx(t)), concord.ErrNotClaimed)
	if err := m2.Ack(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestQueueBadInput: bad options and values get ErrInvalidRequest and
// change nothing.
func TestQueueBadInput(t *testing.T) {
	n := openOne(t)
	s := newSession(t, n)
	for name, q := range map[string]*concord.Queue[string]{
		"negative visibility": concord.NewQueue[string](s, "bad", concord.WithVisibilityTimeout(-time.Second)),
		"visibility < ttl":    concord.NewQueue[string](s, "bad", concord.WithVisibilityTimeout(time.Millisecond)),
		"negative max":        concord.NewQueue[string](s, "bad", concord.WithMaxDeliveries(-1)),
		"dead prefix inside":  concord.NewQueue[string](s, "bad", concord.WithDeadLetterPrefix("bad/m/")),
		"dead prefix is name": concord.NewQueue[string](s, "bad", concord.WithDeadLetterPrefix("bad")),
		"dead prefix name/":   concord.NewQueue[string](s, "bad", concord.WithDeadLetterPrefix("bad/")),
		"dead prefix covers":  concord.NewQueue[string](s, "bad2", concord.WithDeadLetterPrefix("bad")),
		"dead prefix empty":   concord.NewQueue[string](s, "bad", concord.WithDeadLetterPrefix("")),
		"codec type":          concord.NewQueue[string](s, "bad", concord.WithQueueCodec(concord.JSON[int]())),
	} {
		unchanged(t, n, concord.ErrInvalidRequest, func() error {
			_, err := q.Enqueue(testCtx(t), "v")
			return err
		})
		_, err := q.Dequeue(testCtx(t))
		if !errors.Is(err, concord.ErrInvalidRequest) {
			t.Fatalf("%s: Dequeue: %v", name, err)
		}
		if _, err := q.DeadLetters(testCtx(t)); !errors.Is(err, concord.ErrInvalidRequest) {
			t.Fatalf("%s: DeadLetters: %v", name, err)
		}
	}
	q := concord.NewQueue[string](s, "bad")
	unchanged(t, n, concord.ErrInvalidRequest, func() error {
		_, err := q.Enqueue(testCtx(t), "v", concord.WithDelay(-time.Second))
		return err
	})
	qf := concord.NewQueue[func()](s, "bad")
	unchanged(t, n, concord.ErrInvalidRequest, func() error {
		_, err := qf.Enqueue(testCtx(t), func() {})
		return err
	})
}

// TestQueueDeadPrefixTooLong: a dead-letter prefix, or a queue name under
// the default one, so long that dead-letter keys exceed Config.MaxKeySize
// is refused by every call with ErrKeyTooLarge, before anything is
// written: not by the Dequeue that moves a message to the dead letters,
// after its claim.
func TestQueueDeadPrefixTooLong(t *testing.T) {
	n := openOne(t)
	s := newSession(t, n)
	const maxKey = 1536
	long := strings.Repeat("q", maxKey-64+1) // name/dead/<id> is one byte over
	for name, q := range map[string]*concord.Queue[string]{
		"prefix": concord.NewQueue[string](s, "long", concord.WithMaxDeliveries(1),
			concord.WithDeadLetterPrefix(strings.Repeat("d", maxKey-58+1))),
		"name": concord.NewQueue[string](s, long, concord.WithMaxDeliveries(1)),
	} {
		unchanged(t, n, concord.ErrKeyTooLarge, func() error {
			_, err := q.Enqueue(testCtx(t), "v")
			return err
		})
		unchanged(t, n, concord.ErrKeyTooLarge, func() error {
			_, err := q.Dequeue(testCtx(t))
			return err
		})
		if _, err := q.DeadLetters(testCtx(t)); !errors.Is(err, concord.ErrKeyTooLarge) {
			t.Fatalf("%s: DeadLetters: %v", name, err)
		}
	}
	// The longest allowed prefix works, dead-lettering included.
	q := concord.NewQueue[string](s, "long", concord.WithMaxDeliveries(1),
		concord.WithDeadLetterPrefix(strings.Repeat("d", maxKey-58)))
	id := queueEnqueue(t, q, "poison")
	if err := queueDequeue(t, q).Nack(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	queueNothingWithin(t, q, 300*time.Millisecond)
	dead, err := q.DeadLetters(testCtx(t))
	if err != nil || len(dead) != 1 || dead[0].ID != id {
		t.Fatalf("dead letters %+v (%v), want %s", dead, err, id)
	}
	if l, mk := queueLen(t, q), queueMarkers(t, n, "long"); l != 0 || mk != 0 {
		t.Fatalf("Len %d, markers %d after dead-lettering, want 0, 0", l, mk)
	}
}

// TestQueueDelayOverflow: a delay past what Unix nanoseconds hold keeps
// the message delayed (until the year 2262), not due at once.
func TestQueueDelayOverflow(t *testing.T) {
	n := openOne(t)
	q := concord.NewQueue[string](newSession(t, n), "far")
	queueEnqueue(t, q, "in 250 years", concord.WithDelay(250*365*24*time.Hour))
	queueEnqueue(t, q, "in 292 years", concord.WithDelay(math.MaxInt64))
	queueNothingWithin(t, q, 300*time.Millisecond)
	if l := queueLen(t, q); l != 0 {
		t.Fatalf("Len = %d with two messages delayed for centuries, want 0", l)
	}
	if c := get(t, n, "far/w/", concord.WithPrefix(), concord.WithCountOnly()).Count; c != 2 {
		t.Fatalf("%d delayed messages, want 2", c)
	}
}

// TestQueueAckAndDequeue: AckAndDequeue acks and claims the next message
// in one write, waits like Dequeue when nothing is free, and with a stale
// claim acks and claims nothing.
func TestQueueAckAndDequeue(t *testing.T) {
	n := openOne(t)
	q := concord.NewQueue[string](newSession(t, n), "ackdeq")
	for _, v := range []string{"a", "b"} {
		queueEnqueue(t, q, v)
	}
	m := queueDequeue(t, q)
	before := get(t, n, "ackdeq/").Header.Revision
	next, err := m.AckAndDequeue(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if m.Value != "a" || next.Value != "b" {
		t.Fatalf("got %q then %q, want a then b", m.Value, next.Value)
	}
	if !m.Acked() || next.Acked() {
		t.Fatalf("Acked: %v for a, %v for b; want true, false", m.Acked(), next.Acked())
	}
	if after := get(t, n, "ackdeq/").Header.Revision; after != before+1 || next.Revision != after {
		t.Fatalf("revision %d -> %d, claim at %d: want the ack and the claim in one revision", before, after, next.Revision)
	}
	if got := get(t, n, "ackdeq/m/", concord.WithPrefix(), concord.WithCountOnly()).Count; got != 1 {
		t.Fatalf("%d messages left, want 1 (b, claimed)", got)
	}
	if got := queueMarkers(t, n, "ackdeq"); got != 1 {
		t.Fatalf("%d claims, want 1", got)
	}

	// Nothing free: it acks, then waits for the next message.
	got := make(chan *concord.Message[string], 1)
	go func() {
		m, err := next.AckAndDequeue(testCtx(t))
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	eventually(t, 10*time.Second, "b acked", func() bool {
		return get(t, n, "ackdeq/m/", concord.WithPrefix(), concord.WithCountOnly()).Count == 0
	})
	queueEnqueue(t, q, "c")
	c := <-got
	if c == nil || c.Value != "c" {
		t.Fatalf("got %v, want c", c)
	}

	// A stale claim: nothing is acked or claimed.
	if err := c.Nack(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	before = get(t, n, "ackdeq/").Header.Revision
	_, err = c.AckAndDequeue(testCtx(t))
	wantErr(t, err, concord.ErrNotClaimed)
	if c.Acked() {
		t.Fatal("Acked after a refused AckAndDequeue")
	}
	if after := get(t, n, "ackdeq/").Header.Revision; after != before {
		t.Fatalf("revision %d -> %d after a refused AckAndDequeue", before, after)
	}
	if got := queueMarkers(t, n, "ackdeq"); got != 0 {
		t.Fatalf("%d claims after a refused AckAndDequeue, want 0", got)
	}
}
