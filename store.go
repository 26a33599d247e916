package concord

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
)

// Put sets key to val and returns once the write is committed on a quorum
// and applied on this node. Options: WithPrevKV, WithIgnoreValue,
// WithLease, WithIgnoreLease, WithTTL.
//
// Bad input (an empty key, a key over Config.MaxKeySize, a request over
// Config.MaxRequestBytes) is refused before anything is proposed. If ctx
// ends first the put may still happen later; a deadline gives an error
// that is both ErrTimeout and context.DeadlineExceeded.
//
// In the rare case where this node learned of its own put through a
// snapshot, the put happened exactly once but its result was not seen
// here: a plain Put then returns a header with the node's current
// revision (at or above the put's), while a Put with WithPrevKV,
// WithIgnoreValue or WithIgnoreLease returns ErrResultUnknown.
func (n *Node) Put(ctx context.Context, key, val string, opts ...OpOption) (*PutResponse, error) {
	op := OpPut(key, val, opts...)
	resp, err := n.put(ctx, &op)
	if err != nil {
		return nil, fmt.Errorf("concord.Put: %w", err)
	}
	return resp, nil
}

func (n *Node) put(ctx context.Context, op *Op) (*PutResponse, error) {
	if err := n.prepare(ctx, op); err != nil {
		return nil, err
	}
	resp, err := n.write(ctx, op.request())
	n.dropTTLLease(ctx, op, err, false)
	if errors.Is(err, ErrResultUnknown) && !op.prevKV && !op.ignoreValue && !op.ignoreLease {
		// A validated plain put cannot be refused by the state machine:
		// it was applied.
		return &PutResponse{Header: n.localHeader()}, nil
	}
	if err != nil {
		return nil, err
	}
	return fromPut(n.header(resp), resp.GetPut()), nil
}

// Get reads key, or a range of keys with WithPrefix, WithRange or
// WithFromKey. It is linearizable: it sees every write acknowledged
// before it was called, on any node (a ReadIndex round, shared by
// concurrent reads, then a local read). WithSerializable skips the round.
// Other options: WithRev, WithLimit, WithSort, WithKeysOnly, WithCountOnly.
//
// A missing key is not an error: Kvs is empty.
func (n *Node) Get(ctx context.Context, key string, opts ...OpOption) (*GetResponse, error) {
	op := OpGet(key, opts...)
	resp, err := n.get(ctx, &op)
	if err != nil {
		return nil, fmt.Errorf("concord.Get: %w", err)
	}
	return resp, nil
}

func (n *Node) get(ctx context.Context, op *Op) (*GetResponse, error) {
	if err := n.alive(); err != nil {
		return nil, err
	}
	if err := op.check(&n.cfg, 0); err != nil {
		return nil, err
	}
	return n.read(ctx, op.rangeRequest())
}

// Delete deletes key, or a range of keys with WithPrefix, WithRange or
// WithFromKey, and returns how many it deleted (with their previous state
// with WithPrevKV). Deleting nothing is not an error and creates no
// revision. All the keys go in one revision, so a range holds at most
// about 3,000 keys (fewer with long keys): a larger one gets
// ErrRequestTooLarge and nothing is deleted (unlike etcd, which has no
// such limit); delete it in parts, with WithLimit'd Gets or narrower
// ranges.
//
// If this node learned of its own delete through a snapshot (see Put), it
// returns ErrResultUnknown: the delete happened exactly once.
func (n *Node) Delete(ctx context.Context, key string, opts ...OpOption) (*DeleteResponse, error) {
	op := OpDelete(key, opts...)
	resp, err := n.del(ctx, &op)
	if err != nil {
		return nil, fmt.Errorf("concord.Delete: %w", err)
	}
	return resp, nil
}

func (n *Node) del(ctx context.Context, op *Op) (*DeleteResponse, error) {
	if err := n.prepare(ctx, op); err != nil {
		return nil, err
	}
	resp, err := n.write(ctx, op.request())
	if err != nil {
		return nil, err
	}
	return fromDelete(n.header(resp), resp.GetDeleteRange()), nil
}

// Compact discards the history below revision rev: reads at revisions
// below it fail with ErrCompacted afterwards. A rev at or below the
// current compact revision gets ErrCompacted, one above the current
// revision ErrFutureRev, a negative one ErrInvalidRevision.
func (n *Node) Compact(ctx context.Context, rev int64) error {
	if err := n.compact(ctx, rev); err != nil {
		return fmt.Errorf("concord.Compact: %w", err)
	}
	return nil
}

func (n *Node) compact(ctx context.Context, rev int64) error {
	if err := n.alive(); err != nil {
		return err
	}
	if rev < 0 {
		return fmt.Errorf("%w: %d", ErrInvalidRevision, rev)
	}
	req := &command.Request{Request: &command.Request_Compaction{Compaction: &command.CompactionRequest{Revision: rev}}}
	_, err := n.write(ctx, req)
	if errors.Is(err, ErrResultUnknown) && n.fsm.CompactRevision() >= rev {
		return nil // the history below rev is gone either way
	}
	return err
}

