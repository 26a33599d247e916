package concord

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// ErrStaleToken is returned by Fence.Do for a token below the highest one
// the fence has accepted: its holder lost the lock to a newer one.
var ErrStaleToken = errors.New("concord: stale fencing token")

// fenceDigits zero-pads tokens so that their values compare as numbers
// (a Value compare is bytewise).
const fenceDigits = 20

// Fence lets a resource in the store reject writes from a lock holder that
// lost the lock without knowing it (a pause, a partition): the fencing of
// Kleppmann's "How to do distributed locking". The fence key records the
// highest token accepted; Do runs the caller's ops only if its token is at
// least that, and records it, in one Txn.
//
// Use the token of a Mutex (Token) or of an Election leader. After taking
// the lock, call Do once with no ops before reading the resource: from
// then on, writes of every earlier holder are refused, even those already
// on their way.
type Fence struct {
	n   *Node
	key string
}

// NewFence returns the fence whose token is kept in key.
func NewFence(n *Node, key string) *Fence { return &Fence{n: n, key: key} }

// Key returns the fence key.
func (f *Fence) Key() string { return f.key }

// Do runs ops in one Txn if token is at least the highest token accepted
// so far (equal: the same holder writes again), recording it. It returns
// the responses of ops (Header of the txn, Responses one per op). A lower
// token changes nothing and gets an error wrapping ErrStaleToken; a token
// <= 0 gets ErrInvalidRequest. ops must not write the fence key.
func (f *Fence) Do(ctx context.Context, token int64, ops ...Op) (*TxnResponse, error) {
	resp, err := f.do(ctx, token, ops)
	if err != nil {
		return nil, fmt.Errorf("concord.Fence.Do: %w", err)
	}
	return resp, nil
}

func (f *Fence) do(ctx context.Context, token int64, ops []Op) (*TxnResponse, error) {
	if token <= 0 {
		return nil, fmt.Errorf("%w: token %d, want > 0", ErrInvalidRequest, token)
	}
	then := append([]Op{OpPut(f.key, fenceValue(token))}, ops...)
	// A Value compare on a missing key is false: the first token goes
	// through the Version = 0 branch. The inner txn succeeds for a stale
	// token (the recorded one is greater), and writes in its Else.
	resp, err := f.n.Txn(ctx).
		If(Compare(Version(f.key), "=", 0)).
		Then(then...).
		Else(OpTxn([]Cmp{Compare(Value(f.key), ">", fenceValue(token))}, []Op{OpGet(f.key)}, then)).
		Commit()
	if err != nil {
		return nil, err
	}
	out := &TxnResponse{Header: resp.Header, Succeeded: true}
	switch inner := resp.Responses[0].Txn(); {
	case resp.Succeeded:
		out.Responses = resp.Responses[1:]
	case !inner.Succeeded:
		out.Responses = inner.Responses[1:]
	default:
		last := "?"
		if kvs := inner.Responses[0].Get().Kvs; len(kvs) > 0 {
			last = string(kvs[0].Value)
			if v, err := strconv.ParseInt(last, 10, 64); err == nil {
				last = strconv.FormatInt(v, 10)
			}
		}
		return nil, fmt.Errorf("%w: token %d is below %s, accepted by %q", ErrStaleToken, token, last, f.key)
	}
	return out, nil
}

// Token returns the highest token the fence accepted, 0 if none.
func (f *Fence) Token(ctx context.Context) (int64, error) {
	resp, err := f.n.Get(ctx, f.key)
	if err != nil {
		return 0, fmt.Errorf("concord.Fence.Token: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	v, err := strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("concord.Fence.Token: %w: fence key %q holds %q", ErrDecode, f.key, resp.Kvs[0].Value)
	}
	return v, nil
}

func fenceValue(token int64) string { return fmt.Sprintf("%0*d", fenceDigits, token) }
