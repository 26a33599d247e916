package concord

import (
	"context"
	"fmt"
	"hash/maphash"
	"strings"
)

// seqDigits is the width of PutSequential's zero-padded numbers: enough
// for any int64.
const seqDigits = 20

// sequenceMarker returns the key PutSequential keeps beside the keys of
// prefix: "__" + prefix, as etcd's recipes do. Its mod revision is the
// revision of the last sequential key created under prefix; its value
// names that key.
func sequenceMarker(prefix string) string { return "__" + prefix }

// PutSequential creates a new key prefix + a 20-digit zero-padded number
// with value val, and returns the key: like etcd v2's in-order keys, the
// keys of a prefix sort in the order they were created, across the
// cluster, and a number is never used twice under a prefix (even after its
// key was deleted). Options are Put's.
//
// The number is above every number used before under the prefix and at
// most the new key's create revision (equal to it when nothing else is
// written meanwhile). It is chosen here, without an extra round trip: the
// node reads the revision R of its own state, then commits one Txn that
// creates prefix+(R+1) and touches the prefix's marker key, on condition
// that the marker was not changed after R. Every earlier key's number is
// at most its create revision <= the marker's mod revision <= R, so the
// new key sorts after all of them. The marker is the key "__" + prefix
// (as in etcd's recipes), outside the prefix; do not write it yourself. A
// prefix that is empty or all underscores, which would hold its marker,
// is refused with ErrInvalidRequest.
//
// A call is one raft round trip, unless a PutSequential on another node
// moved the marker first; it then tries again from the fresher state.
// Calls for one prefix on one node are serialised, so they never race
// each other.
func (n *Node) PutSequential(ctx context.Context, prefix, val string, opts ...OpOption) (key string, resp *PutResponse, err error) {
	key, resp, err = n.putSequential(ctx, prefix, val, opts)
	if err != nil {
		return "", nil, fmt.Errorf("concord.PutSequential: %w", err)
	}
	return key, resp, nil
}

func (n *Node) putSequential(ctx context.Context, prefix, val string, opts []OpOption) (string, *PutResponse, error) {
	if err := n.alive(); err != nil {
		return "", nil, err
	}
	if strings.Trim(prefix, "_") == "" {
		// The marker "__" + prefix would lie under the prefix.
		return "", nil, fmt.Errorf("%w: PutSequential prefix %q: its marker %q would be one of its keys", ErrInvalidRequest, prefix, sequenceMarker(prefix))
	}
	marker := sequenceMarker(prefix)
	// Validate a key of the final length first (the marker is shorter),
	// so that nothing is proposed for a prefix too long to hold a number.
	probe := OpPut(prefix+fmt.Sprintf("%0*d", seqDigits, 0), val, opts...)
	if err := probe.check(&n.cfg, 0); err != nil {
		return "", nil, err
	}
	if probe.hasTTL {
		if err := n.ttlLease(ctx, &probe); err != nil {
			return "", nil, err
		}
		id := probe.lease
		opts = append(opts[:len(opts):len(opts)], func(op *Op) { op.lease, op.hasTTL = id, false })
	}
	if err := n.waitReady(ctx); err != nil {
		return "", nil, err
	}
	lock := n.seqLocks[maphash.String(n.seqSeed, prefix)%uint64(len(n.seqLocks))]
	select {
	case lock <- struct{}{}:
	case <-ctx.Done():
		return "", nil, ctxErr(ctx.Err())
	case <-n.closingC:
		return "", nil, ErrClosed
	}
	defer func() { <-lock }()
	for {
		rev, _, err := n.readLocal([]byte(marker))
		if err != nil {
			return "", nil, err
		}
		key := prefix + fmt.Sprintf("%0*d", seqDigits, rev+1)
		put := OpPut(key, val, opts...)
		op := OpTxn(
			[]Cmp{Compare(ModRevision(marker), "<", rev+1)},
			[]Op{OpPut(marker, key), put},
			nil,
		)
		resp, err := n.commitTxn(ctx, &op)
		if err != nil {
			return "", nil, err
		}
		if resp.Succeeded {
			return key, resp.Responses[1].Put(), nil
		}
		// Another node created a key under prefix since revision rev.
		// The failed txn was applied here, so the local state now holds
		// that marker change: read again.
		if err := ctx.Err(); err != nil {
			return "", nil, ctxErr(err)
		}
	}
}