// Create puts key=val only if key does not exist, else it returns
// ErrKeyExists and changes nothing. Options are Put's.
func (n *Node) Create(ctx context.Context, key, val string, opts ...OpOption) (*PutResponse, error) {
	resp, err := n.putIf(ctx, CreateRevision(key), 0, OpPut(key, val, opts...), ErrKeyExists)
	if err != nil {
		return nil, fmt.Errorf("concord.Create: %w", err)
	}
	return resp, nil
}

// CompareAndSwap puts key=new only if key's value is old, else it returns
// ErrCompareFailed (a missing key included) and changes nothing. Options
// are Put's.
func (n *Node) CompareAndSwap(ctx context.Context, key, old, new string, opts ...OpOption) (*PutResponse, error) {
	resp, err := n.putIf(ctx, Value(key), old, OpPut(key, new, opts...), ErrCompareFailed)
	if err != nil {
		return nil, fmt.Errorf("concord.CompareAndSwap: %w", err)
	}
	return resp, nil
}

// putIf runs put if cmp = v, else fails with failErr.
func (n *Node) putIf(ctx context.Context, cmp Cmp, v any, put Op, failErr error) (*PutResponse, error) {
	if err := n.prepare(ctx, &put); err != nil {
		return nil, err
	}
	op := OpTxn([]Cmp{Compare(cmp, "=", v)}, []Op{put}, nil)
	resp, err := n.commitTxn(ctx, &op)
	if err == nil && !resp.Succeeded {
		err = failErr
	}
	n.dropTTLLease(ctx, &put, err, false)
	if err != nil {
		return nil, err
	}
	return resp.Responses[0].Put(), nil
}

// CompareAndDelete deletes key only if its value is old, else it returns
// ErrCompareFailed (a missing key included) and changes nothing.
func (n *Node) CompareAndDelete(ctx context.Context, key, old string) (*DeleteResponse, error) {
	resp, err := n.compareAndDelete(ctx, key, old)
	if err != nil {
		return nil, fmt.Errorf("concord.CompareAndDelete: %w", err)
	}
	return resp, nil
}

func (n *Node) compareAndDelete(ctx context.Context, key, old string) (*DeleteResponse, error) {
	if err := n.alive(); err != nil {
		return nil, err
	}
	op := OpTxn([]Cmp{Compare(Value(key), "=", old)}, []Op{OpDelete(key)}, nil)
	resp, err := n.commitTxn(ctx, &op)
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		return nil, ErrCompareFailed
	}
	return resp.Responses[0].Del(), nil
}

// ttlLease turns op's WithTTL into a lease of its own, granted now: the
// key goes ttl after this put, unless put again. Call it once op is
// checked.
// prepare readies a single write op for proposal: the node must be open,
// the op valid (nothing is proposed otherwise), and a WithTTL op gets its
// lease granted.
func (n *Node) prepare(ctx context.Context, op *Op) error {
	if err := n.alive(); err != nil {
		return err
	}
	if err := op.check(&n.cfg, 0); err != nil {
		return err
	}
	return n.ttlLease(ctx, op)
}

func (n *Node) ttlLease(ctx context.Context, op *Op) error {
	if !op.hasTTL {
		return nil
	}
	id, err := n.grant(ctx, op.ttl)
	if err != nil {
		return err
	}
	op.lease, op.hasTTL, op.granted = id, false, true
	return nil
}

// ttlLeaseTimeout bounds the revoke of a lease ttlLease granted for a
// write that was refused (the caller's ctx may be over).
const ttlLeaseTimeout = 5 * time.Second

// dropTTLLease revokes the lease ttlLease granted for op when the write
// did not and never will happen (err is a refusal, or unused is set):
// no key is attached to it. Best effort: a lease left behind expires.
func (n *Node) dropTTLLease(ctx context.Context, op *Op, err error, unused bool) {
	if !op.granted || !(unused || refused(err)) {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttlLeaseTimeout)
	defer cancel()
	_ = n.revoke(rctx, op.lease)
}

// refused tells whether err is a definite refusal of a write: the state
// machine's (or a failed compare), not an unknown outcome.
func refused(err error) bool {
	if err == nil || errors.Is(err, ErrResultUnknown) {
		return false
	}
	for _, e := range []error{ErrCompareFailed, ErrKeyExists, ErrKeyNotFound, ErrLeaseNotFound, ErrRequestTooLarge, ErrInvalidRequest, ErrCompacted, ErrFutureRev} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// localHeader is a header for a write whose result is unknown: the
// node's current committed revision.
func (n *Node) localHeader() Header {
	return Header{Revision: n.fsm.Revision(), RaftTerm: n.rn.Status().Term, MemberID: n.id}
}

// readLocal reads one key's metadata, and the revision of the state it
// was read from, without a raft round.
func (n *Node) readLocal(key []byte) (rev int64, kv *command.KeyValue, err error) {
	err = n.view(func(txn *badger.Txn) error {
		resp, err := n.fsm.Range(txn, &command.RangeRequest{Key: key, KeysOnly: true})
		if err != nil {
			return err
		}
		if err := codeErr(resp); err != nil {
			return err
		}
		rev = resp.GetRevision()
		if kvs := resp.GetRange().GetKvs(); len(kvs) > 0 {
			kv = kvs[0]
		}
		return nil
	})
	return rev, kv, err
}
