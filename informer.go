package concord

import (
	"context"
	"fmt"
	"maps"
	"sync"
)

// Informer keeps a local copy of the keys under a prefix, their values
// decoded with a Codec, consistent with one revision of the store at any
// time: it reads the prefix, then follows it with a watch from the next
// revision (Kubernetes' list-then-watch). Reads are local, with no round
// trip: the config and service-discovery building block.
//
// If its watch falls below the compact revision (it was not keeping up
// and the history it needed is gone), it reads the prefix again and goes
// on from there: readers see one jump to a newer consistent state, never a
// partial one.
type Informer[T any] struct {
	n      *Node
	prefix string
	codec  Codec[T]
	cancel context.CancelCauseFunc
	doneC  chan struct{}

	mu       sync.RWMutex
	items    map[string]T     // guarded by mu
	bad      map[string]error // guarded by mu: keys whose value does not decode
	rev      int64            // guarded by mu: the revision items reflect
	changedC chan struct{}    // guarded by mu: closed when items next change
	revC     chan struct{}    // guarded by mu: closed when rev next moves
	err      error            // guarded by mu: why it stopped
}

// NewInformer reads every key under prefix ("" for all keys) with a
// linearizable Get, decodes the values with c (JSON[T]() if nil) and
// returns an Informer that follows the changes from there on, as this
// node applies them, until ctx ends, Close is called or the node closes.
// ctx also bounds the first read: its error is returned then.
func NewInformer[T any](ctx context.Context, n *Node, prefix string, c Codec[T]) (*Informer[T], error) {
	if c == nil {
		c = JSON[T]()
	}
	resp, err := n.Get(ctx, prefix, WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("concord.NewInformer: %w", err)
	}
	inf, err := startInformer(ctx, n, prefix, c, resp)
	if err != nil {
		return nil, fmt.Errorf("concord.NewInformer: %w", err)
	}
	return inf, nil
}

// startInformer starts an Informer from the state read in resp.
func startInformer[T any](ctx context.Context, n *Node, prefix string, c Codec[T], resp *GetResponse) (*Informer[T], error) {
	ctx, cancel := context.WithCancelCause(ctx)
	inf := &Informer[T]{
		n: n, prefix: prefix, codec: c, cancel: cancel,
		doneC:    make(chan struct{}),
		changedC: make(chan struct{}),
		revC:     make(chan struct{}),
	}
	inf.reset(resp)
	if err := n.spawn(func() { inf.run(ctx) }); err != nil {
		cancel(err)
		return nil, err
	}
	return inf, nil
}

// Get returns key's decoded value, if key is under the prefix, exists and
// decodes.
func (inf *Informer[T]) Get(key string) (T, bool) {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	v, ok := inf.items[key]
	return v, ok
}

// Snapshot returns a copy of the keys and values, and the revision they
// are the state of.
func (inf *Informer[T]) Snapshot() (map[string]T, int64) {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	return maps.Clone(inf.items), inf.rev
}

// Revision returns the revision of the store the copy reflects.
func (inf *Informer[T]) Revision() int64 {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	return inf.rev
}

// Invalid returns the keys whose value does not decode, with the decoding
// errors (each wraps ErrDecode). They are left out of Get and Snapshot.
func (inf *Informer[T]) Invalid() map[string]error {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	return maps.Clone(inf.bad)
}

// Changed returns a channel closed at the next change of the copy (or
// when the Informer stops): wait on it, then call Snapshot.
func (inf *Informer[T]) Changed() <-chan struct{} {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	return inf.changedC
}

// WaitRevision waits until the copy reflects revision rev or a later one.
// The copy moves at each change under the prefix, and otherwise at each
// progress notification (Config.WatchProgressInterval): to read a write
// of your own, wait for the revision of a write under the prefix. A
// negative rev gives an error wrapping ErrInvalidRevision.
func (inf *Informer[T]) WaitRevision(ctx context.Context, rev int64) error {
	if rev < 0 {
		return fmt.Errorf("concord.Informer.WaitRevision: %w: %d", ErrInvalidRevision, rev)
	}
	for {
		inf.mu.RLock()
		cur, revC, stopped := inf.rev, inf.revC, inf.err
		inf.mu.RUnlock()
		switch {
		case cur >= rev:
			return nil
		case stopped != nil:
			return fmt.Errorf("concord.Informer.WaitRevision: %w", stopped)
		}
		select {
		case <-revC:
		case <-ctx.Done():
			return fmt.Errorf("concord.Informer.WaitRevision: %w", ctxErr(ctx.Err()))
		}
	}
}

