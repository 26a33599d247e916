package concord

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Message is one delivery of a queued value, claimed by the session of
// the Dequeue that returned it until Ack, Nack or the claim's end.
type Message[T any] struct {
	ID    string
	Value T
	// Deliveries counts the deliveries of the message, this one
	// included: 1 on the first.
	Deliveries int
	// Revision is the revision of this delivery's claim: it increases
	// from one delivery to the next, across the queue.
	Revision int64

	q      *Queue[T]
	key    string // name/m/<id>
	marker string // name/c/<id>
	acked  atomic.Bool
}

// Acked reports whether Ack or AckAndDequeue on m acked this delivery
// (an AckAndDequeue that failed after its ack returns an error with m
// acked).
func (m *Message[T]) Acked() bool { return m.acked.Load() }

const (
	// queueClaimGrace is how long a claim in flight when Dequeue's ctx
	// ends may still take, so that what it claimed can be released.
	queueClaimGrace = 5 * time.Second
	// queuePromoteBatch caps the delayed messages one Txn promotes.
	queuePromoteBatch = 64
)

// Dequeue claims the first ready message (highest priority, then oldest)
// for the queue's session and returns it; with none ready it waits, on a
// watch, until one is enqueued, released or due. The claim is one
// Node.Claim command, however many consumers compete. The Dequeues of a
// queue on one node that find nothing free take turns to wait, whatever
// their Queue values and sessions, so a message wakes one of them per
// node; the waiters of different nodes all wake, and those that lose the
// race wait again (a claim that finds nothing free writes nothing).
//
// Before claiming, it moves the delayed messages now due to the ready
// ones. A message claimed more than WithMaxDeliveries times, or whose
// value does not decode, is moved to the dead letters and Dequeue goes
// on.
//
// Dequeue returns an error wrapping ErrSessionExpired when the session
// ends. If ctx ends, it returns ctx's error, and a message it had claimed
// by then is released (the claim in flight gets up to 5 s more to
// finish), so a canceled Dequeue leaves no claim behind.
func (q *Queue[T]) Dequeue(ctx context.Context) (*Message[T], error) {
	m, err := q.dequeue(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("concord.Queue.Dequeue: %w", err)
	}
	return m, nil
}

// dequeue is Dequeue; if ack is not nil, its first claim also acks ack,
// in one Txn.
func (q *Queue[T]) dequeue(ctx context.Context, ack *Message[T]) (*Message[T], error) {
	if q.err != nil {
		return nil, q.err
	}
	// Of the Dequeues of this queue on this node that find nothing free,
	// one at a time (the one holding q.turn) waits on the watch; the
	// others queue for the turn and claim once they get it. So a message
	// wakes one goroutine per node, not all.
	turn := false
	defer func() {
		if turn {
			<-q.turn
		}
	}()
	for {
		if err := q.live(ctx); err != nil {
			return nil, err
		}
		if _, _, err := q.promote(ctx); err != nil {
			return nil, err
		}
		m, rev, acked, err := q.claim(ctx, ack)
		if acked {
			ack = nil
		}
		if err != nil || m != nil {
			return m, err
		}
		if rev == 0 {
			continue // a message went to the dead letters
		}
		// Nothing free at rev. The local state holds rev now, so this
		// read sees every delayed message put up to it.
		promoted, next, err := q.promote(ctx)
		if err != nil {
			return nil, err
		}
		if promoted > 0 {
			continue
		}
		if !turn {
			// Claim again once the turn is ours: a message may have come
			// while others of this handle held it.
			select {
			case q.turn <- struct{}{}:
				turn = true
				continue
			case <-ctx.Done():
				return nil, ctxErr(ctx.Err())
			case <-q.s.Done():
				return nil, q.s.expired()
			}
		}
		if err := q.wait(ctx, rev, next); err != nil {
			return nil, err
		}
	}
}

// live returns why Dequeue must stop, if it must.
func (q *Queue[T]) live(ctx context.Context) error {
	select {
	case <-q.s.Done():
		return q.s.expired()
	default:
	}
	if err := ctx.Err(); err != nil {
		return ctxErr(err)
	}
	return nil
}

