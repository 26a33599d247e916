// Package raftnode is a durable raft peer to embed in a process: it owns a
// go.etcd.io/raft/v3 RawNode, persists to badger, talks to its peers through
// a [transport.Transport] and applies committed commands to an [Applier].
//
// # Architecture
//
//	Propose      -> propC --+                  +--> Transport.Send / SendSnapshot
//	ReadIndex    -> kick ---+                  |      (what needs no sync: at once)
//	conf changes,           +--> loop (one goroutine owns raft.RawNode)
//	CallLeader, CallQuorum, |
//	call replies, reports    -> ctlC -+
//	Transport    -> recvC --+       | Ready (raft's AsyncStorageWrites):
//	                                | 1. send Messages to peers
//	                                | 2. install a received snapshot (spooled file)
//	                                | 3. apply the committed entries (durable here
//	                                |    already) with the applied index, and
//	                                |    write the new entries + hard state:
//	                                |    one badger commit, not synced
//	                                | 4. results to proposers; release ReadIndex
//	                                |    waiters; compact the log if due
//	                                v
//	                             badger (keyspace: internal/schema)
//	                                ^
//	                                | syncer (syncer.go): one fdatasync for all
//	                                | appends queued, then their responses: acks
//	                                | and votes to peers, raft's own acks back to
//	                                | the loop
//
// Only the loop goroutine touches raft.RawNode: loop.go owns it and runs the
// Ready cycle; the loop methods in apply.go, propose.go, readindex.go and
// confchange.go run on that goroutine too. Everything else reaches it
// through channels. Calls on a [Node] are safe from any goroutine.
//
// # Proposals
//
// [Node.Propose] works on every peer. Each proposal carries an id (a random
// per-start origin and a sequence number); a follower forwards it to the
// leader, the peer that proposed it recognises it when it applies the entry
// and hands the Applier's result back to the caller. A proposal that may
// have been lost (a leader change, a dropped message) is proposed again under
// the same id; the apply path remembers the ids of the last 10,000 entries
// (replicated state, in the apply transaction and in snapshots), so a
// command applies once however often it was sent. Each copy also carries
// its floor, the proposer's applied index when it first proposed: a copy
// committed further than that window past its floor is refused
// (ErrProposalExpired), as an earlier copy may have left the window.
// Concurrent proposals are packed into few entries.
//
// # Reads
//
// [Node.ReadIndex] returns once the local state includes everything
// committed before the call, confirmed by the leader with a quorum; reads of
// [Node.DB] after it are linearizable. All calls that arrive while a round is
// in flight share the next round.
//
// # Durability and restarts
//
// Entries and hard state are synced before this peer acknowledges an
// append, grants a vote, applies or acknowledges a proposal that depends on
// them (a leader sends its appends while it writes them, raft thesis
// 10.2.1: its own vote counts only once they are durable). raft runs with
// AsyncStorageWrites: the loop writes each Ready to badger unsynced and
// goes on (stepping, applying, sending) while the syncer syncs; the
// messages that vouch for an append leave only after a sync that began
// after it, so appends that queue during one sync share the next. An
// apply is not synced on its own (unless it put a value in the value log
// or is large enough to be split): raft hands only entries already
// durable here, the next sync covers it, and a crash before that replays
// it from the log. A sync is an
// fdatasync of badger's active memtable file (and of its value-log files
// when a value went there); when badger switches memtables, the one it
// left is synced at once if it holds unsynced commits (writer.go). Syncs
// run one at a time, and after one fails every later one fails too (a
// failed fdatasync may drop pages that a later one, told nothing, would
// vouch for): the peer halts. A restart replays the log from the applied
// index (raising the commit index to it, as a hard state whose commit
// index alone moved is not written): it never applies an entry twice nor
// skips one.
//
// # Snapshots
//
// Every SnapshotEntries applied entries the log is compacted, keeping
// SnapshotCatchUpEntries for slow followers. A peer that needs entries no
// longer in the log gets a snapshot: the sender streams its current state
// (a badger read transaction: the raftnode records plus Applier.Snapshot)
// over the transport; the receiver spools it to a file, hands the message to
// raft, and when raft accepts it restores from the file. The streamed state
// may be newer than the snapshot's raft metadata; the entries in between
// are skipped by the applied-index check.
//
// # Leader calls
//
// [Node.CallLeader] asks the leader's [LeaderService] something that needs
// its volatile state but no log entry (concord's lease keep-alives): a
// follower sends the call to the leader outside the log, as a raftpb
// message of a type raft keeps inside a process, so transports and their
// faults carry it like raft's own traffic; the leader serves it on the raft
// goroutine and sends the answer back. Unanswered calls are sent again on
// a leader change and after an election timeout.
//
// # Quorum calls
//
// [Node.CallQuorum] is the other direction: the leader asks every voter's
// [QuorumService] (its own included) and returns once a quorum of voters
// answered, outside the log too (concord pushes lease renewals this way,
// and a new leader asks what they were). A peer serves a call only while
// the call's term is its durable term (the term a finished sync covered:
// the hard state is written unsynced), so a peer that answered a leader
// of term T never again serves an earlier term's call, across restarts.
//
// # Membership
//
// A new cluster starts from Config.Peers, or later from [Node.Bootstrap]
// on a peer started without Peers that has no raft state yet (gossip
// bootstrap decides the voters after start). [Node.AddLearner],
// [Node.PromoteLearner], [Node.RemovePeer] and [Node.TransferLeadership]
// change it; [Node.Reconfigure] makes several role changes at once
// through joint consensus; [Node.Progress] is the leader's view of each
// member's replication. Peer addresses travel in the conf changes and are
// kept in the replicated state; [Node.Hint] gives a peer not yet in the
// log addresses to answer. A lone voter campaigns at once.
//
// With Config.Incarnation set (a random id of the peer's data) and a
// transport that asks its handler to admit connections (the TCP
// transport does: transport.Admitter), a peer that comes back under its
// id with its data lost is kept from voting and acknowledging until it
// has caught up again: peers refuse it while it is a voter, and the
// leader removes it and adds it back as a learner, then promotes it
// (incarnation.go).
package raftnode
