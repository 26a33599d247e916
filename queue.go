package concord

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotClaimed is returned by Message.Ack and Message.Nack when the
// message is no longer claimed by that delivery: its session ended, its
// visibility timeout passed, or it was acked or nacked already.
var ErrNotClaimed = errors.New("concord: message not claimed")

// Queue is a work queue of values of T kept under the key prefix name+"/"
// (etcd's recipes style), with priorities, delays, redelivery and dead
// letters. Delivery is at least once: a message is claimed by one
// consumer at a time (a claim is one atomic state-machine command,
// Node.Claim, not a compare-and-swap retry loop), and a claim ends with
// Ack (the message is gone), Nack (it is back at once), the end of the
// consumer's session, or the visibility timeout.
//
// Order: higher priorities first; within a priority, messages enqueued
// through one node are first delivered in the order they were enqueued
// (an Enqueue that returned before another started through the same node
// comes first); a message released by Nack or a claim's end keeps its
// place. Enqueues through different nodes interleave by the revision each
// node had applied, so a message enqueued through a lagging follower may
// sort ahead of one enqueued a little earlier elsewhere.
//
// Keys, where <id> is <priority key>/<sequence>-<random>:
//
//	name/m/<id>                  ready or claimed message (value: encoded T)
//	name/c/<id>                  claim marker, on the claim's lease
//	name/w/<ready-at>/<id>       delayed message (ready-at: unix nanos, 20 digits)
//	name/dead/<id>               dead letter (or WithDeadLetterPrefix's prefix)
//
// The priority key is 20 digits that sort the higher priority first.
// Delayed messages sort after the others: a read of their (mostly empty)
// range then does not wade through the deleted keys of consumed messages.
// A message's Version counts its claims, so the delivery count needs no
// write of its own. Methods are safe for concurrent use.
type Queue[T any] struct {
	s     *Session
	n     *Node
	name  string
	codec Codec[T]
	vis   time.Duration
	max   int
	dead  string // dead-letter prefix
	err   error  // a bad option: every call returns it

	lastRev atomic.Int64  // highest revision an Enqueue of this handle saw
	turn    chan struct{} // capacity 1: held by the Dequeue on this node that waits on the watch (queueTurn)

	leaseMu sync.Mutex
	lease   LeaseID   // guarded by leaseMu: the claim lease WithVisibilityTimeout shares
	leaseAt time.Time // guarded by leaseMu: when lease was granted
}

// QueueOption configures NewQueue.
type QueueOption func(*queueOptions)

type queueOptions struct {
	codec any // a Codec[T] for the queue's T
	vis   time.Duration
	max   int
	dead  string
}

// WithQueueCodec sets the Codec of the queue's values. Default JSON[T]();
// a codec of another type than the queue's makes every call fail with
// ErrInvalidRequest.
func WithQueueCodec[T any](c Codec[T]) QueueOption {
	return func(o *queueOptions) { o.codec = c }
}

// WithVisibilityTimeout bounds how long a claim lasts: a message claimed
// more than d ago (and not acked) is released, between d and 1.1×d after
// its claim, even if the consumer's session lives on. Claims then sit on
// a lease of their own (shared by the claims of a tenth of d), not on the
// session's, so a consumer whose session dies keeps its claims until
// they time out. d must be at least the minimum lease TTL (the election
// timeout). Default 0: a claim lasts as long as the consumer's session.
func WithVisibilityTimeout(d time.Duration) QueueOption {
	return func(o *queueOptions) { o.vis = d }
}

// WithMaxDeliveries moves a message delivered n times and still not acked
// to the dead letters instead of delivering it again. Default 0: no limit.
func WithMaxDeliveries(n int) QueueOption {
	return func(o *queueOptions) { o.max = n }
}

// WithDeadLetterPrefix sets the prefix dead letters are kept under (keys
// prefix+<id>). Default name+"/dead/". It must not hold the queue's other
// keys: a prefix under name+"/" but not under name+"/dead/", or one that
// name+"/" starts with ("jobs" for the queue "jobs", "q" for "q2"), makes
// every call fail with ErrInvalidRequest. One so long that dead-letter
// keys (the prefix and a 58-byte ID) exceed Config.MaxKeySize makes every
// call fail with ErrKeyTooLarge, before anything is written.
func WithDeadLetterPrefix(prefix string) QueueOption {
	return func(o *queueOptions) { o.dead = prefix }
}

