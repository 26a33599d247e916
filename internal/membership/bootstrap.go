package membership

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"github.com/concordkv/concord/raftnode"
)

// State is what a node must remember across restarts about its way into a
// cluster. The manager persists it before it publishes anything derived
// from it: a restarted node must never take back a round, an acceptance or
// a commit that others may have seen.
type State struct {
	// Round is the node's latest founder round: it only grows.
	Round uint64 `json:"round,omitempty"`
	// Proposal is the set proposed under Round, nil if none.
	Proposal []raftnode.Peer `json:"proposal,omitempty"`
	// Accepted is the proposal the node is bound to, nil if none.
	Accepted *Ballot `json:"accepted,omitempty"`
	// Cluster is the cluster the node belongs to or joins; 0 none yet.
	Cluster uint64 `json:"cluster,omitempty"`
	// Committed is the initial voter set the node bootstraps raft with,
	// kept so that a crash before raft persisted it repeats the same
	// bootstrap.
	Committed []raftnode.Peer `json:"committed,omitempty"`
}

// Ballot is a founder's proposal as an acceptor recorded it.
type Ballot struct {
	Founder uint64          `json:"founder"`
	Round   uint64          `json:"round"`
	Set     []raftnode.Peer `json:"set"`
}

func (s State) clone() State {
	s.Proposal = slices.Clone(s.Proposal)
	s.Committed = slices.Clone(s.Committed)
	if s.Accepted != nil {
		b := *s.Accepted
		b.Set = slices.Clone(b.Set)
		s.Accepted = &b
	}
	return s
}

func (s State) equal(o State) bool {
	same := func(a, b []raftnode.Peer) bool { return slices.Equal(a, b) }
	switch {
	case s.Round != o.Round || s.Cluster != o.Cluster:
		return false
	case !same(s.Proposal, o.Proposal) || !same(s.Committed, o.Committed):
		return false
	case (s.Accepted == nil) != (o.Accepted == nil):
		return false
	case s.Accepted != nil:
		a, b := s.Accepted, o.Accepted
		return a.Founder == b.Founder && a.Round == b.Round && same(a.Set, b.Set)
	}
	return true
}

// ClusterID names the cluster a founder's round commits: every member of
// the set computes the same id from the proposal.
func ClusterID(founder, round uint64, set []uint64) uint64 {
	b := []byte("concord/cluster/gossip")
	b = binary.BigEndian.AppendUint64(b, founder)
	b = binary.BigEndian.AppendUint64(b, round)
	for _, id := range set {
		b = binary.BigEndian.AppendUint64(b, id)
	}
	return hashID(b)
}

// StaticClusterID names a cluster bootstrapped from a static member list
// (a lone node lists itself).
func StaticClusterID(names []string) uint64 {
	b := []byte("concord/cluster/static")
	for _, n := range slices.Sorted(slices.Values(names)) {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
	}
	return hashID(b)
}

func hashID(b []byte) uint64 {
	sum := sha256.Sum256(b)
	if id := binary.BigEndian.Uint64(sum[:8]); id != 0 {
		return id
	}
	return 1
}

