package concord

import (
	"context"
	"encoding/json"
	"fmt"
)

// Codec turns values of T into the bytes stored under a key, and back.
type Codec[T any] interface {
	Encode(T) ([]byte, error)
	Decode([]byte) (T, error)
}

// JSON returns the Codec that stores values as encoding/json does.
func JSON[T any]() Codec[T] { return jsonCodec[T]{} }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Encode(v T) ([]byte, error) { return json.Marshal(v) }

func (jsonCodec[T]) Decode(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// TypedEvent is one change of a key watched with WatchTyped.
type TypedEvent[T any] struct {
	Type EventType
	Key  string
	// Value is the decoded value after a put; the zero T after a delete
	// or when Err is set.
	Value T
	// Revision is the change's revision, or, for an event ending the
	// watch, the compact revision (ErrCompacted) or the revision reached.
	Revision int64
	// Err is set when the value does not decode (an error wrapping
	// ErrDecode; the watch goes on), or on the last event of a watch that
	// was canceled (an error wrapping ErrCompacted, for one).
	Err error
}

// WatchTyped is Node.Watch with values decoded by c (JSON[T]() if nil):
// one TypedEvent per change, in revision order. Progress notifications
// and creation notices are left out. A value that fails to decode arrives
// as an event with Err set and the watch goes on; a canceled watch sends
// an event with Err (and no Key) last. The channel closes as Watch's does.
func WatchTyped[T any](ctx context.Context, n *Node, key string, c Codec[T], opts ...OpOption) <-chan TypedEvent[T] {
	if c == nil {
		c = JSON[T]()
	}
	in := n.Watch(ctx, key, opts...)
	out := make(chan TypedEvent[T])
	relay := func() {
		defer close(out)
		for resp := range in {
			for _, e := range resp.Events {
				if !sendCtx(ctx, n, out, typedEvent(c, e)) {
					return
				}
			}
			if err := resp.Err(); err != nil {
				rev := resp.Revision
				if resp.CompactRevision != 0 {
					rev = resp.CompactRevision
				}
				sendCtx(ctx, n, out, TypedEvent[T]{Revision: rev, Err: err})
			}
		}
	}
	if err := n.spawn(relay); err != nil {
		c := make(chan TypedEvent[T], 1)
		c <- TypedEvent[T]{Err: fmt.Errorf("concord.WatchTyped: %w", err)}
		close(c)
		return c
	}
	return out
}

func typedEvent[T any](c Codec[T], e *Event) TypedEvent[T] {
	te := TypedEvent[T]{Type: e.Type, Key: string(e.Kv.Key), Revision: e.Kv.ModRevision}
	if e.Type == EventTypePut {
		v, err := c.Decode(e.Kv.Value)
		if err != nil {
			te.Err = fmt.Errorf("%w: key %q at revision %d: %w", ErrDecode, e.Kv.Key, e.Kv.ModRevision, err)
		} else {
			te.Value = v
		}
	}
	return te
}

// sendCtx sends v on out unless ctx ends or the node closes first.
func sendCtx[V any](ctx context.Context, n *Node, out chan<- V, v V) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case out <- v:
		return true
	case <-ctx.Done():
	case <-n.closingC:
	}
	return false
}

// optionCodec returns the codec a primitive's codec option set: JSON when
// c is nil, c when it is a Codec[T], and otherwise a codec that refuses
// every value with an error wrapping ErrInvalidRequest (an option of the
// wrong type is bad input, reported by every call that needs the codec).
func optionCodec[T any](c any, option string) Codec[T] {
	switch c := c.(type) {
	case nil:
		return JSON[T]()
	case Codec[T]:
		return c
	default:
		var zero T
		return wrongCodec[T]{fmt.Errorf("%w: %s: codec %T is not a Codec[%T]", ErrInvalidRequest, option, c, zero)}
	}
}

type wrongCodec[T any] struct{ err error }

// codecErr returns the error of a codec optionCodec made for an option of
// the wrong type, and nil for any other codec: for the calls that need
// the codec only to decode, and must not wait for a value to find out.
func codecErr[T any](c Codec[T]) error {
	if w, ok := c.(wrongCodec[T]); ok {
		return w.err
	}
	return nil
}

func (w wrongCodec[T]) Encode(T) ([]byte, error) { return nil, w.err }
func (w wrongCodec[T]) Decode([]byte) (T, error) {
	var zero T
	return zero, w.err
}
