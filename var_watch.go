package concord

import (
	"context"
	"fmt"
)

// run follows the key: a watch from the revision after the one the Var
// has seen, and a new read when the watch falls below compaction.
func (v *Var[T]) run(ctx context.Context) {
	defer close(v.doneC)
	err := v.follow(ctx)
	if ctx.Err() != nil {
		err = context.Cause(ctx) // ErrClosed after Close
	}
	v.mu.Lock()
	v.err = err
	close(v.revC)
	v.mu.Unlock()
	close(v.changesC)
}

func (v *Var[T]) follow(ctx context.Context) error {
	for {
		v.mu.RLock()
		from := v.seen + 1
		v.mu.RUnlock()
		compacted := false
		for resp := range v.n.Watch(ctx, v.key, WithRev(from)) {
			if resp.CompactRevision != 0 {
				compacted = true
				break
			}
			if err := resp.Err(); err != nil {
				return err
			}
			for _, e := range resp.Events {
				v.apply(e)
			}
			v.moveSeen(resp.Revision)
		}
		if !compacted {
			return ErrClosed // ctx ended (run says why) or the node closed
		}
		// Behind the compaction: read the key again, here (the watch goes
		// on from this node's revision).
		resp, err := v.n.Get(ctx, v.key, WithSerializable())
		if err != nil {
			return err
		}
		v.reset(resp)
	}
}

// reset takes the state a read of the key gives.
func (v *Var[T]) reset(resp *GetResponse) {
	if len(resp.Kvs) > 0 {
		v.apply(&Event{Type: EventTypePut, Kv: resp.Kvs[0]})
	} else {
		v.mu.RLock()
		existed := v.mod != 0 || v.bad != nil
		v.mu.RUnlock()
		if existed { // deleted at some revision up to resp's
			v.apply(&Event{Type: EventTypeDelete, Kv: &KeyValue{Key: []byte(v.key), ModRevision: resp.Revision}})
		}
	}
	v.moveSeen(resp.Revision)
}

// apply takes one change of the key, unless it is older than the value
// held or does not decode; a new value goes to Changes.
func (v *Var[T]) apply(e *Event) {
	val, mod := v.def, int64(0)
	var bad error
	if e.Type == EventTypePut {
		mod = e.Kv.ModRevision
		var err error
		if val, err = v.codec.Decode(e.Kv.Value); err != nil {
			bad = fmt.Errorf("%w: key %q at revision %d: %w", ErrDecode, v.key, e.Kv.ModRevision, err)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if e.Kv.ModRevision <= v.rev {
		return
	}
	v.bad = bad
	if bad != nil {
		return // mod stays the last good value's: Update's compare fails
	}
	v.val, v.rev, v.mod = val, e.Kv.ModRevision, mod
	v.publishLocked(val)
}

// publishLocked puts val on changesC, in place of a value not read yet.
// Only apply sends, under mu, so the send after the drain never blocks.
func (v *Var[T]) publishLocked(val T) {
	select {
	case v.changesC <- val:
		return
	default:
	}
	select {
	case <-v.changesC:
	default:
	}
	v.changesC <- val
}

// moveSeen records that the watch reached revision rev.
func (v *Var[T]) moveSeen(rev int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if rev > v.seen {
		v.seen = rev
		close(v.revC)
		v.revC = make(chan struct{})
	}
}

// waitSeen waits until the Var has seen revision rev.
func (v *Var[T]) waitSeen(ctx context.Context, rev int64) error {
	for {
		v.mu.RLock()
		seen, revC, stopped := v.seen, v.revC, v.err
		v.mu.RUnlock()
		switch {
		case seen >= rev:
			return nil
		case stopped != nil:
			return stopped
		}
		select {
		case <-revC:
		case <-ctx.Done():
			return ctxErr(ctx.Err())
		}
	}
}

// decodeGet returns the value and ModRevision a read of the key gives.
func (v *Var[T]) decodeGet(resp *GetResponse) (T, int64, error) {
	if len(resp.Kvs) == 0 {
		return v.def, 0, nil
	}
	kv := resp.Kvs[0]
	val, err := v.codec.Decode(kv.Value)
	if err != nil {
		return val, 0, fmt.Errorf("%w: key %q at revision %d: %w", ErrDecode, v.key, kv.ModRevision, err)
	}
	return val, kv.ModRevision, nil
}
