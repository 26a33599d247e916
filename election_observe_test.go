package concord_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

// electSeen collects what an Observe channel delivers.
type electSeen struct {
	mu     sync.Mutex
	got    []concord.Leader[string] // guarded by mu
	closed bool                     // guarded by mu
}

// electObserve starts reading e.Observe(ctx) into an electSeen.
func electObserve(t *testing.T, ctx context.Context, e *concord.Election[string]) *electSeen {
	t.Helper()
	s := &electSeen{}
	ch := e.Observe(ctx)
	go func() {
		for l := range ch {
			s.mu.Lock()
			s.got = append(s.got, l)
			s.mu.Unlock()
		}
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
	}()
	return s
}

func (s *electSeen) list() []concord.Leader[string] {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// values returns the values seen, "-" for "no leader".
func (s *electSeen) values() []string {
	var out []string
	for _, l := range s.list() {
		if l == (concord.Leader[string]{}) {
			out = append(out, "-")
		} else {
			out = append(out, l.Value)
		}
	}
	return out
}

// waitValues waits until the observer has seen want, and fails if it saw
// anything else.
func (s *electSeen) waitValues(t *testing.T, what string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := s.values()
		if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
			t.Fatalf("%s: observer saw %q, want %q", what, got, want)
		}
		if len(got) == len(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: observer saw %q after 20s, want %q", what, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// electCheckTerms checks one observer's sequence: a token belongs to one
// key only (one leader per term), and a new leader's token is above
// every earlier one.
func electCheckTerms(t *testing.T, who string, seq []concord.Leader[string], terms map[int64]string) {
	t.Helper()
	var last int64
	for _, l := range seq {
		if l.Key == "" {
			if l.Token != 0 || l.Value != "" {
				t.Fatalf("%s: a no-leader entry that is not the zero Leader: %+v", who, l)
			}
			continue
		}
		if k, ok := terms[l.Token]; ok && k != l.Key {
			t.Fatalf("%s: token %d led by %s and %s", who, l.Token, k, l.Key)
		}
		terms[l.Token] = l.Key
		if l.Token < last {
			t.Fatalf("%s: token %d after %d: %v", who, l.Token, last, seq)
		}
		last = l.Token
	}
}

// TestElectionObserveEveryChange: Observe reports the current leader
// first, then each change in order: Proclaim, a hand-over on Resign,
// "no leader" (the zero Leader) when the last key goes, a new leader. An
// observer that reads only at the end misses nothing, and the channel
// closes when ctx ends.
func TestElectionObserveEveryChange(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	octx, stop := context.WithCancel(ctx)
	newE := func() *concord.Election[string] {
		return concord.NewElection[string](newSession(t, n), "elect/observe")
	}
	a, b := newE(), newE()
	early := electObserve(t, octx, a)
	early.waitValues(t, "no campaigner", "-")
	slow := a.Observe(octx) // read only at the end

	if err := a.Campaign(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	late := electObserve(t, octx, b)
	late.waitValues(t, "late observer", "a1")
	if err := a.Proclaim(ctx, "a2"); err != nil {
		t.Fatal(err)
	}
	errc := electCampaign(t, ctx, b, "b1") // queued: no change
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := electResult(t, errc, "b"); err != nil {
		t.Fatal(err)
	}
	if err := b.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	c := newE()
	if err := c.Campaign(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	want := []string{"-", "a1", "a2", "b1", "-", "c1"}
	early.waitValues(t, "early observer", want...)
	late.waitValues(t, "late observer", want[1:]...)
	var got []string
	for range want {
		var l concord.Leader[string]
		select {
		case l = <-slow:
		case <-time.After(20 * time.Second):
			t.Fatalf("slow observer: only %q after 20s", got)
		}
		if l.Key == "" {
			got = append(got, "-")
		} else {
			got = append(got, l.Value)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("slow observer saw %q, want %q", got, want)
	}
	terms := map[int64]string{}
	electCheckTerms(t, "early", early.list(), terms)
	stop()
	eventually(t, 10*time.Second, "observer channels to close", func() bool {
		early.mu.Lock()
		defer early.mu.Unlock()
		return early.closed
	})
	for range slow {
	}
}

// TestElectionThreeNodesObserversAgree is the election's acceptance test
// on three nodes: campaigners and observers on every node, leaders leave
// by Resign, by a revoked session, by an expired one (nobody waiting: no
// leader) and by their node stopping (the raft leader). Every observer
// sees exactly the same sequence, "no leader" included; a token belongs
// to one leader only and grows with each new one.
func TestElectionThreeNodesObserversAgree(t *testing.T) {
	c := concordtest.NewCluster(t, 3)
	ctx := testCtx(t)
	const ttl = time.Second
	raftLeader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := func(i int) (*concord.Election[string], *concord.Session) {
		s := newSession(t, c.Node(i), concord.WithSessionTTL(ttl))
		return concord.NewElection[string](s, "elect/accept"), s
	}
	var obs []*electSeen
	for i := range 3 {
		e, _ := at(i)
		o := electObserve(t, ctx, e)
		o.waitValues(t, fmt.Sprint("observer ", i), "-")
		obs = append(obs, o)
	}
	want := []string{"-"}
	step := func(what string, vals ...string) {
		t.Helper()
		want = append(want, vals...)
		for i, o := range obs {
			if c.Node(i) != nil {
				o.waitValues(t, fmt.Sprintf("%s, observer %d", what, i), want...)
			}
		}
	}
	other := (raftLeader + 1) % 3
	third := (raftLeader + 2) % 3

	e0, _ := at(other)
	if err := e0.Campaign(ctx, "c0"); err != nil {
		t.Fatal(err)
	}
	step("c0 elected", "c0")
	if err := e0.Proclaim(ctx, "c0b"); err != nil {
		t.Fatal(err)
	}
	step("c0 proclaims", "c0b")
	e1, s1 := at(third)
	errc1 := electCampaign(t, ctx, e1, "c1")
	e2, s2 := at(raftLeader)
	errc2 := electCampaign(t, ctx, e2, "c2")
	if err := e0.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := electResult(t, errc1, "c1"); err != nil {
		t.Fatal(err)
	}
	step("c0 resigns", "c1")
	electBlocked(t, errc2, "c2 while c1 leads")
	if err := c.Node(other).Revoke(ctx, s1.Lease()); err != nil { // from another node
		t.Fatal(err)
	}
	if err := electResult(t, errc2, "c2"); err != nil {
		t.Fatal(err)
	}
	step("c1's session revoked", "c2")
	if e1.IsLeader() {
		t.Fatal("c1 IsLeader after its session ended")
	}
	s2.Orphan() // its lease expires after the TTL; nobody waits
	step("c2's session expired", "-")

	e3, _ := at(raftLeader)
	if err := e3.Campaign(ctx, "c3"); err != nil {
		t.Fatal(err)
	}
	e4, _ := at(third)
	errc4 := electCampaign(t, ctx, e4, "c4")
	step("c3 elected", "c3")
	start := time.Now()
	if err := c.Stop(raftLeader); err != nil { // c3's node, and raft's leader
		t.Fatal(err)
	}
	if err := electResult(t, errc4, "c4"); err != nil {
		t.Fatal(err)
	}
	t.Logf("c4 elected %v after c3's node stopped (session TTL %v)", time.Since(start).Round(time.Millisecond), ttl)
	step("c3's node stopped", "c4")

	terms := map[int64]string{}
	for i, o := range obs {
		seq := o.values()
		if c.Node(i) == nil {
			if len(seq) > len(want) || !slices.Equal(seq, want[:len(seq)]) {
				t.Fatalf("observer on the stopped node saw %q, want a prefix of %q", seq, want)
			}
		}
		electCheckTerms(t, fmt.Sprint("observer ", i), o.list(), terms)
	}
	if l := electLeader(t, e4); l.Key != e4.Key() || !e4.IsLeader() {
		t.Fatalf("leader %+v, want c4 (%s)", l, e4.Key())
	}
	if len(terms) != 5 {
		t.Fatalf("%d terms %v, want 5 (c0..c4)", len(terms), terms)
	}
}
