// Package watchhub is concord's watcher registry: it hands the state
// machine's committed events to watchers, in revision order, and never
// blocks apply however slowly a watcher reads (etcd's watchable_store.go:
// synced, unsynced and victim watchers).
//
// # Architecture
//
//	raft goroutine           dispatcher goroutine            each watcher's reader (Next)
//	  OnCommit(commit) ----> match the commit's keys  -----> take its queue, filter, return
//	  appends, wakes;        against the registry by          one Delivery (whole revisions)
//	  O(1), never blocks     range; append the shared
//	                         batch to each synced match's     unsynced: read the history in
//	                         queue and wake it at once        chunks, then rejoin the registry
//
// A watcher is synced while it is in the registry: the dispatcher appends
// every commit touching its range to its queue. A queue holds at most
// [QueueLen] batches and [QueueBytes] bytes; when a commit would overflow
// it, the dispatcher drops the watcher from the registry instead (it is
// unsynced) and goes on. The watcher's reader first drains what was queued,
// then reads the history the state machine keeps (fsm.History) from where
// the queue stopped, a chunk at a time and at its own pace, and rejoins
// the registry once it has read up to the last dispatched commit. If the
// history it needs was compacted meanwhile it gets a [CompactedError]:
// a resync signal, never a silent gap. A snapshot restore (the node caught
// up by snapshot, its changes unreported) makes every watcher unsynced.
// The dispatcher keeps the last few commits ([RingLen]), so that a reader
// done with the history rejoins even if commits were dispatched while it
// read.
//
// All watchers of a range share one converted event slice per commit
// (converted once, lazily, with and without previous values). Readers are
// woken through a channel each, as soon as their batch is queued: there
// is no polling tick. A watcher with [Options.Direct] whose reader waits
// with nothing in hand gets the delivery from the dispatcher itself,
// without waking the reader.
package watchhub

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
)

// Queue bounds of a synced watcher; tests change them.
var (
	// QueueLen is how many commits a watcher may have queued and not read.
	QueueLen = 1024
	// QueueBytes is how many bytes of keys and values a watcher may have
	// queued and not read; one commit larger than that is still queued
	// alone.
	QueueBytes = 16 << 20
	// RingLen and RingBytes bound the newest commits the hub keeps after
	// dispatching them, so that a watcher done reading the history can
	// rejoin although a few commits were dispatched while it read.
	RingLen   = 256
	RingBytes = 4 << 20
	// MaxEvents is about how many events one Delivery holds: deliveries
	// end at a revision boundary once they hold this many (a revision's
	// events are never split).
	MaxEvents = 1000
)

// ErrClosed is returned by Watch and Next once the hub is closed.
var ErrClosed = errors.New("watchhub: closed")

// CompactedError is returned by Next when the history a watcher needs was
// compacted: events from Next on are gone. The watcher is done.
type CompactedError struct {
	// Next is the revision the watcher needed next; CompactRevision the
	// compact revision above it.
	Next, CompactRevision int64
}

func (e *CompactedError) Error() string {
	return "watchhub: history compacted"
}

// Unwrap makes a CompactedError fsm.ErrCompacted as well.
func (e *CompactedError) Unwrap() error { return fsm.ErrCompacted }

// HistoryFunc reads the committed history: it calls fn with every event of
// revision >= from on a key of the range (key, end), in revision order and
// within a revision in key order (fsm.History), with previous values if
// prevKV, all from one consistent state, and returns that state's revision
// and compact revision. When from is below the compact revision it
// returns at once with that compact revision (and any error). An error of
// fn stops it and is returned.
type HistoryFunc func(from int64, key, end []byte, prevKV bool, fn func(*command.Event) error) (rev, compact int64, err error)

// Config configures a Hub.
type Config[E any] struct {
	// History reads the committed history for watchers catching up.
	History HistoryFunc
	// Revision returns the store's committed revision; it may run ahead of
	// the commits given to OnCommit, never behind.
	Revision func() int64
	// Convert turns an event into what watchers receive; prevKV says
	// whether to keep the previous value. It runs on watchers' readers,
	// once per commit and form, and must not change ev.
	Convert func(ev *command.Event, prevKV bool) E
}

