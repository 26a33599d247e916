package membership

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/concordkv/concord/raftnode"
)

// Tuning is the reconciler's policy.
type Tuning struct {
	// MaxVoters caps the voters; the voter count is kept odd.
	MaxVoters int
	// Stabilization is how long a learner must have been alive in gossip
	// and active in raft, continuously, before it is promoted.
	Stabilization time.Duration
	// DeadReclaim is how long a member must have been dead in gossip, and
	// silent in raft, before it is removed.
	DeadReclaim time.Duration
}

// catchUpSlack is how far behind the leader's commit index a learner may
// be and still count as caught up.
const catchUpSlack = 100

// health is what the leader tracks of raft activity across rounds.
//
// raft clears every member's RecentActive each election timeout, and a
// member's next answer (a heartbeat's, a tick later) sets it again: a
// round that falls in between sees the member inactive. Rounds are
// periodic too, and could fall there every time; so a member counts as
// active until it has not been seen active for grace (a little over an
// election timeout).
type health struct {
	since       time.Time            // when this node became leader
	grace       time.Duration        // an inactive round this soon after an active one is not silence
	lastActive  map[uint64]time.Time // last round the member was RecentActive
	activeSince map[uint64]time.Time // start of its current active streak
}

func newHealth(now time.Time) *health {
	return &health{since: now, lastActive: map[uint64]time.Time{}, activeSince: map[uint64]time.Time{}}
}

// observe records one round of the leader's progress.
func (h *health) observe(now time.Time, prog map[uint64]raftnode.Progress) {
	for id, p := range prog {
		if !p.RecentActive {
			if !h.recent(now, id) {
				delete(h.activeSince, id)
			}
			continue
		}
		h.lastActive[id] = now
		if _, ok := h.activeSince[id]; !ok {
			h.activeSince[id] = now
		}
	}
}

// idle is how long the leader has not heard from id: since it became
// leader at most, so a new leader waits a whole DeadReclaim of its own.
func (h *health) idle(now time.Time, id uint64) time.Duration {
	t, ok := h.lastActive[id]
	if !ok || t.Before(h.since) {
		t = h.since
	}
	return now.Sub(t)
}

// recent tells whether id was seen active less than grace ago.
func (h *health) recent(now time.Time, id uint64) bool {
	t, ok := h.lastActive[id]
	return ok && now.Sub(t) < h.grace
}

func (h *health) activeFor(now time.Time, id uint64) time.Duration {
	t, ok := h.activeSince[id]
	if !ok {
		return 0
	}
	return now.Sub(t)
}

// world is what one reconciler round looks at.
type world struct {
	now      time.Time
	self     uint64 // the leader
	cluster  uint64
	voters   []uint64
	learners []uint64
	joint    bool
	progress map[uint64]raftnode.Progress
	commit   uint64
	gossip   map[uint64]NodeInfo // by raft id
	health   *health
	tuning   Tuning
}

// change is one reconciler decision; at most one of add and the role
// changes is set.
type change struct {
	add                     raftnode.Peer
	promote, demote, remove []uint64
	why                     string
}

func (c change) empty() bool {
	return c.add.ID == 0 && len(c.promote)+len(c.demote)+len(c.remove) == 0
}

