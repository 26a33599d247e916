package concord

import "errors"

// Sentinel errors. Every error a Node's methods return wraps one of these
// or a context error (Open may also return the system's errors: a data dir
// it cannot create, an address it cannot bind); test with errors.Is.
var (
	// ErrClosed is returned by every call on a closed Node.
	ErrClosed = errors.New("concord: closed")
	// ErrStopped is returned when the node stopped on its own (a fatal
	// storage error, or removal from the cluster); Node.Err tells why.
	ErrStopped = errors.New("concord: stopped")
	// ErrRemoved is wrapped, with ErrStopped, by the calls of a node that
	// was removed from its cluster: reclaimed after DeadMemberReclaim while
	// it was down, then restarted on its DataDir. Its DataDir cannot
	// rejoin (a later Open of it returns ErrRemoved): start it again with
	// an empty one, and it joins as a new member.
	ErrRemoved = errors.New("concord: removed from the cluster")
	// ErrInvalidConfig is wrapped by Open's validation errors, which name
	// the rule broken.
	ErrInvalidConfig = errors.New("concord: invalid config")
	// ErrTimeout is returned when a call's deadline passed while the
	// cluster could not serve it (e.g. no quorum). The ctx error is joined.
	ErrTimeout = errors.New("concord: timed out")

	// ErrEmptyKey is returned for an empty key where one is required.
	ErrEmptyKey = errors.New("concord: empty key")
	// ErrKeyTooLarge is returned for a key over Config.MaxKeySize.
	ErrKeyTooLarge = errors.New("concord: key too large")
	// ErrRequestTooLarge is returned for a request over
	// Config.MaxRequestBytes, and for one whose writes exceed what one
	// revision holds (about 16k badger writes or 2.5 MiB): a Delete or
	// Txn of more than about 3,000 keys of a range (fewer with long
	// keys: about 350 of 1.4 KiB). It changes nothing; delete such a
	// range in parts.
	ErrRequestTooLarge = errors.New("concord: request too large")
	// ErrInvalidRequest is returned for a request that is malformed in
	// another way the errors here do not name (a bad Compare, a value with
	// WithIgnoreValue, a key put twice in one Txn, ...).
	ErrInvalidRequest = errors.New("concord: invalid request")
	// ErrResultUnknown is returned for a write whose result this node
	// never saw: it caught up through a snapshot that already held the
	// write's effects (the write applied, once), or it retried the write
	// while cut off from the leader until the log had moved on by more
	// than 10,000 entries, too far to tell whether an earlier copy applied
	// (the write applied at most once). Read the keys to see the state.
	ErrResultUnknown = errors.New("concord: write result unknown")
	// ErrInvalidRevision is returned for a negative revision.
	ErrInvalidRevision = errors.New("concord: invalid revision")
	// ErrCompacted is returned for a read or watch below the compact
	// revision, and for a Compact at or below it.
	ErrCompacted = errors.New("concord: revision compacted")
	// ErrFutureRev is returned for a revision above the current one.
	ErrFutureRev = errors.New("concord: revision not yet reached")
	// ErrKeyExists is returned by Create when the key exists.
	ErrKeyExists = errors.New("concord: key exists")
	// ErrKeyNotFound is returned by a put that keeps the value or lease of
	// a key that does not exist.
	ErrKeyNotFound = errors.New("concord: key not found")
	// ErrCompareFailed is returned by CompareAndSwap and CompareAndDelete
	// when the current value differs.
	ErrCompareFailed = errors.New("concord: compare failed")
	// ErrDecode is wrapped by the errors of values a Codec fails to decode.
	ErrDecode = errors.New("concord: value does not decode")

	// ErrLeaseNotFound is returned for a lease that does not exist.
	ErrLeaseNotFound = errors.New("concord: lease not found")
	// ErrSessionExpired is returned by a call waiting on a session whose
	// lease is gone.
	ErrSessionExpired = errors.New("concord: session expired")
	// ErrLocked is returned by TryLock and TryAcquire when the lock is held.
	ErrLocked = errors.New("concord: locked")
	// ErrNoLeader is returned when an election has no leader.
	ErrNoLeader = errors.New("concord: no leader")
	// ErrNotLeader is returned by calls only the leader may make.
	ErrNotLeader = errors.New("concord: not the leader")
)
