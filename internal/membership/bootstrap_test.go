package membership

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
)

var simSeeds = flag.Int("membership.seeds", 300, "seeds of TestBootstrapNeverTwoClusters")

// simNode is one node of the bootstrap simulation.
type simNode struct {
	me      self
	started bool
	st      State
	member  bool
	history []Meta // what it published, oldest first
	seen    []int  // per other node: index into its history, -1 unseen
	alive   []bool // per other node: whether it looks alive
}

// TestBootstrapNeverTwoClusters runs decide on simulated nodes whose
// gossip views are stale, partial and flapping (but, as memberlist's,
// never go back to an older version of a node's metadata), which start
// at random times and restart keeping their persisted state. Safety: no
// node is ever in two committed initial voter sets, all records of a
// cluster agree on its set, and with fewer than 2N nodes at most one
// cluster forms. Liveness: once gossip is perfect, every node ends in a
// cluster.
func TestBootstrapNeverTwoClusters(t *testing.T) {
	seed0 := time.Now().UnixNano()
	t.Logf("seed base %d (-membership.seeds=%d)", seed0, *simSeeds)
	for s := range *simSeeds {
		seed := seed0 + int64(s)
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		expect := 1 + rng.IntN(5)
		count := expect + rng.IntN(2*expect+1) // up to 3N nodes
		if msg := simulate(rng, expect, count); msg != "" {
			t.Fatalf("seed %d (expect %d, %d nodes): %s", seed, expect, count, msg)
		}
	}
}

func simulate(rng *rand.Rand, expect, count int) string {
	nodes := make([]*simNode, count)
	for i := range nodes {
		nodes[i] = &simNode{
			me:    self{name: fmt.Sprintf("n%02d", rng.IntN(100)) + fmt.Sprint(i), id: rng.Uint64() | 1, addr: fmt.Sprintf("10.0.0.%d:1", i), expect: expect},
			seen:  slices.Repeat([]int{-1}, count),
			alive: make([]bool, count),
		}
	}
	sets := map[uint64][]raftnode.Peer{} // cluster -> committed set
	inSet := map[uint64]uint64{}         // node id -> the cluster whose set holds it
	publish := func(n *simNode) {
		n.history = append(n.history, metaFor(n.me, n.st, n.member))
	}
	var fail string
	// group[i] is node i's side of the current partition: nodes see only
	// their own side's new metadata; others look dead.
	group := make([]int, count)
	step := func(j int, perfect bool) {
		n := nodes[j]
		if !n.started {
			return
		}
		for i, o := range nodes {
			if i == j || !o.started {
				continue
			}
			if perfect {
				n.seen[i], n.alive[i] = len(o.history)-1, true
				continue
			}
			switch {
			case group[i] != group[j]:
				n.alive[i] = false
			case rng.IntN(3) == 0:
				n.seen[i] += rng.IntN(len(o.history) - n.seen[i])
				n.alive[i] = rng.IntN(10) > 0
			}
		}
		if n.st.Cluster != 0 {
			if !n.member && (perfect || rng.IntN(4) == 0) {
				n.member = true // bootstrapped, or added by the leader
				publish(n)
			}
			return
		}
		var views []View
		for i, o := range nodes {
			if i != j && n.seen[i] >= 0 {
				views = append(views, View{Name: o.me.name, Meta: o.history[n.seen[i]], Alive: n.alive[i]})
			}
		}
		next := decide(n.me, n.st, views)
		if next.equal(n.st) {
			return
		}
		n.st = next
		if next.Committed != nil {
			if prev, ok := sets[next.Cluster]; ok && !slices.Equal(prev, next.Committed) {
				fail = fmt.Sprintf("cluster %x committed as %v and %v", next.Cluster, prev, next.Committed)
			}
			sets[next.Cluster] = next.Committed
			for _, p := range next.Committed {
				if c, ok := inSet[p.ID]; ok && c != next.Cluster {
					fail = fmt.Sprintf("node %x in the initial sets of clusters %x and %x", p.ID, c, next.Cluster)
				}
				inSet[p.ID] = next.Cluster
			}
		}
		publish(n)
	}
	for range 400 * count {
		if fail != "" {
			return fail
		}
		j := rng.IntN(count)
		n := nodes[j]
		switch {
		case !n.started && rng.IntN(20) == 0:
			n.started = true
			publish(n)
		case rng.IntN(100) == 0:
			// A new partition (or none).
			sides := 1 + rng.IntN(3)
			for i := range group {
				group[i] = rng.IntN(sides)
			}
		case n.started && rng.IntN(200) == 0:
			// A restart: the view is gone, the persisted state is not.
			n.seen = slices.Repeat([]int{-1}, count)
			n.member = n.member || n.st.Committed != nil
			publish(n)
		default:
			step(j, false)
		}
	}
	for _, n := range nodes {
		if !n.started {
			n.started = true
			publish(n)
		}
	}
	for range 20 * count {
		for j := range nodes {
			step(j, true)
		}
	}
	if fail != "" {
		return fail
	}
	if count < 2*expect && len(sets) > 1 {
		return fmt.Sprintf("%d clusters formed from %d nodes: %v", len(sets), count, sets)
	}
	for _, n := range nodes {
		if _, ok := sets[n.st.Cluster]; !ok || !n.member {
			return fmt.Sprintf("node %s never got into a cluster: %+v (clusters %v)", n.me.name, n.st, sets)
		}
	}
	return ""
}

func TestMetaRoundTrip(t *testing.T) {
	ms := []Meta{
		{ID: 1, Phase: PhaseFresh, PeerAddr: "127.0.0.1:1", Expect: 3},
		{ID: ^uint64(0), Phase: PhaseAccepted, PeerAddr: "h:2", Expect: 9, Round: 7, Founder: 5, Accepted: 6, Set: []uint64{1, 5, ^uint64(0)}},
		{ID: 9, Phase: PhaseMember, Cluster: 77},
	}
	for _, m := range ms {
		b := m.encode(nil)
		if len(b) > 512 {
			t.Fatalf("%d bytes", len(b))
		}
		got, err := decodeMeta(b)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(m) {
			t.Fatalf("decode(%+v) = %+v, %v", m, got, err)
		}
		for i := range b {
			if _, err := decodeMeta(b[:i]); err == nil {
				t.Fatalf("truncated at %d decoded", i)
			}
		}
	}
	bad := ms[1]
	bad.Set = []uint64{5, 1}
	if _, err := decodeMeta(bad.encode(nil)); err == nil {
		t.Fatal("unsorted set decoded")
	}
	if _, err := decodeMeta([]byte("garbage")); err == nil {
		t.Fatal("garbage decoded")
	}
}
