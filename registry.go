package concord

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// RegistryOption configures NewRegistry.
type RegistryOption func(*registryOptions)

type registryOptions struct {
	codec any // a Codec[T] of the Registry's T
}

// WithRegistryCodec sets the Codec of the instances' values. Default
// JSON[T](). Its T must be the Registry's: any other type makes every
// call of the Registry fail with ErrInvalidRequest.
func WithRegistryCodec[T any](c Codec[T]) RegistryOption {
	return func(o *registryOptions) { o.codec = c }
}

// Registry is service discovery: the live instances of one service, each
// a name and a value of T (an address, a struct of endpoints and
// metadata), kept under the key prefix service + "/" (instance i of
// "svc/api" is the key "svc/api/i"). An instance is registered with a
// Session and attached to its lease, so it vanishes when the process that
// registered it dies or loses the cluster for a whole session TTL, with
// no one having to clean up. Keys deeper under the prefix (those of a
// service "svc/api/v2") are not this Registry's instances.
type Registry[T any] struct {
	n      *Node
	prefix string
	codec  Codec[T]
	err    error // a bad service name or codec: every call returns it
}

// NewRegistry returns the Registry of service on n. A bad service name
// (empty) or a codec of another type is reported by every call.
func NewRegistry[T any](n *Node, service string, opts ...RegistryOption) *Registry[T] {
	var o registryOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	r := &Registry[T]{n: n, prefix: service + "/", codec: JSON[T]()}
	switch c := o.codec.(type) {
	case nil:
	case Codec[T]:
		r.codec = c
	default:
		var zero T
		r.err = fmt.Errorf("%w: registry codec %T does not encode %T", ErrInvalidRequest, o.codec, zero)
	}
	if service == "" {
		r.err = fmt.Errorf("%w: registry service name", ErrEmptyKey)
	}
	return r
}

// Register adds instance, with value v, attached to s's lease: it stays
// until Deregister, or until s ends (Close, or its lease revoked or
// expired: the process died), whichever comes first. Registering an
// instance again replaces its value (and its session, if s is another
// one). A session that has ended gives an error wrapping
// ErrSessionExpired and writes nothing; an instance name that is empty or
// holds a "/" gives ErrEmptyKey or ErrInvalidRequest.
func (r *Registry[T]) Register(ctx context.Context, s *Session, instance string, v T) error {
	key, err := r.key(instance)
	if err != nil {
		return fmt.Errorf("concord.Registry.Register: %w", err)
	}
	b, err := r.codec.Encode(v)
	if err != nil {
		return fmt.Errorf("concord.Registry.Register: %w: encode: %w", ErrInvalidRequest, err)
	}
	select {
	case <-s.Done():
		return fmt.Errorf("concord.Registry.Register: %w", s.expired())
	default:
	}
	if _, err := r.n.Put(ctx, key, string(b), WithLease(s.Lease())); err != nil {
		if errors.Is(err, ErrLeaseNotFound) {
			err = fmt.Errorf("%w: %w", ErrSessionExpired, err)
		}
		return fmt.Errorf("concord.Registry.Register: %w", err)
	}
	return nil
}

// Deregister removes instance if s registered it. An instance registered
// by another session (a newer process under the same name) is left
// alone, and an instance not registered is not an error.
func (r *Registry[T]) Deregister(ctx context.Context, s *Session, instance string) error {
	key, err := r.key(instance)
	if err != nil {
		return fmt.Errorf("concord.Registry.Deregister: %w", err)
	}
	_, err = r.n.Txn(ctx).If(Compare(LeaseValue(key), "=", s.Lease())).Then(OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("concord.Registry.Deregister: %w", err)
	}
	return nil
}

