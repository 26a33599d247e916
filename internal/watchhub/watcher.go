package watchhub

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
)

// Options describe a watch.
type Options[E any] struct {
	// Key and End are the range watched, as in a RangeRequest: End empty
	// for Key alone, "\x00" for every key >= Key.
	Key, End []byte
	// Rev is the first revision wanted; 0 means the revision after the
	// store's current one. A Rev below the compact revision ends the watch
	// at once with a CompactedError.
	Rev int64
	// PrevKV keeps previous values in events; FilterPut and FilterDelete
	// leave puts and deletes out.
	PrevKV, FilterPut, FilterDelete bool
	// Progress, if positive, makes Next return a progress Delivery after
	// this long without returning anything.
	Progress time.Duration
	// Direct, if set, lets the dispatcher hand a delivery straight to the
	// consumer, saving the reader a wake-up, while the reader waits in
	// Next with nothing in hand. It must not block: it returns whether it
	// took the delivery (false sends it through the reader as usual). It
	// runs on the dispatcher with the hub's locks held, never after Close
	// returns.
	Direct func(Delivery[E]) bool
}

// Delivery is what Next returns: events of whole revisions, or progress.
type Delivery[E any] struct {
	// Events are in revision order, and within a revision in key order.
	// They are shared with other watchers: read them, never change them.
	Events []E
	// Revision is how far the watch got: it has delivered every event of
	// its range up to Revision. It never goes down from one Delivery to
	// the next.
	Revision int64
	// Progress tells a delivery without events, sent because nothing
	// happened for Options.Progress.
	Progress bool
}

// Watcher is one watch. Its Next is called from one goroutine at a time.
type Watcher[E any] struct {
	h     *Hub[E]
	o     Options[E]
	wakeC chan struct{}

	// Owned by the caller of Next, but by the dispatcher while idle is
	// set (handed over under mu).
	next   int64 // the first revision not yet delivered
	header int64 // the last Delivery's Revision

	// Owned by the caller of Next.
	created int64       // Created's answer
	spare   []*batch[E] // the other queue buffer
	timer   *time.Timer
	err     error // terminal error, returned by every later Next

	// mu guards the queue side the dispatcher writes.
	mu          sync.Mutex
	queue       []*batch[E] // guarded by mu: commits to deliver, in order
	queuedBytes int         // guarded by mu
	unsynced    bool        // guarded by mu: out of the registry, catching up
	from        int64       // guarded by mu: where an unsynced watcher's history read starts at the earliest
	idle        bool        // guarded by mu: Next waits with nothing in hand; Direct may be used
	directed    bool        // guarded by mu: Direct took a delivery since Next last woke

	// Guarded by h.mu.
	group  *group[E] // the registry group holding w; nil if unsynced
	closed bool
}

// Watch registers a watch. A watch from the current revision on (Rev 0,
// or any Rev above the current revision) is synced at once: every commit
// after the call reaches it. A watch from an older revision starts
// unsynced and reads the history first.
func (h *Hub[E]) Watch(o Options[E]) (*Watcher[E], error) {
	w := &Watcher[E]{h: h, o: o, wakeC: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return nil, ErrClosed
	}
	// Commits up to cur that are not yet dispatched reach w when they are,
	// and Next skips their revisions below w.next.
	cur := h.cfg.Revision()
	switch {
	case o.Rev == 0:
		w.next = cur + 1
	case o.Rev > cur:
		w.next = o.Rev
	default:
		w.next = o.Rev
		w.unsynced, w.from = true, o.Rev
	}
	w.created = min(cur, w.next-1)
	w.header = w.created
	if !w.unsynced {
		h.addLocked(w)
	}
	return w, nil
}

// Created returns the revision a creation notice reports: the store's
// revision when the watch was made, or the revision before its start if
// lower (every event up to it was delivered, vacuously).
func (w *Watcher[E]) Created() int64 { return w.created }

// Close unregisters w. Next must not be called after it.
func (w *Watcher[E]) Close() {
	h := w.h
	h.mu.Lock()
	w.closed = true
	h.removeLocked(w)
	h.mu.Unlock()
	w.mu.Lock()
	clear(w.queue)
	w.queue, w.queuedBytes = nil, 0
	w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
}