// NewQueue returns the queue name as seen by s's holder: Enqueue writes
// through s's node, and Dequeue claims messages for s. Any number of
// handles, on any nodes, may share a queue; they must agree on its
// options. Bad options make every call fail with ErrInvalidRequest (an
// empty name with ErrEmptyKey, dead-letter keys too long with
// ErrKeyTooLarge).
//
// Queues nest like paths ("jobs" and "jobs/urgent" are two queues), but
// a segment after the first may not be m, c, w or dead, the segments a
// queue keeps its keys under: the keys of "jobs/m" would lie among the
// messages of "jobs". Such a name makes every call fail with
// ErrInvalidRequest.
func NewQueue[T any](s *Session, name string, opts ...QueueOption) *Queue[T] {
	o := queueOptions{dead: name + "/dead/"}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	q := &Queue[T]{s: s, n: s.n, name: name, codec: JSON[T](), vis: o.vis, max: o.max, dead: o.dead,
		turn: s.n.queueTurn(name)}
	if o.codec != nil {
		c, ok := o.codec.(Codec[T])
		if !ok {
			q.err = fmt.Errorf("%w: WithQueueCodec's codec is a %T, not a Codec of the queue's type", ErrInvalidRequest, o.codec)
		}
		q.codec = c
	}
	clash := queueClash(name)
	switch {
	case name == "":
		q.err = fmt.Errorf("%w: queue name", ErrEmptyKey)
	case clash != nil:
		q.err = clash
	case o.vis < 0:
		q.err = fmt.Errorf("%w: WithVisibilityTimeout(%v) is negative", ErrInvalidRequest, o.vis)
	case o.vis > 0 && o.vis < s.n.minTTL():
		q.err = fmt.Errorf("%w: WithVisibilityTimeout(%v) is under the minimum lease TTL of %v", ErrInvalidRequest, o.vis, s.n.minTTL())
	case o.max < 0:
		q.err = fmt.Errorf("%w: WithMaxDeliveries(%d) is negative", ErrInvalidRequest, o.max)
	case o.dead == "" || strings.HasPrefix(name+"/", o.dead) ||
		(strings.HasPrefix(o.dead, name+"/") && !strings.HasPrefix(o.dead, name+"/dead/")):
		q.err = fmt.Errorf("%w: WithDeadLetterPrefix(%q) is empty or holds the queue's keys", ErrInvalidRequest, o.dead)
	case len(o.dead)+queueIDLen > s.n.cfg.MaxKeySize:
		// Checked here, not by the put that dead-letters a message: that
		// put comes after the claim, which it would leave behind.
		q.err = fmt.Errorf("%w: dead-letter keys of %d bytes (a prefix of %d and an ID of %d), the limit is %d (Config.MaxKeySize)",
			ErrKeyTooLarge, len(o.dead)+queueIDLen, len(o.dead), queueIDLen, s.n.cfg.MaxKeySize)
	}
	return q
}

// EnqueueOption configures one Enqueue.
type EnqueueOption func(*enqueueOptions)

type enqueueOptions struct {
	priority int
	delay    time.Duration
}

// WithPriority sets the message's priority: higher is delivered first.
// Default 0; negative values are allowed.
func WithPriority(p int) EnqueueOption {
	return func(o *enqueueOptions) { o.priority = p }
}

// WithDelay keeps the message from delivery for d after Enqueue, by the
// clocks of the producer and the consumers (their skew shifts it). It
// waits under name/w/ and is moved to the ready messages, keeping its
// place among its priority, by the first Dequeue that sees it due. A
// delay past the last instant Unix nanoseconds hold (in the year 2262)
// keeps the message until that instant, in effect for ever: it is not
// delivered at once.
func WithDelay(d time.Duration) EnqueueOption {
	return func(o *enqueueOptions) { o.delay = d }
}

// Enqueue adds v to the queue and returns the message's ID. It is one
// raft round trip. If ctx ends first, the message may or may not have
// been added.
func (q *Queue[T]) Enqueue(ctx context.Context, v T, opts ...EnqueueOption) (string, error) {
	id, err := q.enqueue(ctx, v, opts)
	if err != nil {
		return "", fmt.Errorf("concord.Queue.Enqueue: %w", err)
	}
	return id, nil
}

func (q *Queue[T]) enqueue(ctx context.Context, v T, opts []EnqueueOption) (string, error) {
	if q.err != nil {
		return "", q.err
	}
	var o enqueueOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.delay < 0 {
		return "", fmt.Errorf("%w: WithDelay(%v) is negative", ErrInvalidRequest, o.delay)
	}
	b, err := q.codec.Encode(v)
	if err != nil {
		return "", fmt.Errorf("%w: encode: %w", ErrInvalidRequest, err)
	}
	for {
		// The sequence is above the revision of every earlier Enqueue
		// through this node (this handle's, and those the node applied),
		// so that a producer's messages keep their order.
		seq := max(q.n.Status().Revision, q.lastRev.Load()) + 1
		id := fmt.Sprintf("%020d/%020d-%016x", queuePriorityKey(o.priority), seq, rand.Uint64())
		key := q.key("m", id)
		if o.delay > 0 {
			key = q.delayedKey(time.Now().Add(o.delay), id)
		}
		resp, err := q.n.Create(ctx, key, string(b))
		if errors.Is(err, ErrKeyExists) {
			continue // the random part collided: draw again
		}
		if err != nil {
			return "", err
		}
		queueRaise(&q.lastRev, resp.Revision)
		return id, nil
	}
}

