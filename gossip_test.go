package concord_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

var gossipSeeds = flag.Int("gossip.seeds", 20, "seeds of TestGossipStaggeredStarts")

// TestGossipBootstrapExpect: three members with BootstrapExpect 3 and the
// same seeds form one cluster of three voters.
func TestGossipBootstrapExpect(t *testing.T) {
	g := newGossipCluster(t, 3, 3)
	for _, name := range names("g", 1, 3) {
		g.open(name)
	}
	g.waitRoles(30*time.Second, names("g", 1, 3), nil)
	g.sameCluster("k")
	// Gossip shows in Members: addresses, states, lags.
	ms, err := g.node("g1").Members(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		a := g.addr(m.Name)
		if m.PeerAddr != a[0] || m.GossipAddr != a[1] || m.GossipState != "alive" || m.ID == 0 {
			t.Fatalf("member %+v, want addresses %v, alive", m, a)
		}
		if m.Name == "g1" && m.Lag < 0 {
			t.Fatalf("own lag unknown: %+v", m)
		}
	}
}

// TestGossipStaggeredStarts: 3 to 5 members with BootstrapExpect 3 start
// one at a time, in a random order with random delays between them, and
// still form one cluster (the first three that see each other found it,
// the others join it). Repeated with -gossip.seeds seeds.
func TestGossipStaggeredStarts(t *testing.T) {
	base := time.Now().UnixNano()
	t.Logf("seeds %d..%d (-gossip.seeds=%d)", base, base+int64(*gossipSeeds)-1, *gossipSeeds)
	for i := range *gossipSeeds {
		seed := base + int64(i)
		rng := rand.New(rand.NewPCG(uint64(seed), 1))
		count := 3 + rng.IntN(3)
		ok := t.Run(fmt.Sprintf("seed=%d/members=%d", seed, count), func(t *testing.T) {
			g := newGossipCluster(t, 3, 3)
			order := names("g", 1, count)
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, name := range order {
				g.open(name)
				time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
			}
			voters := map[int]int{3: 3, 4: 3, 5: 5}[count]
			g.waitShape(60*time.Second, voters, count-voters)
			g.sameCluster("k")
		})
		if !ok {
			t.Fatalf("seed %d failed", seed)
		}
	}
}

// TestGossipGrowShrinkReclaim: a 4th and 5th member join and become
// voters, a 6th stays a learner; Leave shrinks the cluster (a learner is
// promoted to keep 5 voters, then a voter is demoted to keep the count
// odd); a killed member is reclaimed after DeadMemberReclaim while the
// cluster keeps its leader throughout.
func TestGossipGrowShrinkReclaim(t *testing.T) {
	g := newGossipCluster(t, 3, 3)
	for _, name := range names("g", 1, 3) {
		g.open(name)
	}
	g.waitRoles(30*time.Second, names("g", 1, 3), nil)
	put(t, g.node("g1"), "before", "1")
	g.open("g4")
	g.open("g5")
	g.waitRoles(30*time.Second, names("g", 1, 5), nil)
	g.open("g6")
	g.waitRoles(30*time.Second, names("g", 1, 5), []string{"g6"})
	if v := value(t, g.node("g6"), "before", concord.WithSerializable()); v != "1" {
		t.Fatalf("learner g6 reads before = %q", v)
	}

	// Leave: g1 goes, g6 is promoted to keep five voters.
	leave(t, g, "g1")
	g.waitRoles(30*time.Second, names("g", 2, 6), nil)
	// Leave again: four voters left, one is demoted.
	leave(t, g, "g2")
	voters, learners := g.waitShape(30*time.Second, 3, 1)
	t.Logf("after two leaves: voters %v learners %v", voters, learners)

	// Kill a voter that does not lead: it is reclaimed, the learner is
	// promoted in the same change, and the leader never changes.
	lead := leaderName(t, g)
	victim := voters[0]
	if victim == lead {
		victim = voters[1]
	}
	stop := watchLeader(t, g, lead)
	g.close(victim)
	rest := slices.DeleteFunc(slices.Concat(voters, learners), func(s string) bool { return s == victim })
	slices.Sort(rest)
	g.waitRoles(60*time.Second, rest, nil)
	stop()
	g.sameCluster("after")

	// The reclaimed voter reopened on its data dir is added back as a
	// learner, catches up and stops on its own removal.
	n := g.open(victim)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Ready(ctx); !errors.Is(err, concord.ErrRemoved) {
		t.Fatalf("reclaimed voter %s reopened: Ready = %v, want ErrRemoved", victim, err)
	}
}