// Instances returns the registered instances, by name, with a
// linearizable read: every registration acknowledged before the call is
// in it, and none that ended before it.
//
// Values that do not decode are left out of the map, and reported: the
// error then wraps ErrDecode and names each of them, and the map still
// holds the others. Any other error comes with a nil map.
func (r *Registry[T]) Instances(ctx context.Context) (map[string]T, error) {
	if r.err != nil {
		return nil, fmt.Errorf("concord.Registry.Instances: %w", r.err)
	}
	resp, err := r.n.Get(ctx, r.prefix, WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("concord.Registry.Instances: %w", err)
	}
	out := make(map[string]T, len(resp.Kvs))
	var errs []error
	for _, kv := range resp.Kvs {
		name, ok := r.name(string(kv.Key))
		if !ok {
			continue
		}
		v, err := r.codec.Decode(kv.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: instance %q at revision %d: %w", ErrDecode, name, kv.ModRevision, err))
			continue
		}
		out[name] = v
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("concord.Registry.Instances: %w", errors.Join(errs...))
	}
	return out, nil
}

// RegistrySnapshot is the state of a Registry at one revision.
type RegistrySnapshot[T any] struct {
	// Instances are the registered instances whose value decodes.
	Instances map[string]T
	// Invalid are the instances whose value does not decode, with the
	// decoding errors (each wraps ErrDecode); nil if none.
	Invalid map[string]error
	// Revision is the store revision this is the state of.
	Revision int64
}

// Watch sends the full set of instances on each change: first the current
// set (as Instances would read it), then the new set after each change,
// each one whole, the state at one revision. It never blocks the store: a
// reader that falls behind skips the sets it missed and gets the latest.
// Values that do not decode are left out; WatchSnapshots reports them.
// The values in the maps are shared by every set: treat them as
// read-only.
// The channel closes when ctx ends or the node closes, and at once if the
// registry is invalid (see NewRegistry) or the first read fails.
func (r *Registry[T]) Watch(ctx context.Context) <-chan map[string]T {
	return registryWatch(ctx, r, func(s RegistrySnapshot[T]) map[string]T { return s.Instances })
}

// WatchSnapshots is Watch with each set's revision and the instances
// whose value does not decode.
func (r *Registry[T]) WatchSnapshots(ctx context.Context) <-chan RegistrySnapshot[T] {
	return registryWatch(ctx, r, func(s RegistrySnapshot[T]) RegistrySnapshot[T] { return s })
}

// registryWatch follows r with an Informer and sends conv of its latest
// state on out at each change, replacing a state the reader has not taken
// yet by the newer one.
func registryWatch[T, O any](ctx context.Context, r *Registry[T], conv func(RegistrySnapshot[T]) O) <-chan O {
	out := make(chan O)
	if r.err != nil {
		close(out)
		return out
	}
	run := func() {
		defer close(out)
		inf, err := NewInformer(ctx, r.n, r.prefix, r.codec)
		if err != nil {
			return
		}
		defer inf.Close()
		for {
			changed := inf.Changed()
			snap := conv(r.snapshot(inf))
			select {
			case out <- snap:
			case <-changed:
				continue // a newer state to send instead
			case <-inf.Done():
				return
			}
			select {
			case <-changed:
			case <-inf.Done():
				return
			}
		}
	}
	if err := r.n.spawn(run); err != nil {
		close(out)
	}
	return out
}

// snapshot returns inf's state, keyed by instance name.
func (r *Registry[T]) snapshot(inf *Informer[T]) RegistrySnapshot[T] {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	s := RegistrySnapshot[T]{Instances: make(map[string]T, len(inf.items)), Revision: inf.rev}
	for k, v := range inf.items {
		if name, ok := r.name(k); ok {
			s.Instances[name] = v
		}
	}
	for k, err := range inf.bad {
		if name, ok := r.name(k); ok {
			if s.Invalid == nil {
				s.Invalid = map[string]error{}
			}
			s.Invalid[name] = err
		}
	}
	return s
}

// name returns the instance name of key, a key under r's prefix; keys
// deeper down (those of a service "svc/x" under "svc") are not r's.
func (r *Registry[T]) name(key string) (string, bool) {
	name := key[len(r.prefix):]
	return name, !strings.Contains(name, "/")
}

// key returns instance's key, or why it is not a valid instance name.
func (r *Registry[T]) key(instance string) (string, error) {
	switch {
	case r.err != nil:
		return "", r.err
	case instance == "":
		return "", fmt.Errorf("%w: registry instance name", ErrEmptyKey)
	case strings.Contains(instance, "/"):
		return "", fmt.Errorf("%w: registry instance name %q holds a /", ErrInvalidRequest, instance)
	}
	return r.prefix + instance, nil
}
