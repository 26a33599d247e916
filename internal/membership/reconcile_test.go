package membership

import (
	"fmt"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
)

// member describes one member for a plan test: its raft progress and
// gossip state, each held for a duration before now.
type member struct {
	id        uint64
	learner   bool
	active    bool          // raft RecentActive now
	idle      time.Duration // raft silent for (0: active all along)
	gossip    GossipState   // 0: never seen in gossip
	gossipFor time.Duration
	behind    uint64
}

var tune = Tuning{MaxVoters: 5, Stabilization: 10 * time.Second, DeadReclaim: time.Minute}

// world builds a plan input at a fixed now; leader 1 has led for an hour.
func testWorld(ms ...member) world {
	now := time.Unix(1e6, 0)
	w := world{
		now: now, self: 1, cluster: 7, commit: 1000,
		progress: map[uint64]raftnode.Progress{}, gossip: map[uint64]NodeInfo{},
		health: newHealth(now.Add(-time.Hour)), tuning: tune,
	}
	for _, m := range ms {
		if m.learner {
			w.learners = append(w.learners, m.id)
		} else {
			w.voters = append(w.voters, m.id)
		}
		w.progress[m.id] = raftnode.Progress{Match: 1000 - m.behind, RecentActive: m.active, IsLearner: m.learner}
		if m.active {
			w.health.lastActive[m.id] = now
			w.health.activeSince[m.id] = now.Add(-time.Hour)
		} else {
			w.health.lastActive[m.id] = now.Add(-m.idle)
		}
		if m.gossip != 0 {
			w.gossip[m.id] = NodeInfo{Name: fmt.Sprint("n", m.id), State: m.gossip, Since: now.Add(-m.gossipFor),
				Meta: Meta{ID: m.id, Phase: PhaseMember, Cluster: 7}}
		}
	}
	return w
}

func alive(id uint64) member {
	return member{id: id, active: true, gossip: StateAlive, gossipFor: time.Hour}
}

func TestPlan(t *testing.T) {
	dead := func(id uint64, d time.Duration) member {
		return member{id: id, idle: d, gossip: StateDead, gossipFor: d}
	}
	learner := func(m member) member { m.learner = true; return m }
	forgedDead := alive(3)
	forgedDead.gossip, forgedDead.gossipFor = StateDead, time.Hour // raft still hears it
	cases := []struct {
		name string
		ms   []member
		want string
	}{
		{"stable three", []member{alive(1), alive(2), alive(3)}, ""},
		{"two learners promoted together", []member{alive(1), alive(2), alive(3), learner(alive(4)), learner(alive(5))},
			"promote [4 5] demote [] remove []"},
		{"one learner stays (even)", []member{alive(1), alive(2), alive(3), learner(alive(4))}, ""},
		{"sixth stays learner", []member{alive(1), alive(2), alive(3), alive(4), alive(5), learner(alive(6))}, ""},
		{"lagging learner not promoted", []member{alive(1), alive(2), alive(3), learner(alive(4)), learner(member{id: 5, active: true, gossip: StateAlive, gossipFor: time.Hour, behind: 500})}, ""},
		{"unstable learner not promoted", []member{alive(1), alive(2), alive(3), learner(alive(4)), learner(member{id: 5, active: true, gossip: StateAlive, gossipFor: time.Second})}, ""},
		{"even voters: demote highest", []member{alive(1), alive(2), alive(3), alive(4)}, "promote [] demote [4] remove []"},
		{"even voters: demote the unhealthy first", []member{alive(1), alive(2), member{id: 3, idle: time.Second, gossip: StateSuspect, gossipFor: time.Second}, alive(4)},
			"promote [] demote [3] remove []"},
		{"dead voter reclaimed with learner promoted", []member{alive(1), alive(2), alive(3), alive(4), dead(5, 2*time.Minute), learner(alive(6))},
			"promote [6] demote [] remove [5]"},
		{"dead too briefly", []member{alive(1), alive(2), dead(3, 30*time.Second)}, ""},
		{"gossip says dead but raft hears it", []member{alive(1), alive(2), forgedDead}, ""},
		{"no healthy quorum left: no removal", []member{alive(1), dead(2, time.Hour), dead(3, time.Hour)}, ""},
		{"dead learner removed", []member{alive(1), alive(2), alive(3), learner(dead(4, time.Hour))}, "promote [] demote [] remove [4]"},
		{"never gossiped: never reclaimed", []member{alive(1), alive(2), alive(3), {id: 4, learner: true, idle: time.Hour}}, ""},
	}
	for _, c := range cases {
		got := plan(testWorld(c.ms...))
		s := ""
		if !got.empty() {
			s = fmt.Sprintf("promote %v demote %v remove %v", orEmpty(got.promote), orEmpty(got.demote), orEmpty(got.remove))
		}
		if s != c.want {
			t.Errorf("%s: plan = %q, want %q", c.name, s, c.want)
		}
	}
}

func orEmpty(ids []uint64) []uint64 {
	if ids == nil {
		return []uint64{}
	}
	return ids
}

