package concord

import (
	"context"
	"fmt"
	"sync"
)

// VarOption configures NewVar.
type VarOption func(*varOptions)

type varOptions struct {
	codec any // a Codec[T] of the Var's T
	def   any // a T
}

// WithVarCodec sets the Codec of the value. Default JSON[T](). Its T must
// be the Var's, or NewVar fails with ErrInvalidRequest.
func WithVarCodec[T any](c Codec[T]) VarOption {
	return func(o *varOptions) { o.codec = c }
}

// WithVarDefault sets the value a Var holds while its key does not exist
// (instead of the zero T). Its T must be the Var's, or NewVar fails with
// ErrInvalidRequest.
func WithVarDefault[T any](v T) VarOption {
	return func(o *varOptions) { o.def = v }
}

// Var is one key's value, decoded, kept current on this node by a watch:
// a piece of shared config. Load reads it with no round trip; Changes
// tells when it moves; Store and Update write it, from any node, and every
// Var of the key on every node follows.
//
// The value only moves forward: Load's revision never goes down. While
// the key does not exist the Var holds the zero T, or WithVarDefault's
// value. A value that does not decode (stored with another codec) is not
// taken: the Var keeps its last good value and Invalid reports the error.
//
// Values are shared: the one Load returns is the one Changes sends, and
// Update's fn is given it. Treat them as read-only (copy slices and maps
// before changing them).
type Var[T any] struct {
	n        *Node
	key      string
	codec    Codec[T]
	def      T
	cancel   context.CancelCauseFunc
	doneC    chan struct{}
	changesC chan T // capacity 1: holds the latest change not yet read

	mu   sync.RWMutex
	val  T             // guarded by mu
	rev  int64         // guarded by mu: revision of the change that set val; 0 if none seen
	mod  int64         // guarded by mu: the key's ModRevision; 0 while it does not exist
	seen int64         // guarded by mu: store revision the watch has reached
	bad  error         // guarded by mu: why the key's current value does not decode
	err  error         // guarded by mu: why the Var stopped
	revC chan struct{} // guarded by mu: closed when seen next moves
}

// NewVar reads key's current value with a linearizable Get and returns a
// Var that follows it from there, until ctx ends, Close is called or the
// node closes; ctx also bounds the first read, whose error is returned. A
// current value that does not decode fails NewVar with an error wrapping
// ErrDecode.
func NewVar[T any](ctx context.Context, n *Node, key string, opts ...VarOption) (*Var[T], error) {
	v, err := newVar[T](n, key, opts)
	if err != nil {
		return nil, fmt.Errorf("concord.NewVar: %w", err)
	}
	resp, err := n.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("concord.NewVar: %w", err)
	}
	if err := v.start(ctx, resp); err != nil {
		return nil, fmt.Errorf("concord.NewVar: %w", err)
	}
	return v, nil
}

// start takes the state read in resp and follows the key from there.
func (v *Var[T]) start(ctx context.Context, resp *GetResponse) error {
	v.reset(resp)
	if v.bad != nil {
		return v.bad
	}
	select {
	case <-v.changesC: // the first value is not a change
	default:
	}
	ctx, v.cancel = context.WithCancelCause(ctx)
	if err := v.n.spawn(func() { v.run(ctx) }); err != nil {
		v.cancel(err)
		return err
	}
	return nil
}

func newVar[T any](n *Node, key string, opts []VarOption) (*Var[T], error) {
	if key == "" {
		return nil, ErrEmptyKey
	}
	var o varOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	v := &Var[T]{
		n: n, key: key, codec: JSON[T](),
		doneC: make(chan struct{}), changesC: make(chan T, 1), revC: make(chan struct{}),
	}
	var zero T
	switch c := o.codec.(type) {
	case nil:
	case Codec[T]:
		v.codec = c
	default:
		return nil, fmt.Errorf("%w: var codec %T does not encode %T", ErrInvalidRequest, o.codec, zero)
	}
	switch d := o.def.(type) {
	case nil:
	case T:
		v.def = d
	default:
		return nil, fmt.Errorf("%w: var default %T is not a %T", ErrInvalidRequest, o.def, zero)
	}
	v.val = v.def
	return v, nil
}