// TestGossipReclaimedLearnerStopsRemoved: a learner reclaimed while it
// was down, reopened on its data dir, is added back as a learner and
// learns that it was removed as it catches up: Ready and its calls fail
// with ErrRemoved (and ErrStopped), and Err says so; its watches, made
// before or after, end with one Canceled response saying so.
func TestGossipReclaimedLearnerStopsRemoved(t *testing.T) {
	g := newGossipCluster(t, 3, 3)
	for _, name := range names("g", 1, 4) {
		g.open(name)
	}
	voters, learners := g.waitShape(30*time.Second, 3, 1)
	victim := learners[0]
	g.close(victim)
	g.waitRoles(60*time.Second, voters, nil)
	n := g.open(victim)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	early := n.Watch(ctx, "k")
	err := n.Ready(ctx)
	if !errors.Is(err, concord.ErrRemoved) || !errors.Is(err, concord.ErrStopped) || !errors.Is(n.Err(), concord.ErrRemoved) {
		t.Fatalf("reclaimed %s reopened: Ready = %v, Err = %v; want ErrStopped and ErrRemoved", victim, err, n.Err())
	}
	if _, err := n.Put(ctx, "k", "v"); !errors.Is(err, concord.ErrRemoved) {
		t.Fatalf("Put on the reclaimed %s: %v, want ErrRemoved", victim, err)
	}
	for what, wc := range map[string]concord.WatchChan{"before": early, "after": n.Watch(ctx, "k")} {
		select {
		case r, ok := <-wc:
			if !ok || !r.Canceled || !errors.Is(r.Err(), concord.ErrRemoved) {
				t.Fatalf("a watch made %s the removal: %+v (open %v), err %v; want Canceled with ErrRemoved", what, r, ok, r.Err())
			}
		case <-ctx.Done():
			t.Fatalf("a watch made %s the removal got nothing", what)
		}
	}
	// For good: the cluster may have added the old id back as a learner
	// when it saw the member alive; the DataDir still never rejoins.
	g.close(victim)
	for range 2 {
		if n, err := concord.Open(ctx, g.config(victim)); !errors.Is(err, concord.ErrRemoved) {
			if err == nil {
				n.Close()
			}
			t.Fatalf("reclaimed %s opened again: %v, want ErrRemoved", victim, err)
		}
	}
}

// leave makes member name leave and forgets it.
func leave(t *testing.T, g *gossipCluster, name string) {
	t.Helper()
	n := g.node(name)
	if err := n.Leave(testCtx(t)); err != nil {
		t.Fatalf("Leave %s: %v", name, err)
	}
	g.mu.Lock()
	delete(g.nodes, name)
	g.mu.Unlock()
}

func leaderName(t *testing.T, g *gossipCluster) string {
	for _, n := range g.open_() {
		if n.IsLeader() {
			return n.Status().Name
		}
	}
	t.Fatal("no leader")
	return ""
}

