// Package membership turns gossip (hashicorp/memberlist) into raft
// membership: replicas of one binary started with the same config find
// each other, form one cluster, grow, shrink and heal it with no operator
// step. Consul's autopilot is the model.
//
// # Pieces
//
//	memberlist ──events──► gossip (every node ever seen, its state, its Meta)
//	     ▲                        │
//	     │ Meta (UpdateNode)      ▼
//	  Manager.round, every Interval and on every gossip change:
//	     1. no cluster yet: decide (bootstrap.go) → persist State → publish Meta
//	     2. committed: raftnode.Bootstrap(initial voters); joining: hint addresses
//	     3. leader: plan (reconcile.go) → AddLearner / Reconfigure
//
// Every node publishes a [Meta]: its raft id, raft address,
// BootstrapExpect, and its [Phase] (fresh, proposing, accepted, joining,
// member) with what the phase needs. Metadata that does not decode is
// ignored, and so is the node.
//
// # Bootstrap with BootstrapExpect N
//
// A node with no raft state and no cluster takes part in bootstrap.
//
//  1. If gossip shows a member of a cluster, the node joins that cluster
//     (it publishes "joining C"; the leader of C adds it). It persists
//     the choice and never bootstraps afterwards.
//  2. Candidates are the alive fresh (or proposing) nodes with the same N,
//     and those bound to this node's proposals. If there are at least N and
//     this node is the lowest by (name, raft id), it is the founder: it
//     increments its round (persisted first), and proposes the N lowest
//     candidates under that round.
//  3. A node named in a proposal, whose every member it sees alive, may
//     accept it: it persists (founder, round, set), then publishes it. It
//     is then bound: it accepts nothing else, proposes nothing, and joins
//     nothing, until the founder decides.
//  4. The founder commits once every other member of its set publishes its
//     acceptance of exactly this round and set: it persists the set and the
//     cluster id (a hash of founder, round and set), bootstraps raft with
//     the set as voters and publishes "member". Each acceptor bootstraps
//     with the same set when it sees a member of that cluster id (raft
//     gives every peer bootstrapped with the same list the same log), or
//     simply receives the log from the founder's cluster.
//  5. A founder that gives up a proposal (a lower node appeared, the
//     candidates changed, a cluster showed up) publishes a higher round
//     first; an acceptor frees itself only when it sees its founder's
//     published round above the one it accepted.
//
// Why two clusters never form from fewer than 2N fresh nodes: a founder
// commits only with the acceptance of every member of its set, and it
// never commits a round once it has published a higher one (rounds are
// persisted before they are published and only grow; gossip never shows
// an older version of a node's metadata after a newer one). An acceptor
// leaves its ballot only after seeing the founder's round move past it,
// so the ballot it leaves can no longer commit; a founder proposes only
// while it is bound to no one, and aborts its own proposal (publishing a
// higher round) before it accepts another. So every node is in the
// initial set of at most one committed cluster, committed sets are
// disjoint, and two clusters need two groups of N fresh nodes that never
// saw each other's members: a network partitioned at first start, or
// seeds that split the nodes in two. A node started later with the same
// config (minutes apart or not) sees a member and joins instead; a node
// that has ever chosen a cluster keeps it across restarts. The property
// test TestBootstrapNeverTwoClusters checks this on simulated nodes with
// stale, partial and partitioned views and restarts.
//
// The price of safety is that a founder which dies after proposing keeps
// its acceptors bound until it comes back (from its DataDir); an
// in-memory founder never comes back under the same raft id, and its
// acceptors wait until they are restarted. The bootstrap trusts gossip
// metadata: on an untrusted network, set a GossipKey.
//
// A node with no BootstrapExpect and seeds only joins; a static member
// (InitialCluster, or a lone node) bootstraps from its list and publishes
// "member" of a cluster id derived from the member names, so gossip
// joiners can join a static cluster.
//
// # Reconciler (leader only)
//
// Gossip is advice, raft decides. Each round the leader samples raft's
// progress (RecentActive: heard from within an election timeout; Match)
// and plans one change. raft clears RecentActive every election timeout
// until the member answers again, so a member seen active within three
// rounds still counts as active: rounds that keep landing in that gap
// would otherwise keep a learner from ever being promoted. The plan:
//
//   - a gossip node joining this cluster is added as a learner, and so is
//     one that says it is a member but is not in the configuration, once
//     it and this leader have been up for the stabilization time: a
//     member reclaimed while down and back on its old raft state, which
//     then catches up on its own removal and stops (raftnode.ErrRemoved)
//     instead of waiting for a leader that never contacts it; if the
//     members' logs no longer hold that removal, it catches up from a
//     snapshot that holds the re-add instead, and stays as a member;
//   - a learner alive in gossip and active in raft for the stabilization
//     time, and caught up, is eligible; the voter count target is the
//     largest odd number up to MaxVoters that the kept voters and the
//     eligible learners allow; learners are promoted (two at once through
//     joint consensus, so the count stays odd) or, with an even count,
//     a voter is demoted (an unhealthy one first, never the leader);
//   - a member is removed only if gossip has said dead (or left) for
//     DeadReclaim and raft has not heard from it for DeadReclaim either,
//     counted from when this leader took over; so no gossip message,
//     forged or stale, removes a voter raft still hears from, and a new
//     leader waits a full DeadReclaim of its own;
//   - a change is made only if the voters before and after it each have a
//     healthy quorum (joint consensus needs both).
//
// Raft ids of gossip members are random 64-bit values persisted in the
// DataDir; a member that left cannot reopen its DataDir, so ids are never
// given to another node (a reclaimed member is added back under its own
// id, above, never under another's). Static members keep ids derived
// from their names, as every static member must compute the others'
// without talking.
package membership