// claim claims the first free message. It returns the message, or nil
// and the revision at which nothing was free, or nil and 0 when it moved
// the message it claimed to the dead letters. If ack is not nil, the
// claim runs in one Txn with ack's Ack, and only if that holds (else the
// error wraps ErrNotClaimed and nothing is claimed); acked tells whether
// the Ack happened.
func (q *Queue[T]) claim(ctx context.Context, ack *Message[T]) (m *Message[T], rev int64, acked bool, err error) {
	lease, err := q.claimLease(ctx)
	if err != nil {
		return nil, 0, false, err
	}
	// The claim runs to its outcome even if ctx ends meanwhile (up to
	// queueClaimGrace more), so that what it claimed can be released.
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(queueClaimGrace, cancel) })
	defer stop()
	resp, acked, err := q.claimOp(cctx, ack, OpClaim(q.key("m", ""), q.key("c", ""), strconv.FormatInt(int64(q.s.Lease()), 16),
		WithPrefix(), WithLease(lease)))
	switch {
	case errors.Is(err, ErrLeaseNotFound) && q.vis > 0:
		q.dropLease(lease)
		return nil, 0, acked, q.live(ctx) // draw a new claim lease next time
	case errors.Is(err, ErrLeaseNotFound):
		return nil, 0, acked, fmt.Errorf("%w: %w", ErrSessionExpired, err)
	case err != nil:
		if ctx.Err() != nil {
			return nil, 0, acked, ctxErr(ctx.Err())
		}
		return nil, 0, acked, err
	case resp.Kv == nil:
		return nil, resp.Revision, acked, nil
	}
	id := string(resp.Kv.Key[len(q.key("m", "")):])
	m = &Message[T]{
		ID: id, Deliveries: int(resp.Kv.Version - 1), Revision: resp.Marker.CreateRevision,
		q: q, key: q.key("m", id), marker: q.key("c", id),
	}
	// What is settled here is settled even if ctx ends meanwhile, so that
	// no claim is left behind.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), queueClaimGrace)
	defer scancel()
	if err := ctx.Err(); err != nil {
		_ = q.settle(sctx, m, OpDelete(m.marker)) // best effort: else the claim ends with its lease
		return nil, 0, acked, ctxErr(err)
	}
	v, derr := q.codec.Decode(resp.Kv.Value)
	if derr != nil || (q.max > 0 && m.Deliveries > q.max) {
		err := q.settle(sctx, m, OpDelete(m.key), OpDelete(m.marker), OpPut(q.dead+id, string(resp.Kv.Value)))
		if err != nil && !errors.Is(err, ErrNotClaimed) {
			return nil, 0, acked, err
		}
		return nil, 0, acked, nil
	}
	m.Value = v
	return m, 0, acked, nil
}

// claimOp runs the claim op alone, or with ack's Ack in one Txn that
// holds only while ack's claim does.
func (q *Queue[T]) claimOp(ctx context.Context, ack *Message[T], op Op) (*ClaimResponse, bool, error) {
	if ack == nil {
		resp, err := q.n.claim(ctx, &op)
		return resp, false, err
	}
	resp, err := q.n.Txn(ctx).If(Compare(CreateRevision(ack.marker), "=", ack.Revision)).
		Then(OpDelete(ack.key), OpDelete(ack.marker), op).Commit()
	switch {
	case err != nil:
		return nil, false, err
	case !resp.Succeeded:
		return nil, false, fmt.Errorf("%w: %s", ErrNotClaimed, ack.ID)
	}
	ack.acked.Store(true)
	return resp.Responses[2].Claim(), true, nil
}

// claimLease returns the lease claims go on: the session's, or with a
// visibility timeout vis a lease of TTL 1.1×vis shared by the claims of
// the next vis/10.
func (q *Queue[T]) claimLease(ctx context.Context) (LeaseID, error) {
	if q.vis == 0 {
		return q.s.Lease(), nil
	}
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	if q.lease != NoLease && time.Since(q.leaseAt) < q.vis/10 {
		return q.lease, nil
	}
	at := time.Now()
	id, err := q.n.Grant(ctx, q.vis+q.vis/10)
	if err != nil {
		return NoLease, err
	}
	q.lease, q.leaseAt = id, at
	return id, nil
}

func (q *Queue[T]) dropLease(id LeaseID) {
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	if q.lease == id {
		q.lease = NoLease
	}
}