// watchLeader samples every member's view of the leader until stop is
// called, and fails the test if any open member ever saw another leader
// than name, or if the leader itself stopped leading.
func watchLeader(t *testing.T, g *gossipCluster, name string) (stop func()) {
	lead := g.node(name)
	id := lead.Status().ID
	done := make(chan struct{})
	var wg sync.WaitGroup
	var bad error
	samples := 0
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			samples++
			if !lead.IsLeader() {
				bad = errors.New(name + " stopped leading")
				return
			}
			for _, n := range g.open_() {
				if l, ok := n.Leader(); ok && l.ID != id {
					bad = fmt.Errorf("%s saw leader %s", n.Status().Name, l.Name)
					return
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		if bad != nil {
			t.Fatal(bad)
		}
		t.Logf("leader %s led throughout (%d samples)", name, samples)
	}
}

// TestGossipWrongKeyCannotJoin: a member whose GossipKey differs from the
// cluster's never shows up in it and never becomes ready; one with the
// right key joins.
func TestGossipWrongKeyCannotJoin(t *testing.T) {
	g := newGossipCluster(t, 3, 3)
	g.key = []byte("0123456789abcdef")
	for _, name := range names("g", 1, 3) {
		g.open(name)
	}
	g.waitRoles(30*time.Second, names("g", 1, 3), nil)

	cfg := g.config("intruder")
	cfg.GossipKey = []byte("fedcba9876543210")
	bad := g.openWith(cfg)
	cfg = g.config("plain")
	cfg.GossipKey = nil
	plain := g.openWith(cfg)
	g.mu.Lock()
	delete(g.nodes, "intruder")
	delete(g.nodes, "plain")
	g.mu.Unlock()
	defer bad.Close()
	defer plain.Close()

	// The right key joins meanwhile: the cluster works and grows.
	g.open("g4")
	g.waitRoles(30*time.Second, names("g", 1, 3), []string{"g4"})
	for _, n := range []*concord.Node{bad, plain} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := n.Ready(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: Ready = %v, want a timeout", n.Status().Name, err)
		}
	}
	for _, n := range g.open_() {
		ms, err := n.Members(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Name == "intruder" || m.Name == "plain" {
				t.Fatalf("%s sees %+v", n.Status().Name, m)
			}
		}
	}
}

// TestGossipStaticCluster: a static three-member cluster that gossips
// takes gossip joiners (Join, no BootstrapExpect) as voters, though they
// have no cluster id.
func TestGossipStaticCluster(t *testing.T) {
	g := newGossipCluster(t, 0, 3)
	initial := map[string]string{}
	for _, name := range names("g", 1, 3) {
		initial[name] = g.addr(name)[0]
	}
	for _, name := range names("g", 1, 3) {
		cfg := g.config(name)
		cfg.InitialCluster = initial
		g.openWith(cfg)
	}
	g.waitRoles(30*time.Second, names("g", 1, 3), nil)
	st := g.node("g1").Status()
	put(t, g.node("g1"), "static", "1")
	g.open("g4")
	g.open("g5")
	g.waitRoles(30*time.Second, names("g", 1, 5), nil)
	if v := value(t, g.node("g5"), "static"); v != "1" {
		t.Fatalf("joiner reads %q", v)
	}
	if st.ID != g.node("g1").Status().ID {
		t.Fatal("static member's id changed")
	}
	// The static members share a cluster id; the joiners have none (their
	// hellos go unchecked, and they check none).
	for _, name := range names("g", 1, 5) {
		id := g.node(name).Status().ClusterID
		if static := name <= "g3"; static && (id == 0 || id != st.ClusterID) || !static && id != 0 {
			t.Fatalf("%s has cluster id %x (g1 %x)", name, id, st.ClusterID)
		}
	}
}

// TestGossipRestartKeepsMembership: a gossip member closed and reopened
// on its data dir keeps its raft id and its place; one that left cannot
// reopen its data dir.
func TestGossipRestartKeepsMembership(t *testing.T) {
	g := newGossipCluster(t, 3, 3)
	for _, name := range names("g", 1, 3) {
		g.open(name)
	}
	g.waitRoles(30*time.Second, names("g", 1, 3), nil)
	id := g.node("g2").Status().ID
	g.close("g2")
	put(t, g.node("g1"), "while-away", "1")
	n := g.open("g2")
	if n.Status().ID != id {
		t.Fatalf("id %x after restart, was %x", n.Status().ID, id)
	}
	g.waitRoles(30*time.Second, names("g", 1, 3), nil)
	if v := value(t, n, "while-away", concord.WithSerializable()); v != "1" {
		t.Fatalf("reopened member reads %q", v)
	}
	g.open("g4")
	g.waitRoles(30*time.Second, names("g", 1, 3), []string{"g4"})
	leave(t, g, "g4")
	g.waitRoles(30*time.Second, names("g", 1, 3), nil)
	if _, err := concord.Open(context.Background(), g.config("g4")); !errors.Is(err, concord.ErrInvalidConfig) {
		t.Fatalf("reopening a left member: %v", err)
	}
}

