package concord

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/concordkv/concord/internal/membership"
	"github.com/concordkv/concord/raftnode"
)

// gossipPeers returns the raft peers a gossip member starts with: the
// initial voter set it committed to before a crash, if any (raftnode
// uses it only while the member has no raft state), else none: it waits
// to bootstrap or to be added.
func gossipPeers(rec *memberRecord) []raftnode.Peer {
	if rec.Gossip == nil {
		return nil
	}
	return slices.Clone(rec.Gossip.Committed)
}

// startGossip starts the membership manager of a gossip member whose
// raft transport is reached at peerAddr.
func (n *Node) startGossip(rec *memberRecord, peerAddr string, log *slog.Logger) error {
	c := &n.cfg
	var st membership.State
	if rec.Gossip != nil {
		st = *rec.Gossip
	}
	var static uint64
	if c.static() {
		names := []string{c.Name}
		if len(c.InitialCluster) > 0 {
			names = slices.Collect(maps.Keys(c.InitialCluster))
		}
		static = membership.StaticClusterID(names)
	}
	election := c.TickInterval * time.Duration(c.ElectionTicks)
	mgr, err := membership.Start(membership.Config{
		Name:          c.Name,
		ID:            n.id,
		PeerAddr:      peerAddr,
		BindAddr:      c.GossipAddr,
		AdvertiseAddr: c.AdvertiseGossipAddr,
		Join:          c.Join,
		Key:           c.GossipKey,
		Local:         c.GossipLocal,
		Expect:        c.BootstrapExpect,
		StaticCluster: static,
		State:         st,
		Persist: func(st membership.State) error {
			if c.DataDir == "" {
				return nil
			}
			n.memberMu.Lock()
			defer n.memberMu.Unlock()
			return saveGossipState(c.DataDir, st)
		},
		Raft: n.rn,
		Tuning: membership.Tuning{
			MaxVoters:     c.MaxVoters,
			Stabilization: c.StabilizationTime,
			DeadReclaim:   c.DeadMemberReclaim,
		},
		Interval:  max(election/2, 20*time.Millisecond),
		OpTimeout: max(4*election, time.Second),
		Logger:    log,
	})
	if err != nil {
		return err
	}
	n.mgr = mgr
	return nil
}

// addGossip fills m's gossip fields (and its name, if unknown) from what
// gossip showed this node. It does no I/O.
func (n *Node) addGossip(m *Member) {
	if n.mgr == nil {
		return
	}
	var best *membership.NodeInfo
	for _, g := range n.mgr.Nodes() {
		if g.Meta.ID == m.ID && (best == nil || g.Since.After(best.Since)) {
			best = &g
		}
	}
	if best == nil {
		return
	}
	if m.Name == "" {
		m.Name = best.Name
	}
	m.GossipAddr, m.GossipState = best.GossipAddr, best.State.String()
}

// lags returns how far members are behind the leader's commit index:
// every member's on the leader, this node's own elsewhere.
func (n *Node) lags(ctx context.Context, st raftnode.Status) map[uint64]int64 {
	out := map[uint64]int64{n.id: int64(st.Commit) - int64(min(n.rn.AppliedIndex(), st.Commit))}
	if st.State != raft.StateLeader {
		return out
	}
	prog, commit, err := n.rn.Progress(ctx)
	if err != nil {
		return out
	}
	for id, p := range prog {
		out[id] = int64(commit) - int64(min(p.Match, commit))
	}
	return out
}
