package concord

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
	"github.com/concordkv/concord/internal/watchhub"
)

// EventType is the kind of change an Event reports.
type EventType int32

// Event types, as etcd's mvccpb.
const (
	EventTypePut    EventType = 0
	EventTypeDelete EventType = 1
)

func (t EventType) String() string {
	switch t {
	case EventTypePut:
		return "PUT"
	case EventTypeDelete:
		return "DELETE"
	}
	return fmt.Sprintf("EventType(%d)", int32(t))
}

// Event is one change of one key.
type Event struct {
	Type EventType
	// Kv is the key's state after a put. After a delete it holds the key
	// and, as ModRevision, the delete's revision; nothing else.
	Kv *KeyValue
	// PrevKv is the key's state before the change, with WithPrevKV and if
	// the key existed.
	PrevKv *KeyValue
}

// IsCreate tells whether e is the put that created its key (Version 1).
func (e *Event) IsCreate() bool { return e.Type == EventTypePut && e.Kv.Version == 1 }

// IsModify tells whether e is a put on a key that existed.
func (e *Event) IsModify() bool { return e.Type == EventTypePut && e.Kv.Version > 1 }

// WatchChan delivers a watch's responses; see Node.Watch.
type WatchChan <-chan WatchResponse

// WatchResponse is one delivery of a watch.
type WatchResponse struct {
	// Header.Revision is how far the watch got: it has delivered every
	// event of its range up to this revision (from its start on). It never
	// goes down from one response to the next, nor below the revision
	// before the watch's start (but for the Created response, which
	// carries the member's revision when the watch was made, if lower):
	// resume with WithRev(Header.Revision+1).
	Header
	// Events are the changes, in revision order and within a revision in
	// key order; a revision's events are never split across responses.
	// They are shared with other watchers of this node: read them, never
	// change them.
	Events []*Event
	// CompactRevision is set, with Canceled, when the watch needed history
	// below the compact revision: the events from the revision it was at
	// are gone. Err then returns an error wrapping ErrCompacted; watch
	// again from CompactRevision (after reading the current state) to go
	// on.
	CompactRevision int64
	// Canceled tells that this is the watch's last response: Err says why.
	Canceled bool
	// Created marks the first response of a watch made WithCreatedNotify.
	Created bool

	err error
}

// Err returns why the watch was canceled, or nil.
func (wr *WatchResponse) Err() error {
	switch {
	case wr.err != nil:
		return wr.err
	case wr.CompactRevision != 0:
		return fmt.Errorf("%w: compact revision %d", ErrCompacted, wr.CompactRevision)
	}
	return nil
}

// IsProgressNotify tells whether wr is a progress notification: no events,
// only Header.Revision moving on (WithProgressNotify).
func (wr *WatchResponse) IsProgressNotify() bool {
	return len(wr.Events) == 0 && !wr.Canceled && !wr.Created && wr.CompactRevision == 0
}

// Watch streams the changes of key, or of a range with WithPrefix,
// WithRange or WithFromKey, as this node applies them.
//
// Without WithRev the watch starts after this node's current revision: it
// sees every change applied here after Watch returns. WithRev(r) starts at
// revision r: past changes are replayed from the history, unless r is
// below the compact revision, in which case the one response is a
// Canceled one whose CompactRevision is set and whose Err wraps
// ErrCompacted. A revision not reached yet is waited for.
//
// Other options: WithPrevKV (events carry the previous state),
// WithFilterPut and WithFilterDelete (leave those events out),
// WithCreatedNotify (a first response with Created set and no events),
// WithProgressNotify (an empty response carrying Header.Revision after
// Config.WatchProgressInterval without any other).
//
// Guarantees: events arrive in revision order, each once, with nothing
// skipped; all events of one revision come in one response. A watch on
// any member (a follower too) sees every change, as that member applies
// it, so leader changes cause no gap; a lagging member delivers later,
// in the same order. A watcher that does not read never slows writes or
// other watchers: it falls behind and catches up from the history, or, if
// that history was compacted meanwhile, gets the Canceled response with
// CompactRevision (a resync signal, never a silent gap).
//
// The channel closes when ctx ends (a response already being handed over
// may still arrive; nothing is produced after), after a Canceled
// response, or when the node closes. Bad input (an empty key without a
// range, a negative revision) and a closed node give one Canceled
// response whose Err says why. So does a node that stops on its own
// (Err: removed from the cluster, a storage error), to its watches made
// before and after.
func (n *Node) Watch(ctx context.Context, key string, opts ...OpOption) WatchChan {
	op := Op{t: opGet, key: []byte(key)}
	op.apply(opts)
	out := make(chan WatchResponse)
	// direct hands a delivery over at once when the caller is waiting on
	// the channel: the common case of a watcher that keeps up, without
	// waking the watch's goroutine.
	direct := func(d watchhub.Delivery[*Event]) bool {
		if ctx.Err() != nil {
			return false
		}
		select {
		case out <- WatchResponse{Header: n.watchHeader(d.Revision), Events: d.Events}:
			return true
		default:
			return false
		}
	}
	err := op.checkWatch()
	if err == nil {
		err = n.withDB(func() error {
			w, err := n.hub.Watch(watchhub.Options[*Event]{
				Key: op.key, End: op.end, Rev: op.rev,
				PrevKV: op.prevKV, FilterPut: op.filterPut, FilterDelete: op.filterDelete,
				Progress: n.progressInterval(&op), Direct: direct,
			})
			if err != nil {
				return n.stoppedErr() // ErrClosed, or why the node stopped on its own
			}
			n.wg.Go(func() { n.serveWatch(ctx, w, op.createdNotify, out) })
			return nil
		})
	}
	if err != nil {
		c := make(chan WatchResponse, 1)
		c <- WatchResponse{Header: n.watchHeader(n.fsm.Revision()), Canceled: true, err: fmt.Errorf("concord.Watch: %w", err)}
		close(c)
		return c
	}
	return out
}