// Done returns a channel closed when the Informer stops following
// changes; Err then says why.
func (inf *Informer[T]) Done() <-chan struct{} { return inf.doneC }

// Err returns why the Informer stopped (its ctx's error, ErrClosed after
// Close or once the node closed), or nil while it runs. The copy stays
// readable, frozen at its last revision.
func (inf *Informer[T]) Err() error {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	return inf.err
}

// Close stops the Informer and waits for it. It is idempotent.
func (inf *Informer[T]) Close() {
	inf.cancel(ErrClosed)
	<-inf.doneC
}

// run follows the prefix: a watch from the revision after the copy's,
// and a new read when the watch falls below compaction.
func (inf *Informer[T]) run(ctx context.Context) {
	defer close(inf.doneC)
	err := inf.follow(ctx)
	if ctx.Err() != nil {
		err = context.Cause(ctx) // ErrClosed after Close
	}
	inf.mu.Lock()
	inf.err = err
	close(inf.changedC)
	close(inf.revC)
	inf.mu.Unlock()
}

func (inf *Informer[T]) follow(ctx context.Context) error {
	for {
		wc := inf.n.Watch(ctx, inf.prefix, WithPrefix(), WithRev(inf.Revision()+1), WithProgressNotify())
		compacted := false
		for resp := range wc {
			if resp.CompactRevision != 0 {
				compacted = true
				break
			}
			if err := resp.Err(); err != nil {
				return err
			}
			inf.apply(resp)
		}
		if !compacted {
			return ErrClosed // ctx ended (run says why) or the node closed
		}
		// Behind the compaction: read the state again, here (the watch
		// goes on from this node's revision).
		resp, err := inf.n.Get(ctx, inf.prefix, WithPrefix(), WithSerializable())
		if err != nil {
			return err
		}
		inf.reset(resp)
	}
}

// reset replaces the copy with a read's result.
func (inf *Informer[T]) reset(resp *GetResponse) {
	items, bad := map[string]T{}, map[string]error{}
	for _, kv := range resp.Kvs {
		inf.decodeInto(items, bad, kv)
	}
	inf.mu.Lock()
	defer inf.mu.Unlock()
	inf.items, inf.bad = items, bad
	inf.moveLocked(resp.Revision, true)
}

// apply applies one watch response: its revisions whole, at once.
func (inf *Informer[T]) apply(resp WatchResponse) {
	inf.mu.Lock()
	defer inf.mu.Unlock()
	for _, e := range resp.Events {
		if e.Type == EventTypeDelete {
			delete(inf.items, string(e.Kv.Key))
			delete(inf.bad, string(e.Kv.Key))
			continue
		}
		inf.decodeInto(inf.items, inf.bad, e.Kv)
	}
	inf.moveLocked(resp.Revision, len(resp.Events) > 0)
}

func (inf *Informer[T]) decodeInto(items map[string]T, bad map[string]error, kv *KeyValue) {
	k := string(kv.Key)
	v, err := inf.codec.Decode(kv.Value)
	if err != nil {
		delete(items, k)
		bad[k] = fmt.Errorf("%w: key %q at revision %d: %w", ErrDecode, k, kv.ModRevision, err)
		return
	}
	items[k] = v
	delete(bad, k)
}

// moveLocked records the copy's new revision and wakes waiters.
func (inf *Informer[T]) moveLocked(rev int64, changed bool) {
	if changed && inf.changedC != nil {
		close(inf.changedC)
		inf.changedC = make(chan struct{})
	}
	if rev > inf.rev {
		inf.rev = rev
		close(inf.revC)
		inf.revC = make(chan struct{})
	}
}
