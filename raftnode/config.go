package raftnode

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/transport"
)

// Peer is a raft member: its id and the address its transport listens on.
type Peer struct {
	ID   uint64
	Addr string
}

// Config configures a raft peer. The zero value of a tuning field means its
// default.
type Config struct {
	// ID is this peer's raft id. Required, non-zero, never reused.
	ID uint64
	// DataDir holds the badger DB; "" keeps everything in memory.
	DataDir string
	// Peers is the initial voter set, this peer included, used only when
	// the data dir holds no raft state yet. A peer listed alone is a
	// one-peer cluster and leads at once. Empty: this peer joins an
	// existing cluster and waits to be added by a conf change.
	Peers []Peer
	// Join lists members of the existing cluster a joining peer (empty
	// Peers) can reach before it learns the membership from the leader:
	// without an address for the leader it could not answer its appends,
	// and so never receive the log or snapshot that tells it the members.
	// Addresses replicated through conf changes replace these. Optional
	// with an in-memory transport that ignores addresses.
	Join []Peer
	// Incarnation names this peer's data: a random non-zero id made with
	// its data dir (a new one for data kept in memory). 0 turns the
	// incarnation guard (incarnation.go) off for this peer.
	Incarnation uint64
	// Transport carries messages to peers. Required. Start starts it and
	// Stop closes it.
	Transport transport.Transport
	// Applier is the replicated state machine. Required.
	Applier Applier
	// LeaderService, if set, serves CallLeader calls while this peer
	// leads. Optional: without it CallLeader returns ErrNoLeaderService.
	LeaderService LeaderService
	// QuorumService, if set, serves the leader's CallQuorum calls on this
	// peer. Optional: without it this peer answers none.
	QuorumService QuorumService
	// Logger receives raft's and badger's logs; nil discards them.
	Logger *slog.Logger

	// TickInterval is raft's logical clock tick. Default 100ms.
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks. Default 10.
	ElectionTicks int
	// HeartbeatTicks is the heartbeat interval in ticks. Default 1.
	HeartbeatTicks int
	// SnapshotEntries is how many applied entries trigger log compaction.
	// Default 10000.
	SnapshotEntries uint64
	// SnapshotCatchUpEntries is how many entries stay in the log after a
	// compaction, for slow followers. Default 5000.
	SnapshotCatchUpEntries uint64
	// MaxSizePerMsg caps the bytes of entries in one append message.
	// Default 1 MiB.
	MaxSizePerMsg uint64
	// MaxInflightMsgs caps append messages in flight per follower.
	// Default 256.
	MaxInflightMsgs int
	// MaxProposalBatch caps the bytes of proposals packed into one entry.
	// Default 1 MiB.
	MaxProposalBatch int
	// SnapshotDir holds received snapshots while they are installed; it
	// must be this peer's alone (leftover *.snap files are removed). Default
	// DataDir/snap, or a temporary directory removed by Stop in memory mode.
	SnapshotDir string
	// BadgerOptions, if set, adjusts badger's options before Open.
	BadgerOptions func(badger.Options) badger.Options

	// testHook, if set, is called with the new Node before anything uses
	// it (before storage is loaded and any goroutine starts), so that
	// internal tests can wrap its unexported parts, e.g. n.commit, without
	// racing the raft goroutine. Never set outside tests.
	testHook func(*Node)
}

// Errors of the raft peer. All are errors.Is-able.
var (
	// ErrStopped is returned by calls on a stopped peer.
	ErrStopped = errors.New("raftnode: stopped")
	// ErrRemoved is returned once this peer was removed from the cluster.
	ErrRemoved = errors.New("raftnode: removed from the cluster")
	// ErrHalted is why a peer stopped when raft met a state it cannot go
	// on from: a log that does not match what the leader committed (a
	// lost or corrupt data dir), or a message forged or sent by another
	// cluster. The peer stops; the process goes on.
	ErrHalted = errors.New("raftnode: raft halted")
	// ErrNotLeader is returned by calls only the leader may make.
	ErrNotLeader = errors.New("raftnode: not the leader")
	// ErrLearnerNotReady is returned when promoting a learner that is not
	// caught up with the leader.
	ErrLearnerNotReady = errors.New("raftnode: learner not caught up")
	// ErrUnknownPeer is returned for conf changes naming no member.
	ErrUnknownPeer = errors.New("raftnode: unknown peer")
	// ErrInvalidConfig is wrapped by Start's validation errors.
	ErrInvalidConfig = errors.New("raftnode: invalid config")
)

// withDefaults returns a copy of c with defaults filled and validated.
func (c Config) withDefaults() (Config, error) {
	if c.TickInterval == 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = 1
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = 10000
	}
	if c.SnapshotCatchUpEntries == 0 {
		c.SnapshotCatchUpEntries = 5000
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = 1 << 20
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = 256
	}
	if c.MaxProposalBatch == 0 {
		c.MaxProposalBatch = 1 << 20
	}
	c.Peers = append([]Peer(nil), c.Peers...)
	c.Join = append([]Peer(nil), c.Join...)
	bad := func(format string, a ...any) (Config, error) {
		return c, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	switch {
	case c.ID == 0:
		return bad("ID must be non-zero")
	case c.Transport == nil:
		return bad("Transport is required")
	case c.Applier == nil:
		return bad("Applier is required")
	case c.TickInterval < time.Millisecond:
		return bad("TickInterval must be at least 1ms, got %v", c.TickInterval)
	case c.HeartbeatTicks <= 0 || c.ElectionTicks <= c.HeartbeatTicks:
		return bad("ElectionTicks (%d) must be greater than HeartbeatTicks (%d) > 0", c.ElectionTicks, c.HeartbeatTicks)
	case c.SnapshotCatchUpEntries >= c.SnapshotEntries:
		return bad("SnapshotCatchUpEntries (%d) must be below SnapshotEntries (%d)", c.SnapshotCatchUpEntries, c.SnapshotEntries)
	case c.MaxInflightMsgs < 0 || c.MaxProposalBatch < 0:
		return bad("MaxInflightMsgs (%d) and MaxProposalBatch (%d) must not be negative", c.MaxInflightMsgs, c.MaxProposalBatch)
	}
	seen := map[uint64]bool{}
	self := false
	for _, p := range c.Peers {
		if p.ID == 0 || seen[p.ID] {
			return bad("Peers must have distinct non-zero ids, got %d twice or zero", p.ID)
		}
		seen[p.ID] = true
		self = self || p.ID == c.ID
	}
	if len(c.Peers) > 0 && !self {
		return bad("Peers must include this peer's ID %d", c.ID)
	}
	return c, nil
}
