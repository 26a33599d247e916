package concord

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/concordkv/concord/raftnode"
)

// MemberID returns the raft id of the static member named name: the
// first 8 bytes of the name's SHA-256, big-endian, never 0. Every member
// of a static cluster computes the same ids from InitialCluster alone.
// Members that get into a cluster through gossip (BootstrapExpect, Join)
// have random ids instead; Status and Members tell them.
func MemberID(name string) uint64 {
	sum := sha256.Sum256([]byte(name))
	if id := binary.BigEndian.Uint64(sum[:8]); id != 0 {
		return id
	}
	return 1
}

// clusterID returns the id of the static cluster initial bootstraps,
// derived from its members' names and peer addresses so that each member
// derives the same one on its own (as etcd derives its cluster id from
// the initial cluster); 0 without InitialCluster. The transport refuses
// peers that name another cluster: static members' raft ids come from
// their names alone, so two clusters with the same names would otherwise
// take each other's raft messages at a reused address.
func clusterID(initial map[string]string) uint64 {
	if len(initial) == 0 {
		return 0
	}
	names := slices.Sorted(maps.Keys(initial))
	h := sha256.New()
	h.Write([]byte("concord cluster\x00"))
	for _, name := range names {
		fmt.Fprintf(h, "%d:%s=%d:%s\n", len(name), name, len(initial[name]), initial[name])
	}
	if id := binary.BigEndian.Uint64(h.Sum(nil)[:8]); id != 0 {
		return id
	}
	return 1
}

// newMemberID returns the raft id of a new member: derived from its name
// for a static member, else random (64 bits, never 0). Gossip carries a
// random id to the others; a DataDir keeps it, and a member that left
// never comes back with it, so ids are never reused.
func newMemberID(c *Config) uint64 {
	if c.static() {
		return MemberID(c.Name)
	}
	return randomID()
}