func (w *Watcher[E]) wake() {
	select {
	case w.wakeC <- struct{}{}:
	default:
	}
}

// Next returns the next events of the watch, waiting for them until ctx
// ends (its error) or the hub closes (ErrClosed). It returns a
// CompactedError if the history it needs is compacted, and the error of a
// failed history read; either ends the watch: later calls return it again.
func (w *Watcher[E]) Next(ctx context.Context) (Delivery[E], error) {
	if w.err != nil {
		return Delivery[E]{}, w.err
	}
	for {
		select {
		case <-w.h.closedC:
			return Delivery[E]{}, ErrClosed
		default:
		}
		q, unsynced, from := w.take()
		if len(q) > 0 {
			d := w.fromBatches(q)
			clear(q)
			w.spare = q[:0]
			if len(d.Events) > 0 {
				return w.deliver(d), nil
			}
			continue
		}
		if unsynced {
			d, err := w.catchUp(max(from, w.next))
			if err != nil {
				w.err = err
				return Delivery[E]{}, err
			}
			if len(d.Events) > 0 {
				return w.deliver(d), nil
			}
			continue
		}
		var tick <-chan time.Time
		if w.o.Progress > 0 {
			if w.timer == nil {
				w.timer = time.NewTimer(w.o.Progress)
			}
			tick = w.timer.C
		}
		var err error
		fired := false
		select {
		case <-w.wakeC:
		case <-ctx.Done():
			err = ctx.Err()
		case <-w.h.closedC:
			err = ErrClosed
		case <-tick:
			fired = true
		}
		w.mu.Lock()
		w.idle = false
		directed := w.directed
		w.directed = false
		w.mu.Unlock()
		if err != nil {
			return Delivery[E]{}, err
		}
		if fired {
			if rev, ok := w.progress(); ok && !directed {
				return w.deliver(Delivery[E]{Revision: rev, Progress: true}), nil
			}
			w.timer.Reset(w.o.Progress)
		}
	}
}

// deliver records d as delivered.
func (w *Watcher[E]) deliver(d Delivery[E]) Delivery[E] {
	d.Revision = max(d.Revision, w.header)
	w.header = d.Revision
	if w.timer != nil {
		w.timer.Reset(w.o.Progress)
	}
	return d
}

// take removes from the queue the batches of about MaxEvents events, and
// returns them with the sync state. Finding nothing to do, it marks the
// watcher idle: the caller waits next.
func (w *Watcher[E]) take() (q []*batch[E], unsynced bool, from int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 && !w.unsynced {
		w.idle = true
		return nil, false, 0
	}
	n, events := 0, 0
	for n < len(w.queue) && (n == 0 || events < MaxEvents) {
		events += len(w.queue[n].src)
		n++
	}
	if n == len(w.queue) {
		q, w.queue = w.queue, w.spare[:0]
		w.queuedBytes = 0
	} else {
		q = append(w.spare[:0], w.queue[:n]...)
		for _, b := range q {
			w.queuedBytes -= b.size
		}
		rest := copy(w.queue, w.queue[n:])
		clear(w.queue[rest:])
		w.queue = w.queue[:rest]
	}
	w.spare = nil
	return q, w.unsynced, w.from
}

// fromBatches picks the watch's events out of bs.
func (w *Watcher[E]) fromBatches(bs []*batch[E]) Delivery[E] {
	var out []E
	owned := false
	for _, b := range bs {
		if b.rev < w.next {
			continue // delivered already, from the history
		}
		evs := b.events(w.o.PrevKV, w.h.cfg.Convert)
		sel := w.pick(b.src, evs)
		w.next = b.rev + 1
		switch {
		case len(sel) == 0:
		case out == nil:
			out = sel
		case !owned:
			out = append(slices.Clip(out), sel...)
			owned = true
		default:
			out = append(out, sel...)
		}
	}
	return Delivery[E]{Events: out, Revision: w.next - 1}
}

