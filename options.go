package concord

import "time"

// OpOption sets a per-call option of an Op (Put, Get, Delete, Watch and
// their Op* forms). Options that do not apply to an operation are ignored,
// as in etcd.
type OpOption func(*Op)

// WithPrefix makes the operation cover every key starting with the key
// given. With the key "", it covers every key.
func WithPrefix() OpOption {
	return func(op *Op) {
		if len(op.key) == 0 {
			op.end = []byte{0}
			return
		}
		op.end = prefixEnd(op.key)
	}
}

// WithRange makes the operation cover the keys in [key, end). An empty end
// means the key alone; "\x00" means every key >= key.
func WithRange(end string) OpOption {
	return func(op *Op) { op.end = []byte(end) }
}

// WithFromKey makes the operation cover every key >= the key given. With
// the key "", it covers every key.
func WithFromKey() OpOption {
	return func(op *Op) { op.end = []byte{0} }
}

// WithRev makes a Get read the store as of revision rev (0 = the current
// one), or a Watch start at rev (0 = after the current one). A negative rev
// is refused with ErrInvalidRevision; a rev below the compact revision
// gets ErrCompacted. A Get above the current revision gets ErrFutureRev; a
// Watch from there waits for it.
func WithRev(rev int64) OpOption {
	return func(op *Op) { op.rev = rev }
}

// WithLimit caps the keys a Get returns; 0 or less means no limit. Count
// still counts the whole range, and More tells that keys were left out.
func WithLimit(n int64) OpOption {
	return func(op *Op) { op.limit = n }
}

// WithSort sorts the keys a Get returns. The default is SortByKey,
// SortAscend. SortNone with another target means SortAscend. With a
// limit, the range is sorted before it is cut. A target or order that is
// none of the constants is refused with ErrInvalidRequest.
func WithSort(target SortTarget, order SortOrder) OpOption {
	return func(op *Op) { op.sortTarget, op.sortOrder = target, order }
}

// WithKeysOnly makes a Get return the keys' metadata without their values.
func WithKeysOnly() OpOption {
	return func(op *Op) { op.keysOnly = true }
}

// WithCountOnly makes a Get return only the number of keys in the range.
func WithCountOnly() OpOption {
	return func(op *Op) { op.countOnly = true }
}

// WithSerializable makes a Get read this node's state without a ReadIndex
// round: faster and available without a quorum, but possibly stale (it
// may miss writes acknowledged elsewhere). Reads are linearizable without
// it.
func WithSerializable() OpOption {
	return func(op *Op) { op.serializable = true }
}

// WithLease attaches the key a Put writes to lease id: the key is deleted
// when the lease expires or is revoked. A lease that does not exist gets
// ErrLeaseNotFound. A later put of the key without WithLease detaches it.
// A lease holds at most 2048 keys of 256 KiB in all (ErrRequestTooLarge
// beyond), so that its revoke fits one command.
func WithLease(id LeaseID) OpOption {
	return func(op *Op) { op.lease = id }
}

// WithTTL attaches the key a Put writes to a lease of its own, granted
// with ttl just before the put, so that the key is deleted ttl after its
// last put (etcd v2's ttl): sugar for Grant then WithLease. It is for Put,
// Create, CompareAndSwap and PutSequential, not for ops in a Txn. ttl must
// be at least the election timeout, as Grant's. Each such put grants a
// lease; the one of an earlier put lingers, without the key, until its own
// expiry. A put that is refused (ErrKeyExists, ErrCompareFailed,
// ErrKeyNotFound, ...) revokes the lease it was granted, as does a Claim
// that finds nothing free; one whose outcome is unknown (a timeout)
// keeps it.
func WithTTL(ttl time.Duration) OpOption {
	return func(op *Op) { op.ttl, op.hasTTL = ttl, true }
}

// WithPrevKV makes a Put or Delete return the key's previous state, and a
// Watch deliver it with each event.
func WithPrevKV() OpOption {
	return func(op *Op) { op.prevKV = true }
}

// WithIgnoreValue makes a Put keep the key's current value (the value given
// must be empty); the key must exist, else ErrKeyNotFound.
func WithIgnoreValue() OpOption {
	return func(op *Op) { op.ignoreValue = true }
}

// WithIgnoreLease makes a Put keep the key's current lease (WithLease must
// not be given); the key must exist, else ErrKeyNotFound.
func WithIgnoreLease() OpOption {
	return func(op *Op) { op.ignoreLease = true }
}

// WithProgressNotify makes a Watch send an empty response carrying the
// revision it got to (every event up to it delivered) whenever it stayed
// silent for Config.WatchProgressInterval.
func WithProgressNotify() OpOption {
	return func(op *Op) { op.progressNotify = true }
}

// WithFilterPut makes a Watch leave out put events.
func WithFilterPut() OpOption {
	return func(op *Op) { op.filterPut = true }
}

// WithFilterDelete makes a Watch leave out delete events.
func WithFilterDelete() OpOption {
	return func(op *Op) { op.filterDelete = true }
}

// WithCreatedNotify makes a Watch send a first response, with Created set
// and no events, once it is set up.
func WithCreatedNotify() OpOption {
	return func(op *Op) { op.createdNotify = true }
}

// prefixEnd returns the end of the range of keys starting with key: key
// with its last byte below 0xff incremented and what follows dropped; for a
// key of only 0xff bytes, "\x00" (no end).
func prefixEnd(key []byte) []byte {
	end := append([]byte(nil), key...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}