// Load returns the value and the revision of the change that set it: the
// key's ModRevision, or for a delete its revision (or a later one, if the
// Var learnt of it by reading the key again after a compaction); 0 if the
// key did not exist when the Var was made and has not been written since.
// It makes no round trip: it is as current as this node's copy.
func (v *Var[T]) Load() (T, int64) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.val, v.rev
}

// Changes returns the channel of the Var's new values, as the key changes
// after NewVar (a delete brings the default), oldest first. It coalesces:
// it holds only the latest value not read yet, so a reader that falls
// behind skips to the latest value and never slows the Var or the store.
// There is one channel for all callers; it closes when the Var stops.
func (v *Var[T]) Changes() <-chan T { return v.changesC }

// Invalid returns why the key's current value does not decode (an error
// wrapping ErrDecode), or nil. While it is set, Load returns the last
// value that decoded.
func (v *Var[T]) Invalid() error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.bad
}

// Store writes val to the key, and returns once this Var holds it (or a
// later value): a Load after Store sees it. A stopped Var writes nothing
// and returns its Err.
func (v *Var[T]) Store(ctx context.Context, val T) error {
	if err := v.Err(); err != nil {
		return fmt.Errorf("concord.Var.Store: %w", err)
	}
	b, err := v.codec.Encode(val)
	if err != nil {
		return fmt.Errorf("concord.Var.Store: %w: encode: %w", ErrInvalidRequest, err)
	}
	resp, err := v.n.Put(ctx, v.key, string(b))
	if err != nil {
		return fmt.Errorf("concord.Var.Store: %w", err)
	}
	if err := v.waitSeen(ctx, resp.Revision); err != nil {
		return fmt.Errorf("concord.Var.Store: %w", err)
	}
	return nil
}

// Update sets the value to fn(current) atomically: it writes only if the
// key has not changed since the value fn was given, and otherwise calls
// fn again with the newer value. fn may be called several times and must
// not have side effects; an error from it ends Update, writing nothing.
// It returns the value written, once this Var holds it. A stopped Var
// writes nothing and returns its Err.
func (v *Var[T]) Update(ctx context.Context, fn func(T) (T, error)) (T, error) {
	var zero T
	if err := v.Err(); err != nil {
		return zero, fmt.Errorf("concord.Var.Update: %w", err)
	}
	v.mu.RLock()
	cur, mod := v.val, v.mod
	v.mu.RUnlock()
	for {
		next, err := fn(cur)
		if err != nil {
			return zero, fmt.Errorf("concord.Var.Update: %w", err)
		}
		b, err := v.codec.Encode(next)
		if err != nil {
			return zero, fmt.Errorf("concord.Var.Update: %w: encode: %w", ErrInvalidRequest, err)
		}
		// A missing key compares as ModRevision 0.
		resp, err := v.n.Txn(ctx).
			If(Compare(ModRevision(v.key), "=", mod)).
			Then(OpPut(v.key, string(b))).
			Else(OpGet(v.key)).
			Commit()
		if err != nil {
			return zero, fmt.Errorf("concord.Var.Update: %w", err)
		}
		if resp.Succeeded {
			if err := v.waitSeen(ctx, resp.Revision); err != nil {
				return zero, fmt.Errorf("concord.Var.Update: %w", err)
			}
			return next, nil
		}
		if cur, mod, err = v.decodeGet(resp.Responses[0].Get()); err != nil {
			return zero, fmt.Errorf("concord.Var.Update: %w", err)
		}
	}
}

// Done returns a channel closed when the Var stops following the key; Err
// then says why.
func (v *Var[T]) Done() <-chan struct{} { return v.doneC }

// Err returns why the Var stopped (its ctx's error, ErrClosed after Close
// or once the node closed), or nil while it runs. Load goes on returning
// the last value.
func (v *Var[T]) Err() error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.err
}

// Close stops the Var and waits for it. It is idempotent.
func (v *Var[T]) Close() {
	v.cancel(ErrClosed)
	<-v.doneC
}
