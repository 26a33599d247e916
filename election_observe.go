package concord

import (
	"bytes"
	"cmp"
	"context"
	"errors"
)

// Observe streams the election's leader: first the one as of the call
// (this node's revision then), then every change, in revision order, each
// exactly once: a new leader, a value the leader proclaims (or
// re-campaigns with), and "no leader", sent as the zero Leader, whenever
// the last campaign key is gone and no one has taken over (etcd's Observe
// stays silent then, etcd#18163). A leader's key going away while another
// campaigner waits is one change: the next leader, at the same revision.
//
// Observers on any node see the same sequence from the revision they
// start at: it follows the store's revisions, not timing. An observer
// that does not read falls behind (the watch history buffers) but misses
// nothing, unless that history is compacted meanwhile: then it reads the
// current state again and reports the difference. The channel closes when
// ctx ends or the node closes, and at once for an election whose name is
// empty or whose codec is of the wrong type (see Leader).
func (e *Election[T]) Observe(ctx context.Context) <-chan Leader[T] {
	out := make(chan Leader[T])
	if cmp.Or(e.err, codecErr(e.codec)) != nil { // a bad name or codec: nothing to observe
		close(out)
		return out
	}
	from := e.n.Status().Revision // "current" is as of this call
	if err := e.n.spawn(func() { e.observe(ctx, from, out) }); err != nil {
		close(out)
	}
	return out
}

// electObserver tracks the campaign keys of an election from a read and
// the watch events after it.
type electObserver struct {
	kvs  map[string]*KeyValue // campaign keys by key
	sent *KeyValue            // the leader key last reported; nil = none
	any  bool                 // something was reported
}

// first returns the key with the lowest create revision, or nil.
func (o *electObserver) first() *KeyValue {
	var low *KeyValue
	for _, kv := range o.kvs {
		if low == nil || kv.CreateRevision < low.CreateRevision {
			low = kv
		}
	}
	return low
}

// changed reports whether the leader differs from the one last reported:
// another key, or the same key written since.
func (o *electObserver) changed() (*KeyValue, bool) {
	cur := o.first()
	if !o.any {
		return cur, true
	}
	switch {
	case cur == nil || o.sent == nil:
		return cur, cur != o.sent
	case !bytes.Equal(cur.Key, o.sent.Key) || cur.CreateRevision != o.sent.CreateRevision:
		return cur, true
	}
	return cur, cur.ModRevision != o.sent.ModRevision
}

func (e *Election[T]) observe(ctx context.Context, from int64, out chan<- Leader[T]) {
	defer close(out)
	o := &electObserver{}
	for ctx.Err() == nil {
		resp, err := e.n.Get(ctx, e.prefix, WithPrefix(), WithRev(from))
		at := from // the read's revision (its header has the current one)
		from = 0   // later reads (after a compaction) start from the present
		if err != nil {
			if !errors.Is(err, ErrCompacted) && !e.observeRetry(ctx) {
				return
			}
			continue
		}
		o.kvs = map[string]*KeyValue{}
		for _, kv := range ownKeys(resp.Kvs, e.prefix) {
			o.kvs[string(kv.Key)] = kv
		}
		if !e.observeReport(ctx, o, out) {
			return
		}
		if at == 0 {
			at = resp.Revision
		}
		wc := e.n.Watch(ctx, e.prefix, WithPrefix(), WithRev(at+1))
		for wr := range wc {
			// A response may hold several revisions (a watcher catching
			// up): report after each, so no state is skipped.
			for i, ev := range wr.Events {
				switch {
				case !ownKey(ev.Kv.Key, e.prefix): // another election's
				case ev.Type == EventTypePut:
					o.kvs[string(ev.Kv.Key)] = ev.Kv
				default:
					delete(o.kvs, string(ev.Kv.Key))
				}
				last := i == len(wr.Events)-1
				if (last || wr.Events[i+1].Kv.ModRevision != ev.Kv.ModRevision) && !e.observeReport(ctx, o, out) {
					return
				}
			}
		}
		// The watch ended: ctx, the node closing, or a compaction, after
		// which a fresh read resynchronises.
	}
}

// observeReport sends the leader if it changed; false when ctx ended or
// the node closed.
func (e *Election[T]) observeReport(ctx context.Context, o *electObserver, out chan<- Leader[T]) bool {
	cur, ok := o.changed()
	if !ok {
		return true
	}
	var l Leader[T]
	if cur != nil {
		l.Key, l.Token = string(cur.Key), cur.CreateRevision
		l.Value, _ = e.codec.Decode(cur.Value) // the zero T when it does not decode, as documented
	}
	if !sendCtx(ctx, e.n, out, l) {
		return false
	}
	o.sent, o.any = cur, true
	return true
}

// observeRetry pauses before reading again after a failed read; false
// when ctx ended or the node closed.
func (e *Election[T]) observeRetry(ctx context.Context) bool {
	if e.n.alive() != nil {
		return false
	}
	return e.n.pause(ctx, e.n.cfg.electionTimeout()/4) == nil
}