func ids(ps []raftnode.Peer) []uint64 {
	out := make([]uint64, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

// View is a gossip node as the deciding node sees it.
type View struct {
	Name  string
	Meta  Meta
	Alive bool
}

// self describes the deciding node.
type self struct {
	name   string
	id     uint64
	addr   string
	expect int
}

// decide is the bootstrap step of a node with no raft state and no
// cluster (st.Cluster == 0): from its state and what gossip shows it
// returns the next state. The caller persists a changed state, then
// publishes it; a state with Cluster set means join that cluster, and
// with Committed set too, bootstrap raft with Committed. One change is
// made per call: an abort is published before anything follows from it.
// See the package doc for why this never forms two clusters.
func decide(me self, st State, nodes []View) State {
	st = st.clone()
	byID := map[uint64]View{}
	var alive []View
	for _, v := range nodes {
		if v.Meta.ID == me.id {
			continue
		}
		byID[v.Meta.ID] = v
		if v.Alive {
			alive = append(alive, v)
		}
	}
	// 1. Bound to a proposal: wait for its founder's decision.
	if b := st.Accepted; b != nil {
		c := ClusterID(b.Founder, b.Round, ids(b.Set))
		for _, v := range alive {
			if v.Meta.Phase == PhaseMember && v.Meta.Cluster == c {
				st.Cluster, st.Committed = c, b.Set
				return st
			}
		}
		// A founder publishes a higher round only after it persisted it,
		// and never commits an older one after that: the ballot is dead.
		if f, ok := byID[b.Founder]; !ok || f.Meta.Round <= b.Round {
			return st
		}
		st.Accepted = nil
	}
	// 2. A cluster exists: join it (a proposal of ours dies first).
	var cluster uint64
	for _, v := range alive {
		if v.Meta.Phase == PhaseMember && v.Meta.Cluster != 0 && (cluster == 0 || v.Meta.Cluster < cluster) {
			cluster = v.Meta.Cluster
		}
	}
	if cluster != 0 {
		if st.Proposal != nil {
			return abort(st)
		}
		st.Cluster = cluster
		return st
	}
	if me.expect == 0 {
		return st // joins only: waits for a member to show up
	}
	// 3. The lowest of the candidates founds: it proposes the first
	// expect of them, and commits once all of those accepted.
	cands := []View{{Name: me.name, Meta: Meta{ID: me.id, PeerAddr: me.addr, Expect: me.expect}, Alive: true}}
	for _, v := range alive {
		m := v.Meta
		if m.Expect != me.expect || m.PeerAddr == "" {
			continue
		}
		if m.Phase == PhaseFresh || m.Phase == PhaseProposing || (m.Phase == PhaseAccepted && m.Founder == me.id) {
			cands = append(cands, v)
		}
	}
	slices.SortFunc(cands, func(a, b View) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Meta.ID, b.Meta.ID))
	})
	if len(cands) >= me.expect && cands[0].Meta.ID == me.id {
		set := make([]raftnode.Peer, me.expect)
		for i, v := range cands[:me.expect] {
			set[i] = raftnode.Peer{ID: v.Meta.ID, Addr: v.Meta.PeerAddr}
		}
		slices.SortFunc(set, func(a, b raftnode.Peer) int { return cmp.Compare(a.ID, b.ID) })
		if !slices.Equal(st.Proposal, set) {
			st.Round++
			st.Proposal = set
			return st
		}
		for _, p := range set {
			v := byID[p.ID]
			m := v.Meta
			if p.ID != me.id && !(v.Alive && m.Phase == PhaseAccepted && m.Founder == me.id && m.Accepted == st.Round && slices.Equal(m.Set, ids(set))) {
				return st // not all accepted yet
			}
		}
		st.Cluster, st.Committed = ClusterID(me.id, st.Round, ids(set)), set
		return st
	}
	if st.Proposal != nil {
		return abort(st)
	}
	// 4. Accept the lowest proposal naming us whose every member is
	// visible (their addresses are needed to bootstrap).
	var best *Ballot
	var bestName string
	for _, v := range alive {
		m := v.Meta
		if m.Phase != PhaseProposing || m.Expect != me.expect || !slices.Contains(m.Set, me.id) {
			continue
		}
		if best != nil && cmp.Or(cmp.Compare(v.Name, bestName), cmp.Compare(m.ID, best.Founder)) > 0 {
			continue
		}
		set, ok := resolve(me, m.Set, byID)
		if !ok {
			continue
		}
		best, bestName = &Ballot{Founder: m.ID, Round: m.Round, Set: set}, v.Name
	}
	st.Accepted = best
	return st
}

// abort gives up the node's proposal: a higher round tells its acceptors.
func abort(st State) State {
	st.Round++
	st.Proposal = nil
	return st
}

// resolve returns the peers of set, every one visible and alive (or me).
func resolve(me self, set []uint64, byID map[uint64]View) ([]raftnode.Peer, bool) {
	out := make([]raftnode.Peer, 0, len(set))
	for _, id := range set {
		if id == me.id {
			out = append(out, raftnode.Peer{ID: id, Addr: me.addr})
			continue
		}
		v, ok := byID[id]
		if !ok || !v.Alive || v.Meta.PeerAddr == "" {
			return nil, false
		}
		out = append(out, raftnode.Peer{ID: id, Addr: v.Meta.PeerAddr})
	}
	return out, true
}

// metaFor is the metadata a node publishes for its state; member tells
// that its raft peer has state (it was added to, or bootstrapped, a
// cluster).
func metaFor(me self, st State, member bool) Meta {
	m := Meta{ID: me.id, PeerAddr: me.addr, Expect: me.expect, Round: st.Round}
	switch {
	case st.Cluster != 0 && (member || st.Committed != nil):
		m.Phase, m.Cluster = PhaseMember, st.Cluster
	case st.Cluster != 0:
		m.Phase, m.Cluster = PhaseJoining, st.Cluster
	case st.Accepted != nil:
		m.Phase, m.Founder, m.Accepted, m.Set = PhaseAccepted, st.Accepted.Founder, st.Accepted.Round, ids(st.Accepted.Set)
	case st.Proposal != nil:
		m.Phase, m.Set = PhaseProposing, ids(st.Proposal)
	default:
		m.Phase = PhaseFresh
	}
	return m
}