func (n *Node) progressInterval(op *Op) time.Duration {
	if !op.progressNotify {
		return 0
	}
	return n.cfg.WatchProgressInterval
}

// checkWatch validates a watch's op.
func (op *Op) checkWatch() error {
	if len(op.key) == 0 && len(op.end) == 0 {
		return ErrEmptyKey
	}
	if op.rev < 0 {
		return fmt.Errorf("%w: %d", ErrInvalidRevision, op.rev)
	}
	return nil
}

// serveWatch hands w's deliveries to out until the watch ends.
func (n *Node) serveWatch(ctx context.Context, w *watchhub.Watcher[*Event], created bool, out chan<- WatchResponse) {
	defer close(out)
	defer w.Close()
	send := func(r WatchResponse) bool { return sendCtx(ctx, n, out, r) }
	if created && !send(WatchResponse{Header: n.watchHeader(w.Created()), Created: true}) {
		return
	}
	for {
		d, err := w.Next(ctx)
		if err != nil {
			if r, ok := n.watchEnd(err); ok {
				send(r)
			}
			return
		}
		if !send(WatchResponse{Header: n.watchHeader(d.Revision), Events: d.Events}) {
			return
		}
	}
}

// watchEnd returns the last response of a watch that ended with err, if
// it gets one.
func (n *Node) watchEnd(err error) (WatchResponse, bool) {
	var ce *watchhub.CompactedError
	switch {
	case errors.As(err, &ce):
		return WatchResponse{
			Header:          n.watchHeader(ce.Next - 1),
			Canceled:        true,
			CompactRevision: ce.CompactRevision,
			err: fmt.Errorf("concord.Watch: %w: revision %d is below the compact revision %d",
				ErrCompacted, ce.Next, ce.CompactRevision),
		}, true
	case errors.Is(err, watchhub.ErrClosed) && !n.closed.Load() && n.rn.Err() != nil:
		// The node stopped on its own: say why.
		return WatchResponse{
			Header:   n.watchHeader(n.fsm.Revision()),
			Canceled: true,
			err:      fmt.Errorf("concord.Watch: %w", n.stoppedErr()),
		}, true
	case errors.Is(err, watchhub.ErrClosed), errors.Is(err, ErrClosed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return WatchResponse{}, false
	}
	return WatchResponse{
		Header:   n.watchHeader(n.fsm.Revision()),
		Canceled: true,
		err:      fmt.Errorf("concord.Watch: %w", err),
	}, true
}

// spawn runs fn on a goroutine Close waits for, unless the node is
// closed.
func (n *Node) spawn(fn func()) error {
	return n.withDB(func() error {
		n.wg.Go(fn)
		return nil
	})
}

func (n *Node) watchHeader(rev int64) Header {
	return Header{Revision: rev, RaftTerm: n.rn.Status().Term, MemberID: n.id}
}

// toEvent converts a state machine event for watchers.
func toEvent(ev *command.Event, prevKV bool) *Event {
	e := &Event{Type: EventType(ev.GetType()), Kv: fromKV(ev.GetKv())}
	if prevKV {
		e.PrevKv = fromKV(ev.GetPrevKv())
	}
	return e
}

// history reads the committed history for the watch hub.
func (n *Node) history(from int64, key, end []byte, prevKV bool, fn func(*command.Event) error) (rev, compact int64, err error) {
	err = n.view(func(txn *badger.Txn) error {
		var err error
		if rev, compact, err = fsm.ReadRevisions(txn); err != nil || from < compact {
			return err
		}
		return n.fsm.History(txn, from, key, end, prevKV, fn)
	})
	return rev, compact, err
}