// randomID returns a random non-zero id.
func randomID() uint64 {
	for {
		var b [8]byte
		rand.Read(b[:])
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// Member is one member of the cluster.
type Member struct {
	// ID is the member's raft id: derived from its name for a static
	// member, random for one that came through gossip.
	ID uint64
	// Name is the member's name: known for the members of InitialCluster
	// and for those gossip shows (or showed) this node; "" for others.
	Name string
	// PeerAddr is the address its raft transport is reached at
	// ("mem://<id>" for a one-node cluster that listens nowhere, and on a
	// transport.Network).
	PeerAddr string
	// GossipAddr is its gossip address; "" if gossip never showed it.
	GossipAddr string
	// IsLearner tells a non-voting member.
	IsLearner bool
	// IsLeader tells the current leader.
	IsLeader bool
	// GossipState is what gossip says of it: "alive", "suspect",
	// "dead" or "left"; "" if gossip never showed it (or the node does
	// not gossip).
	GossipState string
	// Lag is how many log entries it is behind the leader's commit
	// index, or -1 if this node cannot tell: only the leader knows the
	// others' progress; every member knows its own.
	Lag int64
	// Incarnation names the data the member last recorded it runs on
	// (its Status.Incarnation), 0 if none is recorded yet. A member that
	// comes back with new data (its DataDir wiped or lost, or kept in
	// memory) rejoins as a learner and becomes a voter again once it has
	// caught up and recorded its new incarnation: until then its votes
	// and acknowledgements do not count, since it forgot the ones it gave.
	Incarnation uint64
	// Rejoining tells a member that came back with new data and is to
	// be a voter again once it caught up (see Incarnation).
	Rejoining bool
}

// Role is "leader", "voter" or "learner".
func (m Member) Role() string {
	switch {
	case m.IsLeader:
		return "leader"
	case m.IsLearner:
		return "learner"
	}
	return "voter"
}

// Members returns the cluster's voters and learners as this node last
// saw them, sorted by name then id. It waits for Ready.
func (n *Node) Members(ctx context.Context) ([]Member, error) {
	if err := n.alive(); err != nil {
		return nil, fmt.Errorf("concord.Members: %w", err)
	}
	if err := n.waitReady(ctx); err != nil {
		return nil, fmt.Errorf("concord.Members: %w", err)
	}
	var addrs map[uint64]string
	err := n.withDB(func() error {
		addrs = n.rn.Peers()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("concord.Members: %w", err)
	}
	n.addrMu.Lock()
	for id, a := range addrs {
		n.addrs[id] = a
	}
	n.addrMu.Unlock()
	st := n.rn.Status()
	lags := n.lags(ctx, st)
	var out []Member
	for _, id := range st.Voters {
		out = append(out, n.member(id, false, st.Leader))
	}
	for _, id := range st.Learners {
		out = append(out, n.member(id, true, st.Leader))
	}
	for i := range out {
		if lag, ok := lags[out[i].ID]; ok {
			out[i].Lag = lag
		}
	}
	slices.SortFunc(out, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// member describes member id from what the node knows without I/O.
func (n *Node) member(id uint64, learner bool, leader uint64) Member {
	n.addrMu.Lock()
	addr := n.addrs[id]
	n.addrMu.Unlock()
	inc, rejoin := n.rn.Incarnation(id)
	m := Member{ID: id, Name: n.names[id], PeerAddr: addr, IsLearner: learner, IsLeader: id == leader, Lag: -1, Incarnation: inc, Rejoining: rejoin}
	n.addGossip(&m)
	return m
}

// Leader returns the leader as this node knows it, and false when it
// knows none (or is closed). It never blocks and does no I/O.
func (n *Node) Leader() (Member, bool) {
	if n.closed.Load() {
		return Member{}, false
	}
	st := n.rn.Status()
	if st.Leader == 0 {
		return Member{}, false
	}
	return n.member(st.Leader, slices.Contains(st.Learners, st.Leader), st.Leader), true
}

// IsLeader tells whether this node is the leader. It never blocks and
// does no I/O.
func (n *Node) IsLeader() bool { return !n.closed.Load() && n.rn.IsLeader() }

// TransferLeadership hands leadership to the voter with raft id to, and
// returns once to leads (at once if it already does) or ctx ends. Call it
// on the leader or on the member taking over; elsewhere it returns
// ErrNotLeader. An id that is not a voter gets ErrInvalidRequest. Writes
// pause while a transfer is under way (raft takes no proposal then), so
// the leader starts none to a member it has not heard from lately; it
// tries again while ctx lasts.
func (n *Node) TransferLeadership(ctx context.Context, to uint64) error {
	if err := n.transferLeadership(ctx, to); err != nil {
		return fmt.Errorf("concord.TransferLeadership: %w", err)
	}
	return nil
}

func (n *Node) transferLeadership(ctx context.Context, to uint64) error {
	if err := n.alive(); err != nil {
		return err
	}
	if err := n.waitReady(ctx); err != nil {
		return err
	}
	st := n.rn.Status()
	switch {
	case !slices.Contains(st.Voters, to):
		return fmt.Errorf("%w: %d is not a voter", ErrInvalidRequest, to)
	case st.Leader == to:
		return nil
	case st.Leader != n.id && to != n.id:
		// raft would forward the request to the leader in the name of
		// the transferee, which the TCP transport refuses as spoofed.
		return fmt.Errorf("%w: call it on the leader (%d) or on the member taking over (%d)", ErrNotLeader, st.Leader, to)
	}
	if err := n.rn.TransferLeadership(ctx, to); err != nil {
		return n.raftErr(err)
	}
	return nil
}

// leaveGossipTimeout bounds how long Leave waits for its gossip leave
// message to spread.
const leaveGossipTimeout = 2 * time.Second

// Leave removes this member from the cluster for good, then closes the
// node. The last voter cannot leave (ErrInvalidRequest): Close it instead.
// The DataDir of a member that left cannot be opened again; remove it to
// join anew.
//
// The member first takes the leadership, then proposes its own removal:
// only a leader learns for sure that the change is committed (a removed
// follower may never hear of it). Once it is applied the member steps
// down and the others elect a new leader, so writes pause for about an
// election timeout. Leave needs a quorum, as any membership change; if ctx
// ends first the member may or may not have been removed, and the node
// stays open. Calls in flight when the removal stops the node return
// ErrClosed, as from Close: a write among them may have been applied.
func (n *Node) Leave(ctx context.Context) error {
	if err := n.leave(ctx); err != nil {
		return fmt.Errorf("concord.Leave: %w", err)
	}
	return n.Close()
}

func (n *Node) leave(ctx context.Context) (err error) {
	if err := n.alive(); err != nil {
		return err
	}
	if err := n.waitReady(ctx); err != nil {
		return err
	}
	st := n.rn.Status()
	if len(st.Voters) == 1 && st.Voters[0] == n.id {
		return fmt.Errorf("%w: the last voter of a cluster cannot leave it; Close it instead", ErrInvalidRequest)
	}
	if n.mgr != nil {
		// The reconciler must not race this member's own removal.
		n.mgr.SetReconciling(false)
		defer func() {
			if err != nil {
				n.mgr.SetReconciling(true)
			}
		}()
	}
	if slices.Contains(st.Voters, n.id) && !n.rn.IsLeader() {
		if err := n.rn.TransferLeadership(ctx, n.id); err != nil {
			return n.raftErr(err)
		}
	}
	// Calls in flight when the removal stops the node get ErrClosed, as
	// from Close, which Leave ends with.
	n.leaving.Store(true)
	err = n.rn.RemovePeer(ctx, n.id)
	if err != nil && !errors.Is(n.rn.Err(), raftnode.ErrRemoved) {
		n.leaving.Store(false)
		return n.raftErr(err)
	}
	if n.mgr != nil {
		// Out of raft: now tell gossip, so that nobody takes this member
		// for dead. This also stops the manager, the other writer of
		// the member file.
		if err := n.mgr.Leave(leaveGossipTimeout); err != nil {
			n.log.Warn("concord: gossip leave", "err", err)
		}
	}
	if n.cfg.DataDir != "" {
		n.memberMu.Lock()
		defer n.memberMu.Unlock()
		return markLeft(n.cfg.DataDir)
	}
	return nil
}

// withDB runs fn while the DB stays open, unless the node is closed.
func (n *Node) withDB(fn func() error) error {
	n.lifeMu.RLock()
	defer n.lifeMu.RUnlock()
	if n.closed.Load() {
		return ErrClosed
	}
	return fn()
}