// Len returns the number of ready messages: neither claimed nor delayed
// (a delayed message counts once it is due by this node's clock). It is
// three reads at one revision.
func (q *Queue[T]) Len(ctx context.Context) (int, error) {
	l, _, err := q.length(ctx)
	if err != nil {
		return 0, fmt.Errorf("concord.Queue.Len: %w", err)
	}
	return l, nil
}

// length returns Len and the revision it was read at.
func (q *Queue[T]) length(ctx context.Context) (int, int64, error) {
	if q.err != nil {
		return 0, 0, q.err
	}
	msgs, err := q.n.Get(ctx, q.key("m", ""), WithPrefix(), WithCountOnly())
	if err != nil {
		return 0, 0, err
	}
	// A marker exists only beside its message (Ack and dead-lettering
	// delete both at once), so the ready ones are the difference.
	claimed, err := q.n.Get(ctx, q.key("c", ""), WithPrefix(), WithCountOnly(), WithRev(msgs.Revision), WithSerializable())
	if err != nil {
		return 0, 0, err
	}
	// Delayed keys sort by due time: those due are the ones before the
	// first that is not.
	due, err := q.n.Get(ctx, q.key("w", ""), WithRange(q.delayedKey(time.Now().Add(time.Nanosecond), "")),
		WithCountOnly(), WithRev(msgs.Revision), WithSerializable())
	if err != nil {
		return 0, 0, err
	}
	return int(msgs.Count - claimed.Count + due.Count), msgs.Revision, nil
}

// DeadLetter is a message moved out of the queue after too many
// deliveries, or because its value did not decode.
type DeadLetter[T any] struct {
	ID    string
	Value T
	// Err is set, wrapping ErrDecode, when the value does not decode.
	Err error
}

// DeadLetters lists the dead letters, in ID order (priority, then
// sequence). Delete them with Node.Delete(prefix+id), the prefix being
// name+"/dead/" unless WithDeadLetterPrefix says otherwise.
func (q *Queue[T]) DeadLetters(ctx context.Context) ([]DeadLetter[T], error) {
	if q.err != nil {
		return nil, fmt.Errorf("concord.Queue.DeadLetters: %w", q.err)
	}
	resp, err := q.n.Get(ctx, q.dead, WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("concord.Queue.DeadLetters: %w", err)
	}
	out := make([]DeadLetter[T], 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		d := DeadLetter[T]{ID: string(kv.Key[len(q.dead):])}
		if d.Value, err = q.codec.Decode(kv.Value); err != nil {
			d.Err = fmt.Errorf("%w: key %q: %w", ErrDecode, kv.Key, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// queueIDLen is the length of a message ID Enqueue draws:
// <priority key>/<sequence>-<random>, 20+1+20+1+16 bytes.
const queueIDLen = 58

// queueClash refuses a name with a segment, after its first, that a
// queue keeps its keys under (see NewQueue); nil if it has none.
func queueClash(name string) error {
	segs := strings.Split(name, "/")
	for i, seg := range segs {
		if i > 0 && (seg == "m" || seg == "c" || seg == "w" || seg == "dead") {
			return fmt.Errorf("%w: queue name %q: the queue %q keeps its keys under the segment %q, so their keys would mix",
				ErrInvalidRequest, name, strings.Join(segs[:i], "/"), seg)
		}
	}
	return nil
}

// key returns the key of kind ("m", "c", "w") for id; id "" gives the prefix.
func (q *Queue[T]) key(kind, id string) string { return q.name + "/" + kind + "/" + id }

// delayedKey returns the key of message id delayed until at. An at past
// the last instant of int64 Unix nanoseconds saturates there (UnixNano
// would wrap it, making the message due at once).
func (q *Queue[T]) delayedKey(at time.Time, id string) string {
	nanos := int64(math.MaxInt64)
	if !at.After(time.Unix(0, math.MaxInt64)) {
		nanos = max(at.UnixNano(), 0)
	}
	return fmt.Sprintf("%s%020d/%s", q.key("w", ""), nanos, id)
}

// queuePriorityKey maps p to a number whose 20-digit form sorts the higher
// priority first.
func queuePriorityKey(p int) uint64 { return ^(uint64(int64(p)) ^ 1<<63) }

// queueRaise raises a to v if v is higher.
func queueRaise(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// queueTurn returns the turn the Dequeues of queue name on n take to wait
// on the watch (see dequeue): one per name, shared by every handle on n,
// so a new message wakes one of n's waiting consumers, not all. Kept for
// the node's life: one small channel per queue name dequeued here.
func (n *Node) queueTurn(name string) chan struct{} {
	n.turnsMu.Lock()
	defer n.turnsMu.Unlock()
	if n.queueTurns == nil {
		n.queueTurns = map[string]chan struct{}{}
	}
	t, ok := n.queueTurns[name]
	if !ok {
		t = make(chan struct{}, 1)
		n.queueTurns[name] = t
	}
	return t
}