// TestGossipJoinRetriesSeeds: a member whose seed (a host name) is not up
// yet keeps trying with backoff and joins once it is.
func TestGossipJoinRetriesSeeds(t *testing.T) {
	g := newGossipCluster(t, 0, 0)
	_, port, _ := strings.Cut(g.addr("a")[1], ":")
	cfg := g.config("b")
	cfg.Join = []string{"localhost:" + port}
	g.openWith(cfg)
	time.Sleep(300 * time.Millisecond) // b's first attempts fail
	cfg = g.config("a")
	cfg.Join = nil // a lone member that gossips
	g.openWith(cfg)
	g.waitRoles(30*time.Second, []string{"a"}, []string{"b"})
	g.sameCluster("k")
}

// TestGossipInMemoryRestartIsNewMember: a member without a data dir that
// restarts under the same name is a new member with a new raft id; the
// old id is reclaimed once gossip and raft agree it is gone.
func TestGossipInMemoryRestartIsNewMember(t *testing.T) {
	g := newGossipCluster(t, 3, 3)
	inMemory := func(name string) concord.Config {
		cfg := g.config(name)
		cfg.DataDir = ""
		return cfg
	}
	for _, name := range names("g", 1, 3) {
		g.openWith(inMemory(name))
	}
	g.waitRoles(30*time.Second, names("g", 1, 3), nil)
	put(t, g.node("g1"), "k", "v")
	victim := "g3"
	if g.node(victim).IsLeader() {
		victim = "g2"
	}
	old := g.node(victim).Status().ID
	g.close(victim)
	n := g.openWith(inMemory(victim))
	if n.Status().ID == old {
		t.Fatal("an in-memory member came back with its old raft id")
	}
	g.waitRoles(60*time.Second, names("g", 1, 3), nil)
	ms, err := g.node("g1").Members(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == old {
			t.Fatalf("old id %x still a member: %+v", old, ms)
		}
	}
	if v := value(t, n, "k"); v != "v" {
		t.Fatalf("new member reads %q", v)
	}
}

// TestGossipReclaimedBehindSnapshotRejoins: a learner is reclaimed while
// down, and the members' logs are then compacted past its removal. When it
// restarts on its old data it cannot learn of the removal: the learner it
// is re-added as catches up from a snapshot that already holds the re-add,
// so it comes back as a working member of the cluster with all its data.
func TestGossipReclaimedBehindSnapshotRejoins(t *testing.T) {
	g := newGossipCluster(t, 3, 3)
	small := func(name string) concord.Config {
		cfg := g.config(name)
		cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 40, 10
		return cfg
	}
	for _, name := range names("g", 1, 4) {
		g.openWith(small(name))
	}
	voters, learners := g.waitShape(30*time.Second, 3, 1)
	victim := learners[0]
	g.close(victim)
	g.waitRoles(60*time.Second, voters, nil)
	ctx := testCtx(t)
	w := g.node(voters[0])
	for i := range 200 {
		if _, err := w.Put(ctx, fmt.Sprintf("after/%03d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	n := g.openWith(small(victim))
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.Ready(rctx); err != nil {
		t.Fatalf("reclaimed %s reopened behind a snapshot: Ready = %v, Err = %v", victim, err, n.Err())
	}
	g.waitFor(60*time.Second, victim+" back in the configuration", func(_ int, vs, ls []string) bool {
		return slices.Contains(vs, victim) || slices.Contains(ls, victim)
	})
	resp, err := n.Get(rctx, "after/", concord.WithPrefix(), concord.WithCountOnly())
	if err != nil || resp.Count != 200 {
		t.Fatalf("linearizable count on the rejoined %s: %v, %v; want 200", victim, resp, err)
	}
	if _, err := n.Put(rctx, "back", victim); err != nil {
		t.Fatalf("Put on the rejoined %s: %v", victim, err)
	}
}
