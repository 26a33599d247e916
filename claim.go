package concord

import (
	"context"
	"fmt"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
)

// OpClaim returns a claim: one atomic state-machine command that takes
// the first free key of a range for its caller, the building block of
// queues and work distribution (Queue is a thin client of it).
//
// The candidates are the live keys of the range given by key and the
// options (WithPrefix, WithRange(end), WithFromKey; none = key alone) that
// start with key, in key order. Candidate K's marker is the key marker +
// K[len(key):]: under WithPrefix, "jobs/7" with key "jobs/" and marker
// "owners/" has the marker "owners/7". The first candidate whose marker
// does not exist is claimed, all at one new revision:
//   - its marker is created with value val, attached to the lease given
//     by WithLease (or WithTTL, outside a Txn), if any;
//   - K is touched: its value and lease are kept, its Version goes up by
//     one and its ModRevision becomes the claim's revision. So K.Version-1
//     counts the times K was claimed (a queue's delivery count), and a
//     watch on the range sees the claim.
//
// A marker therefore holds K for as long as it exists: delete it to give K
// back, or bind it to a session's lease so that K comes back when the
// session dies. If no candidate is free, nothing is written, the revision
// stays, and the response's Kv is nil: not an error. The scan checks the
// marker of each candidate it passes, so its cost grows with the claimed
// keys ahead of the first free one.
//
// Refused, changing nothing: an empty key (without a range) or marker
// (ErrEmptyKey); a key or marker over Config.MaxKeySize (ErrKeyTooLarge);
// markers that may fall among the candidates, i.e. marker equal to key, or
// for a range the keys starting with marker meeting the candidates' span
// (ErrInvalidRequest); a lease that does not exist, checked even when
// nothing is free (ErrLeaseNotFound); a marker that would put the lease
// over its key limits (ErrRequestTooLarge). A candidate's marker may be
// longer than Config.MaxKeySize (a marker longer than key, a long
// candidate); one over the state machine's 16 KiB key limit refuses the
// claim with ErrRequestTooLarge.
//
// Inside a Txn, the claim chooses its key against the state before the
// Txn, as compares are evaluated; a Txn that also writes the chosen key or
// its marker, or holds two claims choosing the same key, is refused with
// ErrInvalidRequest (one key written twice in one revision).
func OpClaim(key, marker, val string, opts ...OpOption) Op {
	op := Op{t: opClaim, key: []byte(key), marker: []byte(marker), val: []byte(val)}
	op.apply(opts)
	return op
}

// ClaimResponse is the result of Claim and of an OpClaim in a Txn.
type ClaimResponse struct {
	Header
	// Kv is the claimed key after the claim's touch; nil if no candidate
	// was free.
	Kv *KeyValue
	// Marker is the marker the claim created; nil if no candidate was
	// free.
	Marker *KeyValue
}

// Claim runs OpClaim(key, marker, val, opts...) alone; see OpClaim for
// what it does. Options: WithPrefix, WithRange, WithFromKey, WithLease and
// WithTTL (the marker's). As for Put, if ctx ends first the claim may
// still happen later.
func (n *Node) Claim(ctx context.Context, key, marker, val string, opts ...OpOption) (*ClaimResponse, error) {
	op := OpClaim(key, marker, val, opts...)
	resp, err := n.claim(ctx, &op)
	if err != nil {
		return nil, fmt.Errorf("concord.Claim: %w", err)
	}
	return resp, nil
}

func (n *Node) claim(ctx context.Context, op *Op) (*ClaimResponse, error) {
	if err := n.prepare(ctx, op); err != nil {
		return nil, err
	}
	n.claims.Add(1)
	resp, err := n.write(ctx, op.request())
	n.dropTTLLease(ctx, op, err, err == nil && resp.GetClaim().GetKv() == nil) // nothing free: no marker took the lease
	if err != nil {
		return nil, err
	}
	return fromClaim(n.header(resp), resp.GetClaim()), nil
}

// checkClaim validates a claim against the node's limits.
func (op *Op) checkClaim(c *Config, depth int) error {
	switch {
	case len(op.key) == 0 && len(op.end) == 0:
		return ErrEmptyKey
	case len(op.marker) == 0:
		return fmt.Errorf("%w: empty claim marker", ErrEmptyKey)
	case len(op.key) > c.MaxKeySize || len(op.marker) > c.MaxKeySize:
		return fmt.Errorf("%w: claim key of %d or marker of %d bytes, the limit is %d (Config.MaxKeySize)",
			ErrKeyTooLarge, len(op.key), len(op.marker), c.MaxKeySize)
	case len(op.val) > fsm.MaxValueSize:
		return fmt.Errorf("%w: a value of %d bytes exceeds the state machine's limit of %d", ErrRequestTooLarge, len(op.val), fsm.MaxValueSize)
	case fsm.ClaimOverlaps(op.key, op.end, op.marker):
		return fmt.Errorf("%w: claim markers %q... may fall among the candidates %q...", ErrInvalidRequest, op.marker, op.key)
	}
	return op.checkTTL(c, depth)
}

func (op *Op) claimRequest() *command.ClaimRequest {
	return &command.ClaimRequest{Key: op.key, RangeEnd: op.end, Marker: op.marker, Value: op.val, Lease: int64(op.lease)}
}

func fromClaim(h Header, r *command.ClaimResponse) *ClaimResponse {
	return &ClaimResponse{Header: h, Kv: fromKV(r.GetKv()), Marker: fromKV(r.GetMarker())}
}