// plan decides the next membership change, or none. Gossip is advice: a
// member is removed only if gossip says it is dead and raft has not heard
// from it, both for DeadReclaim, and only if the voters left still have
// a healthy quorum; promotions need raft activity too.
func plan(w world) change {
	if w.joint {
		return change{}
	}
	member := func(id uint64) bool { return slices.Contains(w.voters, id) || slices.Contains(w.learners, id) }
	healthy := func(id uint64) bool { return id == w.self || w.progress[id].RecentActive || w.health.recent(w.now, id) }
	reclaimable := func(id uint64) bool {
		g, ok := w.gossip[id]
		return id != w.self && ok && (g.State == StateDead || g.State == StateLeft) &&
			w.now.Sub(g.Since) >= w.tuning.DeadReclaim && w.health.idle(w.now, id) >= w.tuning.DeadReclaim
	}
	var c change
	var keep []uint64
	for _, id := range w.voters {
		if reclaimable(id) {
			c.remove = append(c.remove, id)
		} else {
			keep = append(keep, id)
		}
	}
	var eligible []uint64
	for _, id := range w.learners {
		g := w.gossip[id]
		switch {
		case reclaimable(id):
			c.remove = append(c.remove, id)
		case g.State == StateAlive && w.now.Sub(g.Since) >= w.tuning.Stabilization &&
			w.health.activeFor(w.now, id) >= w.tuning.Stabilization &&
			w.progress[id].Match+catchUpSlack >= w.commit:
			eligible = append(eligible, id)
		}
	}
	target := min(w.tuning.MaxVoters, len(keep)+len(eligible))
	if target%2 == 0 {
		target--
	}
	target = max(target, 1)
	switch {
	case target > len(keep):
		slices.SortFunc(eligible, func(a, b uint64) int {
			return cmp.Or(cmp.Compare(w.progress[b].Match, w.progress[a].Match), cmp.Compare(a, b))
		})
		c.promote = eligible[:target-len(keep)]
	case target < len(keep):
		// Demote the unhealthy first, then the highest ids; never the
		// leader.
		cands := slices.DeleteFunc(slices.Clone(keep), func(id uint64) bool { return id == w.self })
		slices.SortFunc(cands, func(a, b uint64) int {
			return cmp.Or(cmpBool(healthy(a), healthy(b)), cmp.Compare(b, a))
		})
		c.demote = cands[:min(len(cands), len(keep)-target)]
	}
	if !c.empty() {
		// Safe only if the old voters and the new ones each have a
		// healthy quorum: a joint change needs both. Without one, try
		// again without the removals, which are what can be put off.
		if !c.safe(w, healthy) {
			c.remove = nil
			if !c.safe(w, healthy) {
				return change{}
			}
		}
		c.why = fmt.Sprintf("voters %v: promote %v, demote %v, remove %v", w.voters, c.promote, c.demote, c.remove)
		if len(c.promote)+len(c.demote)+len(c.remove) > 0 {
			return c
		}
	}
	// Add one gossip node waiting to join this cluster as a learner. A
	// node that says it is a member but is not one was removed (reclaimed
	// while it was down) and came back on its old raft state: nobody
	// contacts an id out of the configuration, so it would wait for a
	// leader for ever. Added back, it catches up, applies its own removal
	// and stops with raftnode.ErrRemoved (the learner left behind is
	// reclaimed in turn). Only after Stabilization, as seen alive and by
	// this leader: a new leader's configuration may lag what it commits.
	var joiners []NodeInfo
	for id, g := range w.gossip {
		m := g.Meta
		if g.State != StateAlive || m.Cluster != w.cluster || m.PeerAddr == "" || member(id) {
			continue
		}
		stale := m.Phase == PhaseMember && w.now.Sub(g.Since) >= w.tuning.Stabilization &&
			w.now.Sub(w.health.since) >= w.tuning.Stabilization
		if m.Phase == PhaseJoining || stale {
			joiners = append(joiners, g)
		}
	}
	if len(joiners) == 0 {
		return change{}
	}
	j := slices.MinFunc(joiners, func(a, b NodeInfo) int { return cmp.Compare(a.Name, b.Name) })
	return change{add: raftnode.Peer{ID: j.Meta.ID, Addr: j.Meta.PeerAddr}, why: "add learner " + j.Name}
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// safe tells whether the voters before and after c each have a healthy
// quorum.
func (c change) safe(w world, healthy func(uint64) bool) bool {
	after := slices.Clone(w.voters)
	after = slices.DeleteFunc(after, func(id uint64) bool {
		return slices.Contains(c.remove, id) || slices.Contains(c.demote, id)
	})
	after = append(after, c.promote...)
	return quorate(w.voters, healthy) && quorate(after, healthy)
}

func quorate(voters []uint64, healthy func(uint64) bool) bool {
	n := 0
	for _, id := range voters {
		if healthy(id) {
			n++
		}
	}
	return len(voters) > 0 && n >= len(voters)/2+1
}
