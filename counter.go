package concord

import (
	"context"
	"fmt"
	"strconv"

	"github.com/concordkv/concord/internal/command"
)

// OpAdd returns an atomic add of delta to the integer held by key: the
// value is a base-10 int64 in ASCII, and a missing key or an empty value
// counts as 0. It stores the sum and returns it (AddResponse.Value), at
// one new revision, so concurrent adds from any node never lose an update
// and each sees the sum it made. The key keeps its lease, unless
// WithLease gives one (WithTTL is refused, as for any op in a Txn).
//
// Refused, changing nothing: an empty key (ErrEmptyKey), a key over
// Config.MaxKeySize (ErrKeyTooLarge), a value that is not such an integer
// or a sum that overflows int64 (ErrInvalidRequest), an unknown lease
// (ErrLeaseNotFound). In a Txn, an OpAdd reads the state before the Txn,
// and a Txn that also writes its key is refused with ErrInvalidRequest.
func OpAdd(key string, delta int64, opts ...OpOption) Op {
	op := Op{t: opAdd, key: []byte(key), delta: delta}
	op.apply(opts)
	return op
}

// AddResponse is the result of an OpAdd and of Counter.Add.
type AddResponse struct {
	Header
	// Value is the key's new value.
	Value int64
	// Kv is the key after the add.
	Kv *KeyValue
}

// Counter is a shared int64 held by one key, as OpAdd stores it. Any
// number of Counters, on any nodes, may share the key.
type Counter struct {
	n   *Node
	key string
}

// NewCounter returns the counter held by key. It does not touch the
// store: a key that does not exist reads as 0.
func NewCounter(n *Node, key string) *Counter { return &Counter{n: n, key: key} }

// Key returns the counter's key.
func (c *Counter) Key() string { return c.key }

// Add adds delta (which may be negative or 0) to the counter and returns
// the new value: one atomic state-machine command, so concurrent Adds
// from any nodes are applied one after the other and none is lost (with
// positive deltas, every Add returns a distinct value). Errors are
// OpAdd's; if ctx ends first the add may still happen later.
func (c *Counter) Add(ctx context.Context, delta int64) (int64, error) {
	resp, err := c.add(ctx, delta)
	if err != nil {
		return 0, fmt.Errorf("concord.Counter.Add: %w", err)
	}
	return resp.Value, nil
}

func (c *Counter) add(ctx context.Context, delta int64) (*AddResponse, error) {
	n := c.n
	op := OpAdd(c.key, delta)
	if err := n.prepare(ctx, &op); err != nil {
		return nil, err
	}
	resp, err := n.write(ctx, op.request())
	n.dropTTLLease(ctx, &op, err, false)
	if err != nil {
		return nil, err
	}
	return fromAdd(n.header(resp), resp.GetAdd()), nil
}

// Load returns the counter's value with a linearizable read (0 if its key
// does not exist). A value that is not a base-10 int64 gets an error
// wrapping ErrDecode.
func (c *Counter) Load(ctx context.Context) (int64, error) {
	resp, err := c.n.Get(ctx, c.key)
	if err != nil {
		return 0, fmt.Errorf("concord.Counter.Load: %w", err)
	}
	if len(resp.Kvs) == 0 || len(resp.Kvs[0].Value) == 0 {
		return 0, nil
	}
	v, err := strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("concord.Counter.Load: %w: %q holds %q", ErrDecode, c.key, resp.Kvs[0].Value)
	}
	return v, nil
}

// checkAdd validates an add against the node's limits.
func (op *Op) checkAdd(c *Config, depth int) error {
	switch {
	case len(op.key) == 0:
		return ErrEmptyKey
	case len(op.key) > c.MaxKeySize:
		return fmt.Errorf("%w: %d bytes, the limit is %d (Config.MaxKeySize)", ErrKeyTooLarge, len(op.key), c.MaxKeySize)
	}
	return op.checkTTL(c, depth)
}

func (op *Op) addRequest() *command.AddRequest {
	return &command.AddRequest{Key: op.key, Delta: op.delta, Lease: int64(op.lease)}
}

func fromAdd(h Header, r *command.AddResponse) *AddResponse {
	return &AddResponse{Header: h, Value: r.GetValue(), Kv: fromKV(r.GetKv())}
}