// TestPlanNewLeaderWaits: a leader that just took over has not heard
// from anyone for long, so it removes nobody before a DeadReclaim of its
// own, whatever gossip says.
func TestPlanNewLeaderWaits(t *testing.T) {
	w := testWorld(alive(1), alive(2), alive(3), alive(4), member{id: 5, gossip: StateDead, gossipFor: time.Hour})
	w.health = newHealth(w.now.Add(-time.Second))
	w.health.observe(w.now, w.progress)
	if c := plan(w); len(c.remove) > 0 {
		t.Fatalf("new leader removes %v", c.remove)
	}
	w.now = w.now.Add(2 * time.Minute)
	if c := plan(w); len(c.remove) != 1 || c.remove[0] != 5 {
		t.Fatalf("after DeadReclaim: %+v", c)
	}
}

// TestPlanAddsJoiner: a gossip node joining this cluster is added as a
// learner; one joining another cluster, or not alive, is not.
func TestPlanAddsJoiner(t *testing.T) {
	w := testWorld(alive(1), alive(2), alive(3))
	w.gossip[9] = NodeInfo{Name: "other", State: StateAlive, Meta: Meta{ID: 9, Phase: PhaseJoining, Cluster: 8, PeerAddr: "x:1"}}
	w.gossip[10] = NodeInfo{Name: "gone", State: StateDead, Meta: Meta{ID: 10, Phase: PhaseJoining, Cluster: 7, PeerAddr: "x:2"}}
	if c := plan(w); !c.empty() {
		t.Fatalf("plan = %+v", c)
	}
	w.gossip[11] = NodeInfo{Name: "new", State: StateAlive, Meta: Meta{ID: 11, Phase: PhaseJoining, Cluster: 7, PeerAddr: "x:3"}}
	if c := plan(w); c.add != (raftnode.Peer{ID: 11, Addr: "x:3"}) {
		t.Fatalf("plan = %+v", c)
	}
	w.joint = true
	if c := plan(w); !c.empty() {
		t.Fatalf("joint: plan = %+v", c)
	}
}

// TestPlanAddsBackRemovedMember: a node alive in gossip that says it is a
// member of this cluster but is not in its configuration (removed while
// it was down, back on its old state) is added back as a learner, so that
// it learns of its removal; not before it has been alive, and this leader
// has led, for Stabilization.
func TestPlanAddsBackRemovedMember(t *testing.T) {
	w := testWorld(alive(1), alive(2), alive(3))
	back := NodeInfo{Name: "back", State: StateAlive, Since: w.now.Add(-time.Second), Meta: Meta{ID: 12, Phase: PhaseMember, Cluster: 7, PeerAddr: "x:4"}}
	w.gossip[12] = back
	if c := plan(w); !c.empty() {
		t.Fatalf("just back: plan = %+v", c)
	}
	back.Since = w.now.Add(-time.Minute)
	w.gossip[12] = back
	if c := plan(w); c.add != (raftnode.Peer{ID: 12, Addr: "x:4"}) {
		t.Fatalf("back for a minute: plan = %+v", c)
	}
	w.health = newHealth(w.now.Add(-time.Second))
	if c := plan(w); !c.empty() {
		t.Fatalf("new leader: plan = %+v", c)
	}
	w.health = newHealth(w.now.Add(-time.Hour))
	w.gossip[13] = NodeInfo{Name: "other", State: StateAlive, Since: w.now.Add(-time.Hour), Meta: Meta{ID: 13, Phase: PhaseMember, Cluster: 8, PeerAddr: "x:5"}}
	delete(w.gossip, 12)
	if c := plan(w); !c.empty() {
		t.Fatalf("member of another cluster: plan = %+v", c)
	}
}

// TestHealthRidesOverRecentActiveResets: raft clears RecentActive every
// election timeout until the member's next answer; rounds that keep
// landing in that gap (both are periodic) must not keep a learner's
// active streak from ever reaching Stabilization. A member silent for
// longer than grace does lose its streak.
func TestHealthRidesOverRecentActiveResets(t *testing.T) {
	const round = 50 * time.Millisecond
	start := time.Unix(1e6, 0)
	h := newHealth(start)
	h.grace = 3 * round
	now := start
	for i := range 20 { // every other round falls just after a reset
		h.observe(now, map[uint64]raftnode.Progress{2: {RecentActive: i%2 == 0}})
		now = now.Add(round)
	}
	if got := h.activeFor(now, 2); got < 900*time.Millisecond {
		t.Fatalf("active for %v after 20 rounds, every other one just after a reset; want about 1s", got)
	}
	if !h.recent(now, 2) {
		t.Fatal("a member active a round ago is not recent")
	}
	for range 4 { // silent for 4 rounds: longer than grace
		h.observe(now, map[uint64]raftnode.Progress{2: {}})
		now = now.Add(round)
	}
	if got := h.activeFor(now, 2); got != 0 || h.recent(now, 2) {
		t.Fatalf("after %v of silence: active for %v, recent %v; want 0 and false", 4*round, got, h.recent(now, 2))
	}
}