// Hub is the registry of a node's watchers. Create it with New, feed it
// with OnCommit, and Close it when the node stops.
type Hub[E any] struct {
	cfg Config[E]

	pendMu  sync.Mutex
	pending []*batch[E] // guarded by pendMu: commits not yet dispatched
	spare   []*batch[E] // owned by the dispatcher: the other pending buffer

	mu         sync.Mutex
	dispatched int64                // guarded by mu: the newest commit dispatched
	keys       map[string]*group[E] // guarded by mu: synced single-key watchers, by key
	ranges     map[span]*group[E]   // guarded by mu: synced range watchers, by range
	mark       uint64               // guarded by mu: dispatch round, for group.mark
	hit        []*group[E]          // guarded by mu: scratch of one dispatch
	ring       []*batch[E]          // guarded by mu: the newest commits dispatched, oldest first
	ringBase   int64                // guarded by mu: the newest commit dispatched before ring[0]
	ringBytes  int                  // guarded by mu

	closed  atomic.Bool
	wakeC   chan struct{} // wakes the dispatcher
	closedC chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// span is a range of keys (key, end) as map key.
type span struct{ key, end string }

// group is the synced watchers of one range.
type group[E any] struct {
	key, end []byte
	ws       map[*Watcher[E]]struct{}
	mark     uint64 // the dispatch round that last matched it
}

// New returns a hub and starts its dispatcher.
func New[E any](cfg Config[E]) *Hub[E] {
	h := &Hub[E]{
		cfg:     cfg,
		keys:    map[string]*group[E]{},
		ranges:  map[span]*group[E]{},
		wakeC:   make(chan struct{}, 1),
		closedC: make(chan struct{}),
	}
	h.wg.Go(h.run)
	return h
}

// OnCommit takes one committed batch of the state machine (fsm.Config's
// OnCommit). It never blocks: it queues the commit for the dispatcher.
// The commit's events are kept and shared, never changed.
func (h *Hub[E]) OnCommit(c fsm.Commit) {
	b := &batch[E]{rev: c.Revision, src: c.Events, restored: c.Restored}
	h.pendMu.Lock()
	if h.closed.Load() {
		h.pendMu.Unlock()
		return
	}
	h.pending = append(h.pending, b)
	h.pendMu.Unlock()
	select {
	case h.wakeC <- struct{}{}:
	default:
	}
}

// Close stops the dispatcher and ends every watcher's Next with ErrClosed.
// It is idempotent.
func (h *Hub[E]) Close() {
	h.once.Do(func() {
		h.pendMu.Lock()
		h.closed.Store(true)
		h.pending = nil
		h.pendMu.Unlock()
		close(h.closedC)
		h.wg.Wait()
	})
}

// run is the dispatcher.
func (h *Hub[E]) run() {
	for {
		select {
		case <-h.wakeC:
		case <-h.closedC:
			return
		}
		h.pendMu.Lock()
		bs := h.pending
		h.pending = h.spare[:0]
		h.pendMu.Unlock()
		h.mu.Lock()
		for _, b := range bs {
			h.dispatchLocked(b)
		}
		h.mu.Unlock()
		clear(bs)
		h.spare = bs
	}
}

// dispatchLocked hands b to the synced watchers it concerns.
func (h *Hub[E]) dispatchLocked(b *batch[E]) {
	if b.restored {
		// The state jumped to b.rev; what changed was not reported: every
		// watcher reads it from the history.
		for _, g := range h.keys {
			h.unsyncGroupLocked(g)
		}
		for _, g := range h.ranges {
			h.unsyncGroupLocked(g)
		}
		h.dispatched = max(h.dispatched, b.rev)
		clear(h.ring)
		h.ring, h.ringBytes = h.ring[:0], 0
		return
	}
	h.mark++
	hit := h.hit[:0]
	for _, ev := range b.src {
		b.size += len(ev.GetKv().GetKey()) + len(ev.GetKv().GetValue()) + len(ev.GetPrevKv().GetValue())
		if g := h.keys[string(ev.GetKv().GetKey())]; g != nil && g.mark != h.mark {
			g.mark = h.mark
			hit = append(hit, g)
		}
	}
	for _, g := range h.ranges {
		for _, ev := range b.src {
			if fsm.InRange(ev.GetKv().GetKey(), g.key, g.end) {
				hit = append(hit, g)
				break
			}
		}
	}
	for _, g := range hit {
		for w := range g.ws {
			h.enqueueLocked(w, b)
		}
	}
	clear(hit)
	h.hit = hit[:0]
	h.keepLocked(b)
	h.dispatched = max(h.dispatched, b.rev)
}

// keepLocked adds b, about to be dispatched, to the ring.
func (h *Hub[E]) keepLocked(b *batch[E]) {
	if len(h.ring) == 0 {
		h.ringBase = h.dispatched
	}
	h.ring = append(h.ring, b)
	h.ringBytes += b.size
	drop := 0
	for len(h.ring)-drop > 1 && (len(h.ring)-drop > RingLen || h.ringBytes > RingBytes) {
		h.ringBase = h.ring[drop].rev
		h.ringBytes -= h.ring[drop].size
		drop++
	}
	if drop > 0 {
		n := copy(h.ring, h.ring[drop:])
		clear(h.ring[n:])
		h.ring = h.ring[:n]
	}
}

// enqueueLocked appends b to w's queue, or makes w unsynced if it is full.
func (h *Hub[E]) enqueueLocked(w *Watcher[E], b *batch[E]) {
	w.mu.Lock()
	if w.idle && len(w.queue) == 0 && w.o.Direct != nil && w.directLocked(b) {
		w.mu.Unlock()
		return
	}
	if len(w.queue) > 0 && (len(w.queue) >= QueueLen || w.queuedBytes+b.size > QueueBytes) {
		w.mu.Unlock()
		h.unsyncLocked(w)
		return
	}
	w.queue = append(w.queue, b)
	w.queuedBytes += b.size
	w.mu.Unlock()
	w.wake()
}

func (h *Hub[E]) unsyncGroupLocked(g *group[E]) {
	for w := range g.ws {
		h.unsyncLocked(w)
	}
}

// unsyncLocked drops w from the registry: its reader catches up from the
// history, from the first commit not yet dispatched.
func (h *Hub[E]) unsyncLocked(w *Watcher[E]) {
	h.removeLocked(w)
	w.mu.Lock()
	w.unsynced, w.from = true, h.dispatched+1
	w.mu.Unlock()
	w.wake()
}

// addLocked puts w in the registry.
func (h *Hub[E]) addLocked(w *Watcher[E]) {
	var g *group[E]
	if len(w.o.End) == 0 {
		g = h.keys[string(w.o.Key)]
		if g == nil {
			g = &group[E]{key: w.o.Key, ws: map[*Watcher[E]]struct{}{}}
			h.keys[string(w.o.Key)] = g
		}
	} else {
		s := span{string(w.o.Key), string(w.o.End)}
		g = h.ranges[s]
		if g == nil {
			g = &group[E]{key: w.o.Key, end: w.o.End, ws: map[*Watcher[E]]struct{}{}}
			h.ranges[s] = g
		}
	}
	g.ws[w] = struct{}{}
	w.group = g
}

// removeLocked takes w out of the registry, if it is there.
func (h *Hub[E]) removeLocked(w *Watcher[E]) {
	g := w.group
	if g == nil {
		return
	}
	w.group = nil
	delete(g.ws, w)
	if len(g.ws) > 0 {
		return
	}
	if len(g.end) == 0 {
		delete(h.keys, string(g.key))
	} else {
		delete(h.ranges, span{string(g.key), string(g.end)})
	}
}

// batch is one commit as the hub shares it among watchers.
type batch[E any] struct {
	rev      int64
	src      []*command.Event
	size     int // bytes of keys and values; set by the dispatcher
	restored bool
	conv     [2]struct {
		once sync.Once
		evs  []E
	}
}

// events returns src converted, with or without previous values; it is
// computed once per form and shared: callers must not change it.
func (b *batch[E]) events(prevKV bool, convert func(*command.Event, bool) E) []E {
	i := 0
	if prevKV {
		i = 1
	}
	c := &b.conv[i]
	c.once.Do(func() {
		c.evs = make([]E, len(b.src))
		for j, ev := range b.src {
			c.evs[j] = convert(ev, prevKV)
		}
	})
	return c.evs
}
