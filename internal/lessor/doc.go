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
//	                 checkpoint, promised)    --> LeaseCheckpoint{term, ...}
//	raftnode CallLeader --> ServeLeader ----> renew in memory (no raft entry)
//	  (keep-alives from any node)               --> pusher: CallQuorum push
//	raftnode CallQuorum --> ServeQuorum ----    --> answer once a quorum holds it
//	  (pushes, promotion queries)
//
// # Keep-alives
//
// A keep-alive on any node reaches the leader as a raftnode call
// (Node.CallLeader): outside the log, through the raft transport, so its
// faults and partitions apply. The leader's lessor renews the lease in
// memory and pushes the renewal to every voter with a quorum call
// (Node.CallQuorum, outside the log too): each voter records the lease's
// new expiry on its own clock, as "promised" (receive time plus the time
// left when sent: never earlier than the leader's expiry). The keep-alive
// is answered once a quorum of voters, the leader included, holds it.
// Followers' concord.Node batches the keep-alives due at the same moment
// into one call, and the pusher packs the renewals of a hundredth of the
// election timeout (10 ms by default) into one push, one push at a time:
// nothing is written to the log.
//
// # Leader changes
//
// When its node becomes leader of term T, the lessor first waits until the
// node has applied everything committed before the term (a ReadIndex
// round), so that its mirror is complete and no earlier proposal can still
// land. Then it asks a quorum of voters (CallQuorum again) what every lease
// was promised, and rules ("primary") with
//
//	until  = max(promised by the quorum that answered, promised here),
//	         but no later than the lease's checkpoint (below) if it has one
//	expiry = max(until, now) + election timeout
//
// Why this never expires a lease early: an acknowledged renewal is held by
// a quorum Q1 of the voters of its term; the new leader's answers come from
// a quorum Q2; the two intersect. raftnode serves a quorum call only while
// the call's term is the peer's durable term, so a peer in both answered T
// after it took every push of an earlier term it will ever take: its
// answer includes the renewal (a peer that had not applied the lease's
// grant yet keeps the push aside and answers with it too; one that
// restarted or installed a snapshot since promises every lease its TTL
// from then: later still).
// Quorums of different configurations need not intersect: a peer that sees
// the voters change promises every lease its TTL from then, so a new leader
// whose voters changed since a renewal covers it itself, and one whose
// voters did not is at most one conf change away from the renewing leader
// (that leader ruled only after applying every earlier term's entries, and
// raft lets it have one conf change unapplied at a time), and quorums one
// conf change apart intersect. A checkpoint, in the log, bounds every
// acknowledged renewal too (below). The added election timeout covers the
// rest: peers apply a grant at slightly different times.
//
// Why this does not renew: the quorum's latest promise is the expiry of
// the last renewal that reached the old leader (acknowledged or not) plus
// the delay of the push that carried it and of the answer. So after a
// leader change a lease lives at most its remaining time as of its last
// keep-alive plus the election timeout, plus that slack (one-way message
// delays, and resends under message loss) and the commit of its expiry;
// or, if no leader ruled for longer than it had left, the election timeout
// after the new leader rules. Exceptions, all
// towards a longer life: within a TTL after a peer restarted or installed a
// snapshot, or after the voters changed, a lease may get its TTL from that
// moment.
//
// # Checkpoints
//
// Checkpoints (in the log) carry a lease's remaining time across a restart
// of the whole cluster, where no peer remembers any push. They are lazy (as
// etcd's): a lease is checkpointed only when it goes ttl/3 + an election
// timeout without a keep-alive, i.e. when its holder missed a renewal
// (KeepAlive renews every ttl/3). A renewal of a checkpointed lease clears
// the checkpoint through raft before it is answered, so a checkpoint in the
// state bounds every acknowledged renewal. Leases kept alive on time cost
// no raft entry at all.
//
// # Fencing
//
// Expire and checkpoint commands name the term T their lessor rules in, and
// the state machine applies them only from an entry of term T
// (raftnode.Txn.Term): only T's leader appends those. A proposal of a
// deposed lessor that raftnode forwards to a later leader is refused, so it
// cannot expire a lease the new leader has renewed. Pushes are fenced by
// raftnode's quorum calls: a deposed leader's push reaches no quorum once
// a new leader has asked one.
//
// # Sizes
//
// A push carries at most 65536 leases; a promotion asks for the lease table
// in parts of about 100000 leases (about 14 bytes each on the wire), so
// that every message stays far below the transport's frame limit.
package lessor
