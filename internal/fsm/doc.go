// Package fsm is concord's replicated state machine: a multi-version
// key-value store with etcd v3's semantics (its mvcc package), applied
// deterministically to badger as a [raftnode.Applier].
//
// # Architecture
//
//	raftnode (raft goroutine)
//	  | Apply(txn, index, cmd) ---> decode command.Request
//	  |                              execute: Range / Put / DeleteRange / Txn / Compaction,
//	  |                              Claim / Add (claim.go: read-modify-writes made of puts),
//	  |                              LeaseGrant / Revoke / Expire / Checkpoint / Promote
//	  |                              writes under s/ through txn (layout: internal/schema)
//	  |                              bounded compaction sweep
//	  |<-- encoded command.Response  (outcomes are codes, never Go errors)
//	  | Committed(index) ----------> publish revisions; fold into read cache;
//	  |                              OnLeases(changes) --> lessor
//	  |                              OnCommit(events)  --> watch hub
//	  | Snapshot / Restore --------> every key under s/ (raftnode.StreamPrefix)
//
//	Node (any goroutine), on a read-only badger txn:
//	  Cached(req)           single-key current reads from memory, no txn
//	  Range(txn, req)       current or past-revision reads, no raft round
//	  History(txn, from...) the events since a revision, for watches
//
// # Revisions
//
// The store starts at revision 1 with nothing in it; each command that
// writes gets the next revision, shared by all its puts and deletes (a
// txn's included), so the first write is at revision 2, as in etcd. A
// command that writes nothing (a read, a txn whose branch only reads, a
// delete that matches nothing, a claim that finds nothing free, any
// refused command) leaves the revision
// as it is. A key's create_revision is the revision of the put that
// created it, mod_revision that of its last put, version the number of
// puts since its creation.
//
// A Compaction to revision c discards what only reads below c could see:
// afterwards such reads get COMPACTED. Reads above the current revision
// get FUTURE_REV. The history below it is swept lazily (see sweep.go), a
// bounded amount per later write, so a Compaction's apply stays small.
//
// # Leases
//
// A lease (LeaseGrant) has an id the proposer chose and a time to live.
// A put with a lease attaches its key; a put without one, or a delete,
// detaches it; the lease table keeps the keys of each lease (layout in
// internal/schema). LeaseRevoke deletes the lease and every key attached,
// with their delete events, in one revision. The state machine has no
// clock, so it never expires a lease by itself: the leader's lessor
// (internal/lessor) proposes LeaseExpire when a lease is due, and
// LeaseCheckpoint to record the time leases have left, for the next
// leader. Both name the term their lessor's leader leads in, and take
// effect only from an entry of that term (raftnode.Txn.Term): anything
// else is refused with STALE and changes nothing, so a deposed lessor's
// proposal, forwarded into a later term, cannot expire a lease the new
// leader renewed. A lease holds at most [MaxLeaseKeys] keys
// of [MaxLeaseKeyBytes] bytes in all, so that its revoke fits one command.
// Granting, checkpointing and revoking a lease with no keys write no
// revision. Config.OnLeases reports the changes to the lease table.
//
// # Determinism
//
// Apply reads no clock, no randomness and does no I/O beyond its
// transaction; time can only arrive inside commands. Bad input (bytes that
// do not decode, an empty key, a key or value over [MaxKeySize] and
// [MaxValueSize], a command whose writes exceed one transaction's budget)
// is refused with a code and changes nothing, the same way on every peer.
//
// # In-memory state
//
// The current and compact revisions are cached twice: the apply state,
// which runs ahead within an uncommitted batch, and the committed state
// behind [FSM.Revision], published by Committed. Readers that need a
// revision consistent with what they read use [ReadRevisions] on their
// own transaction.
//
// Single-key reads of the current state are served from memory when they
// can be (readcache.go): Committed folds every record the batch's applies
// saw into a read cache, in order, so the cache is exact as of the newest
// commit; a miss reads badger and fills the entry in if the cache has not
// moved on meanwhile. Since raftnode releases reads and results only after
// Committed, a cached answer is never older than an acknowledged write.
//
// Every live key is also kept, in order, in a live index (live.go): built
// from badger when Apply loads its state (once per start or restore; it
// holds every key, as etcd's in-memory key index does), kept exact by
// each put and delete, and handed to readers as a copy-on-write clone at
// each commit. Ranges of the current state (reads, txn compares, deletes)
// and claims list their keys from it and read each by a point lookup:
// badger's iterators step over every deleted key still in its levels, so
// a prefix with much churn (a queue's head, a lock's waiters) made every
// scan slower until compaction. A reader uses the clone only if its
// transaction is at the clone's revision; otherwise it scans badger.
package fsm
