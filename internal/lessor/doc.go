// Package lessor is the leader's lease clock. The replicated state machine
// (internal/fsm) holds leases but has no clock; on the leader, the lessor
// decides when a lease is due and proposes its expiry through raft. It never
// runs inside apply: it hears of applied lease changes after they commit
// (fsm.Config.OnLeases) and only ever proposes commands.
//
// # Architecture
//
//	every node                               leader only ("primary")
//	fsm OnLeases --> Apply: mirror of the     expiry heap (timer-driven)
//	                 lease table (ttl,        --> LeaseExpire{id, term}     (raft)
//	                 checkpoint, when seen)   --> LeaseCheckpoint{term, ...}
//	raftnode CallLeader --> ServeLeader ----> renew in memory (no raft entry),
//	  (keep-alives from any node)               answer remaining times
//
// # Keep-alives
//
// A keep-alive on any node reaches the leader as a raftnode call
// (Node.CallLeader): outside the log, through the raft transport, so its
// faults and partitions apply. The leader's lessor renews the lease in
// memory and answers; nothing is written. Followers' concord.Node batches
// the keep-alives due at the same moment into one call.
//
// # Leader changes
//
// When its node becomes leader of term T, the lessor first waits until the
// node has applied everything committed before the term (a ReadIndex
// round), so that its mirror is complete and no earlier proposal can still
// land. Then it rules ("primary") and gives each lease
//
//	remaining = checkpointed remaining - time since that checkpoint applied
//	            here, or the whole ttl if the lease has no checkpoint
//	expiry    = now + remaining + election timeout
//
// so no lease expires early because the leader changed, and none is renewed
// to its whole ttl (etcd#9888) once it has a checkpoint: it lives at most
// its remaining time plus the election timeout.
//
// Checkpoints are lazy (as etcd's): a lease is checkpointed only when it
// goes ttl/3 + an election timeout without a keep-alive, i.e. when its
// holder missed a renewal (KeepAlive renews every ttl/3). A renewal of a
// checkpointed lease clears the checkpoint through raft before it is
// answered, so an acknowledged keep-alive is never undone by a later leader.
// Leases kept alive on time therefore cost no raft entry at all. The price:
// a lease whose keep-alives stop less than ttl/3 + an election timeout before
// the leader dies has no checkpoint yet, and the new leader gives it its
// whole ttl again, so it may outlive its last keep-alive by up to that much
// plus the failover and the election timeout.
//
// # Fencing
//
// Expire and checkpoint commands name the term T their lessor rules in, and
// the state machine applies them only from an entry of term T
// (raftnode.Txn.Term): only T's leader appends those. A proposal of a
// deposed lessor that raftnode forwards to a later leader is refused, so it
// cannot expire a lease the new leader has renewed.
package lessor
