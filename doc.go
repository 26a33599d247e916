// Package concord is an embeddable, replicated, linearizable key-value
// store for Go services: each replica of a service opens a [Node] in its
// own process, the nodes form a raft cluster, and together they hold one
// multi-version store with etcd v3's semantics (revisions, ranges,
// transactions, compaction), without a cluster to deploy beside the
// service.
//
// What works today: static clusters (InitialCluster) and one-node
// clusters, durable (DataDir) or in memory; gossip membership
// (GossipAddr, Join, BootstrapExpect, GossipKey): replicas of one binary
// started with the same config find each other, form one cluster, and a
// leader-side reconciler adds new members, promotes them, keeps the voter
// count odd and removes dead ones; Put, Get, Delete, Txn, Compact and the
// helpers Create, CompareAndSwap, CompareAndDelete and PutSequential;
// the atomic building blocks [Node.Claim] ([OpClaim]) and [Counter]
// ([OpAdd]);
// watches ([Node.Watch], [WatchTyped], [Informer]); leases (Grant,
// KeepAlive, WithLease, WithTTL, ...) and sessions; cluster info and
// leadership transfer; package concordtest, to run clusters with injected
// faults in tests; and the coordination primitives below.
//
// # Architecture
//
//	application goroutines
//	    |  Put / Delete / Txn / Compact           Get (linearizable)
//	    v                                            |
//	  Node (this package): validate, encode          | ReadIndex, batched
//	    |  command.Request                           v
//	    +--> raftnode.Propose --> raft log --> every node applies it in order
//	                                               |
//	         internal/fsm: MVCC apply to badger  <-+   (one revision per write)
//	    <-- command.Response, by proposal id, on the proposing node
//
//	  Get: ReadIndex (unless WithSerializable), then fsm.Range on a
//	  read-only badger transaction of this node: no network hop.
//
//	  Watch: internal/fsm --OnCommit--> internal/watchhub --> watchers
//	  (each batch's events once the batch is durable; the hub never
//	  blocks apply, slow watchers catch up from fsm.History)
//
//	  Leases: Grant / Revoke are commands like writes; the leader's
//	  internal/lessor keeps the clock: KeepAlive --CallLeader--> lessor
//	  (in memory, pushed to a quorum with CallQuorum, no log entry); when
//	  a lease is due the lessor proposes its expiry, applied like a Revoke.
//
// Writes go through raft (package raftnode; messages over package
// transport: TCP with optional mTLS, in memory for a node without
// PeerAddr, or Config.Transport) and are applied by the state machine in internal/fsm, which
// keeps current values, history and revisions in badger (keyspace:
// internal/schema). A write is acknowledged once it is committed on a
// quorum, fsynced, and applied on the node that proposed it.
//
// A static member's raft id is derived from its name (the first 8 bytes
// of its SHA-256, [MemberID]), so every member of a static cluster agrees
// on the ids from InitialCluster alone; a member that comes in through
// gossip gets a random id, which gossip carries to the others. Static
// members also derive a cluster id from InitialCluster (names and
// addresses, fixed once a member is first ready; [Status].ClusterID), which their
// transports exchange: a connection naming another cluster is refused,
// so two clusters whose members share names never take each other's
// raft messages. DataDir holds the file "member" (the member's name, id,
// initial cluster, cluster id, incarnation and gossip bootstrap state) and
// "db" (badger). Reopening a DataDir under
// another Name, or with another set of initial members, is refused. A
// member that comes back with its data lost (DataDir wiped, or kept in
// memory) has a new incarnation: its peers refuse its votes and
// acknowledgements, which it no longer remembers giving, and the leader
// adds it back as a learner and promotes it once it has caught up.
//
// # Usage
//
// One node in memory, for tests:
//
//	cfg := concord.DefaultLocalConfig()
//	cfg.Name = "test"
//	n, err := concord.Open(ctx, cfg)
//	...
//	defer n.Close()
//	_, err = n.Put(ctx, "greeting", "hello")
//	resp, err := n.Get(ctx, "greeting")
//
// Three replicas of a service, each running:
//
//	cfg := concord.DefaultConfig()
//	cfg.Name = "svc-1" // svc-2, svc-3 on the other replicas
//	cfg.DataDir = "/var/lib/svc/concord"
//	cfg.InitialCluster = map[string]string{
//		"svc-1": "10.0.0.1:7000", "svc-2": "10.0.0.2:7000", "svc-3": "10.0.0.3:7000",
//	}
//	n, err := concord.Open(ctx, cfg) // listens on InitialCluster["svc-1"]
//	err = n.Ready(ctx)               // optional: calls wait for it anyway
//
// The same replicas with gossip instead, every one started with the same
// config but for its name and addresses:
//
//	cfg.GossipAddr = ":7946"
//	cfg.AdvertiseGossipAddr = myIP + ":7946"
//	cfg.PeerAddr, cfg.AdvertisePeerAddr = ":7000", myIP+":7000"
//	cfg.Join = []string{"svc-1:7946", "svc-2:7946", "svc-3:7946"} // host names are fine
//	cfg.BootstrapExpect = 3
//
// Open returns at once; Ready waits until the node knows a leader and has
// caught up. Every call takes a ctx and waits for readiness within it.
// Close leaves the node a member (reopening its DataDir rejoins); Leave
// removes it from the cluster for good.
//
// # Membership
//
// With GossipAddr set, members gossip (hashicorp/memberlist; encrypted
// and authenticated with GossipKey) and publish their raft id and
// address. With BootstrapExpect N, the first N members that see each
// other and have seen no cluster form one; every later member with the
// same config joins the existing cluster instead. Two clusters cannot
// form unless 2N fresh members start in two groups that never see each
// other (see internal/membership for the protocol and why). The leader
// adds a joining member as a learner, promotes learners that are caught
// up and stable for StabilizationTime, keeps the voter count odd and at
// most MaxVoters, and removes a member that gossip has reported dead
// for DeadMemberReclaim, only if raft has not heard from it either and
// the remaining voters keep a healthy quorum: gossip alone never removes
// a voter raft still hears from. [Node.Leave] removes the member (taking
// leadership first, so that its removal is known committed) and tells
// gossip, then closes. A member reclaimed while it was down and restarted
// on its DataDir is added back as a learner until it has caught up on its
// removal, then its calls fail with [ErrRemoved] (or, once the logs no
// longer hold the removal, from a snapshot, and then it stays); with an
// empty DataDir it joins as a new member. [Node.Members] shows each member's role,
// gossip state and lag.
//
// # Consistency
//
//   - Writes are linearizable: a write returns once it is committed on a
//     quorum and applied here; every later read on any node sees it.
//   - Each write request (a Put, a Delete that deletes something, a Txn
//     that writes) creates exactly one revision, across the cluster; all
//     writes of a Txn share it. Reads and refused requests create none.
//   - Get is linearizable by default: a ReadIndex round (shared by every
//     read that arrives while one is in flight) confirms with a quorum
//     that this node has applied everything committed before the call.
//     WithSerializable reads this node's state at once; it may be stale.
//   - Bad input (an empty key, a key over Config.MaxKeySize, a request over
//     Config.MaxRequestBytes, a negative revision, an unavailable option)
//     is refused before anything is proposed, so it changes nothing. So
//     is a Txn that puts a key twice, or puts a key it deletes, on any
//     path its compares could take (as etcd). A command whose writes
//     exceed one revision's budget (a Delete of a range of more than
//     about 3,000 keys) is refused with ErrRequestTooLarge when applied,
//     and changes nothing either.
//   - A call whose deadline passes while the cluster cannot serve it (no
//     leader, no quorum) returns an error that is both ErrTimeout and
//     context.DeadlineExceeded; a write may still be applied later.
//   - Reads at a past revision (WithRev) see the store as it was, until
//     Compact discards that history: then they get ErrCompacted.
//   - A restarted node keeps its data and revision; a node that was away
//     catches up from the log or a snapshot.
//
// # Leases and sessions
//
// A lease ([Node.Grant]) has a TTL; keys put [WithLease] are attached to
// it, and are deleted, all in one revision, when it is revoked
// ([Node.Revoke]) or expires. [WithTTL] is the per-key shorthand: a put
// with a lease of its own.
//
//	id, err := n.Grant(ctx, 10*time.Second)
//	_, err = n.Put(ctx, "services/api/svc-1", addr, concord.WithLease(id))
//	ch, err := n.KeepAlive(ctx, id) // renews every TTL/3 until ctx ends
//
// Only the leader's clock decides expiry, and the expiry is a command in
// the raft log like any write. Keep-alives work from any node: a follower
// forwards them to the leader outside the log, batched; the leader renews
// in memory and answers once a quorum of members holds the renewal, also
// outside the log, so leases kept alive cost no raft entry. A new leader
// asks a quorum what each lease was promised: after a leader change a
// lease lives what it had left as of its last keep-alive plus at most the
// election timeout (and a few message delays): it neither expires early
// nor gets its whole TTL back (etcd#9888). Within a TTL after a member
// restarted or the members changed, a lease may get its TTL from that
// moment instead (see internal/lessor). The shortest TTL is the election
// timeout (1 s by default, 100 ms with DefaultLocalConfig); a TTL under
// it, a TTL <= 0 or an unknown lease is refused with a clear error.
//
// A [Session] is a lease kept alive for as long as its holder lives,
// etcd's concurrency.Session:
//
//	s, err := concord.NewSession(n, concord.WithSessionTTL(10*time.Second))
//	defer s.Close() // revokes the lease: its keys go at once
//	_, err = n.Put(ctx, "election/svc-1", "me", concord.WithLease(s.Lease()))
//	<-s.Done() // the lease is gone: revoked, expired, or unrenewable for a TTL
//
// Done closes within about a second of the lease's removal, whatever the
// TTL, and when this node could not renew it for a whole TTL.
//
// # Watches
//
// [Node.Watch] streams the changes of a key or range as the node it is
// called on applies them, so it works the same on any member and has no
// gap across leader changes:
//
//	for resp := range n.Watch(ctx, "config/", concord.WithPrefix(), concord.WithRev(rev+1)) {
//		if err := resp.Err(); err != nil {
//			// ErrCompacted: the history from rev+1 is gone; read the
//			// state again and watch from there.
//		}
//		for _, ev := range resp.Events { ... }
//	}
//
// Events arrive in revision order, each once, nothing skipped; a
// revision's events come in one response; each response's
// Header.Revision says how far the watch got, so a watch resumes from
// Header.Revision+1 on any member. A watcher that stops reading never
// slows writes or other watchers: it falls behind, reads the history kept
// by the store when it reads again, and, if that history was compacted
// meanwhile, gets a canceled response with CompactRevision (a resync
// signal, never a silent gap). Delivery wakes watchers at once, with no
// polling tick; all watchers of a revision share its decoded events.
//
// [WatchTyped] decodes values with a [Codec] ([JSON] by default).
// [Informer] keeps a local, revision-consistent copy of a prefix (read,
// then watch from the next revision; read again after a compaction): the
// building block for config and service discovery.
//
// # Primitives
//
// Thin clients of the store, leases and watches, as etcd's concurrency
// package is. The locks, [Semaphore], [Election], [DoubleBarrier], [Queue]
// claims and [Registry] instances keep their keys under name+"/" and bind
// what a process holds to its [Session], so it goes when the process dies;
// a [Barrier] is bound to no lease, and [Fence], [Counter] and [Var] use
// the key they are given. Waiting calls
// honour their ctx, remove their waiting key when they give up, and return
// [ErrSessionExpired] when their session ends.
//
//   - [Mutex] (FIFO, each waiter watching only its predecessor; [Mutex.Token]
//     is the holder key's create revision, strictly increasing;
//     [Mutex.IsOwner] guards a Txn; [WithLockDelay]), [RWMutex], [Semaphore],
//     and [Fence], which lets a resource refuse writes carrying a stale token.
//   - [Election] (Campaign, Proclaim, Resign, Leader, Observe with "no
//     leader" as the zero [Leader]), [Barrier], [DoubleBarrier].
//   - [Queue] (priorities, delays, Ack/Nack, redelivery counts, dead
//     letters; one [Node.Claim] per delivery, which
//     [Message.AckAndDequeue] fuses with the previous message's ack),
//     [ReleaseWhenQueued] for a condition start.
//   - [Registry] (service discovery: instances vanish with their session)
//     and [Var] (a watched value: Load without a round trip).
package concord