// promote moves the delayed messages now due to the ready ones, each in
// a nested Txn that holds only if it is still delayed (so one promoter
// wins). It returns how many it moved and when the first message still
// delayed is due (zero if none). It reads this node's state.
func (q *Queue[T]) promote(ctx context.Context) (int, time.Time, error) {
	prefix := q.key("w", "")
	promoted := 0
	for {
		resp, err := q.n.Get(ctx, prefix, WithPrefix(), WithLimit(queuePromoteBatch), WithSerializable())
		if err != nil {
			return 0, time.Time{}, err
		}
		now := time.Now().UnixNano()
		var ops []Op
		var next time.Time
		for _, kv := range resp.Kvs {
			at, id, ok := strings.Cut(string(kv.Key[len(prefix):]), "/")
			nanos, err := strconv.ParseInt(at, 10, 64)
			if !ok || err != nil {
				continue // not a key Enqueue wrote
			}
			if nanos > now {
				next = time.Unix(0, nanos)
				break
			}
			ops = append(ops, OpTxn(
				[]Cmp{Compare(ModRevision(string(kv.Key)), "=", kv.ModRevision)},
				[]Op{OpDelete(string(kv.Key)), OpPut(q.key("m", id), string(kv.Value))}, nil))
		}
		if len(ops) == 0 {
			return promoted, next, nil
		}
		if _, err := q.n.Txn(ctx).Then(ops...).Commit(); err != nil {
			return 0, time.Time{}, err
		}
		promoted += len(ops)
		if !next.IsZero() || !resp.More {
			return promoted, next, nil
		}
	}
}

// wait waits, on a watch of the queue's keys from rev+1, until a message
// may be free: one was put or promoted, a claim was released (not by
// Ack), a delayed message was put, or next (if not zero) came.
func (q *Queue[T]) wait(ctx context.Context, rev int64, next time.Time) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wc := q.n.Watch(wctx, q.name+"/", WithPrefix(), WithRev(rev+1))
	var due <-chan time.Time
	if !next.IsZero() {
		t := time.NewTimer(time.Until(next))
		defer t.Stop()
		due = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctxErr(ctx.Err())
		case <-q.s.Done():
			return q.s.expired()
		case <-due:
			return nil
		case wr, ok := <-wc:
			if !ok || wr.Canceled || q.wakes(wr.Events) {
				return nil // a closed or canceled watch: claim again, which tells why
			}
		}
	}
}

// wakes tells whether events may have freed a message.
func (q *Queue[T]) wakes(events []*Event) bool {
	msgs, markers, delayed := q.key("m", ""), q.key("c", ""), q.key("w", "")
	var gone map[string]bool // messages deleted (acked or dead), by id
	for _, e := range events {
		if k := string(e.Kv.Key); e.Type == EventTypeDelete && strings.HasPrefix(k, msgs) {
			if gone == nil {
				gone = map[string]bool{}
			}
			gone[k[len(msgs):]] = true
		}
	}
	for _, e := range events {
		k := string(e.Kv.Key)
		switch {
		case e.Type == EventTypePut && strings.HasPrefix(k, msgs) && e.Kv.Version == 1:
			return true // a new or promoted message
		case e.Type == EventTypeDelete && strings.HasPrefix(k, markers) && !gone[k[len(markers):]]:
			return true // a claim released: Nack, session or visibility lease gone
		case e.Type == EventTypePut && strings.HasPrefix(k, delayed):
			return true // a delayed message, maybe due before next
		}
	}
	return false
}

// Ack ends the delivery: the message is deleted, with its claim, in one
// Txn that holds only while this delivery's claim does. It returns an
// error wrapping ErrNotClaimed if the claim ended before.
func (m *Message[T]) Ack(ctx context.Context) error {
	if err := m.q.settle(ctx, m, OpDelete(m.key), OpDelete(m.marker)); err != nil {
		return fmt.Errorf("concord.Message.Ack: %w", err)
	}
	m.acked.Store(true)
	return nil
}

// AckAndDequeue acks m and dequeues the next message of its queue, as Ack
// then Dequeue would, but in one write where it can: the Ack rides in the
// Txn of the first claim, which holds only while m's claim does. A
// consumer that loops on it writes once per message instead of twice.
//
// If m's claim ended before, it returns an error wrapping ErrNotClaimed
// and claims nothing. Other errors are Dequeue's; m may be acked by then
// or not: Acked tells.
func (m *Message[T]) AckAndDequeue(ctx context.Context) (*Message[T], error) {
	next, err := m.q.dequeue(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("concord.Message.AckAndDequeue: %w", err)
	}
	return next, nil
}

// Nack releases the claim: the message can be dequeued again at once
// (its Deliveries then one higher). It returns an error wrapping
// ErrNotClaimed if the claim ended before.
func (m *Message[T]) Nack(ctx context.Context) error {
	if err := m.q.settle(ctx, m, OpDelete(m.marker)); err != nil {
		return fmt.Errorf("concord.Message.Nack: %w", err)
	}
	return nil
}

// settle runs ops if m's claim still holds (its marker's create revision
// is the claim's), else returns ErrNotClaimed.
func (q *Queue[T]) settle(ctx context.Context, m *Message[T], ops ...Op) error {
	resp, err := q.n.Txn(ctx).If(Compare(CreateRevision(m.marker), "=", m.Revision)).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %s", ErrNotClaimed, m.ID)
	}
	return nil
}