// directLocked tries to hand b straight to the consumer through Direct,
// for an idle watcher with nothing queued; it tells whether b is dealt
// with (delivered, or holding nothing for the watch).
func (w *Watcher[E]) directLocked(b *batch[E]) bool {
	if b.rev < w.next {
		return true
	}
	sel := w.pick(b.src, b.events(w.o.PrevKV, w.h.cfg.Convert))
	if len(sel) > 0 {
		d := Delivery[E]{Events: sel, Revision: max(b.rev, w.header)}
		if !w.o.Direct(d) {
			return false
		}
		w.header, w.directed = d.Revision, true
	}
	w.next = b.rev + 1
	return true
}

// pick returns the events of src (converted: evs) the watch wants: a
// subslice of evs when they are contiguous at its end, else a new slice.
func (w *Watcher[E]) pick(src []*command.Event, evs []E) []E {
	first := -1
	var out []E
	for i, ev := range src {
		if !w.wants(ev) {
			if first >= 0 && out == nil {
				out = slices.Clone(evs[first:i])
			}
			continue
		}
		switch {
		case first < 0:
			first = i
		case out != nil:
			out = append(out, evs[i])
		}
	}
	if first < 0 {
		return nil
	}
	if out == nil {
		return slices.Clip(evs[first:])
	}
	return out
}

// wants tells whether ev belongs to the watch.
func (w *Watcher[E]) wants(ev *command.Event) bool {
	if ev.GetKv().GetModRevision() < w.next || !fsm.InRange(ev.GetKv().GetKey(), w.o.Key, w.o.End) {
		return false
	}
	if ev.GetType() == command.Event_DELETE {
		return !w.o.FilterDelete
	}
	return !w.o.FilterPut
}

// errChunk stops a history read at a revision boundary.
var errChunk = errors.New("watchhub: chunk full")

// catchUp reads one chunk of history from revision from, and rejoins the
// registry once it has read everything dispatched.
func (w *Watcher[E]) catchUp(from int64) (Delivery[E], error) {
	w.next = from
	var (
		out    []E
		last   int64
		stopAt int64
	)
	rev, compact, err := w.h.cfg.History(from, w.o.Key, w.o.End, w.o.PrevKV, func(ev *command.Event) error {
		r := ev.GetKv().GetModRevision()
		if r != last && len(out) >= MaxEvents {
			stopAt = r
			return errChunk
		}
		last = r
		if w.wants(ev) {
			out = append(out, w.h.cfg.Convert(ev, w.o.PrevKV))
		}
		return nil
	})
	if from < compact {
		return Delivery[E]{}, &CompactedError{Next: from, CompactRevision: compact}
	}
	if err != nil && !errors.Is(err, errChunk) {
		return Delivery[E]{}, err
	}
	through := rev
	if stopAt != 0 {
		through = stopAt - 1
	}
	w.next = max(w.next, through+1)
	if stopAt == 0 {
		w.rejoin()
	}
	return Delivery[E]{Events: out, Revision: w.next - 1}, nil
}

// rejoin puts the watcher back in the registry if every commit it has not
// read is yet to be dispatched or still in the ring (then it is queued).
// Later commits reach it through its queue; revisions it read already are
// skipped.
func (w *Watcher[E]) rejoin() {
	h := w.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.closed {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if h.dispatched >= w.next {
		if len(h.ring) == 0 || h.ringBase >= w.next {
			return // missed commits: read the history again
		}
		for _, b := range h.ring {
			if b.rev >= w.next {
				w.queue = append(w.queue, b)
				w.queuedBytes += b.size
			}
		}
	}
	w.unsynced = false
	h.addLocked(w)
}

// progress returns the revision a progress notice may report: the last
// commit dispatched, if the watcher is synced, got everything dispatched,
// and the store has reached the revision before the watch's start (a
// watch from a revision this node has not reached yet reports nothing
// below its start). ok is false otherwise.
func (w *Watcher[E]) progress() (int64, bool) {
	h := w.h
	h.mu.Lock()
	defer h.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	rev := max(h.dispatched, w.header)
	if w.unsynced || len(w.queue) > 0 || rev < w.next-1 {
		return 0, false
	}
	return rev, true
}
