package concord_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

var electChurnDuration = flag.Duration("concord.elect.duration", 3*time.Second, "TestElectionChurn: how long campaigners churn")

// electWin is a Campaign that returned elected.
type electWin struct {
	key   string
	token int64
}

// TestElectionChurn: six campaigners on three nodes campaign, proclaim
// and leave by Resign, session close, session expiry or a cancelled
// Campaign, while the raft leader's node is cut off from time to time.
// Afterwards every observer (one per node) has seen exactly the same
// sequence, ending in "no leader"; every entry is a change; a token
// belongs to one key and grows with each new leader; every won Campaign
// shows up with its key and token; and every value seen under a key was
// written by that key's campaigner.
func TestElectionChurn(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d (-concord.elect.duration=%v)", seed, *electChurnDuration)
	c := concordtest.NewCluster(t, 3)
	// The observers must outlive the run (testCtx's minute is too short
	// for the long mode).
	ctx, cancel := context.WithTimeout(context.Background(), *electChurnDuration+time.Minute)
	defer cancel()
	var obs []*electSeen
	for i := range 3 {
		o := electObserve(t, ctx, concord.NewElection[string](newSession(t, c.Node(i)), "elect/churn"))
		o.waitValues(t, fmt.Sprint("observer ", i), "-")
		obs = append(obs, o)
	}
	runCtx, stop := context.WithTimeout(ctx, *electChurnDuration)
	defer stop()
	var mu sync.Mutex
	var wins []electWin
	keyOwner := map[string]int{} // campaign key -> campaigner
	var wg sync.WaitGroup
	for id := range 6 {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(id)))
		wg.Go(func() {
			for runCtx.Err() == nil {
				electChurnRound(runCtx, c.Node(id%3), id, rng, func(key string, token int64) {
					mu.Lock()
					defer mu.Unlock()
					if token != 0 {
						wins = append(wins, electWin{key, token})
					}
					keyOwner[key] = id
				})
			}
		})
	}
	wg.Go(func() { // cut the raft leader off now and then
		rng := rand.New(rand.NewPCG(uint64(seed), 99))
		for runCtx.Err() == nil {
			lead, err := c.WaitLeader(runCtx)
			if err != nil {
				return
			}
			c.Isolate(lead)
			select {
			case <-runCtx.Done():
			case <-time.After(time.Duration(200+rng.IntN(300)) * time.Millisecond):
			}
			c.Heal()
			select {
			case <-runCtx.Done():
			case <-time.After(time.Duration(300+rng.IntN(700)) * time.Millisecond):
			}
		}
	})
	wg.Wait()
	c.Heal()

	// Every campaigner is gone: each observer ends at "no leader" with
	// the same sequence as the others.
	agree := func() bool {
		first := obs[0].list()
		if len(first) == 0 || first[len(first)-1] != (concord.Leader[string]{}) {
			return false
		}
		for _, o := range obs[1:] {
			if !slices.Equal(o.list(), first) {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(30 * time.Second); !agree(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			for i, o := range obs {
				l := o.list()
				o.mu.Lock()
				closed := o.closed
				o.mu.Unlock()
				t.Logf("observer %d: closed %v, %d entries, last %+v", i, closed, len(l), l[max(0, len(l)-4):])
			}
			for i := range 3 {
				resp, err := c.Node(i).Get(ctx, "elect/churn/", concord.WithPrefix())
				if err == nil {
					t.Logf("node %d: %d campaign keys: %v", i, len(resp.Kvs), resp.Kvs)
				}
			}
			t.Fatalf("observers do not agree or do not end at no leader after 30s (seed %d)", seed)
		}
	}
	seq := obs[0].list()
	terms := map[int64]string{}
	electCheckTerms(t, "observer", seq, terms)
	for i := 1; i < len(seq); i++ {
		if seq[i] == seq[i-1] {
			t.Fatalf("entry %d repeats %+v: not a change", i, seq[i])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, w := range wins {
		if terms[w.token] != w.key {
			t.Fatalf("campaign %s won with token %d, observers saw %q for it", w.key, w.token, terms[w.token])
		}
	}
	for _, l := range seq {
		var id, n int
		if l.Key != "" {
			if _, err := fmt.Sscanf(l.Value, "c%d-%d", &id, &n); err != nil || keyOwner[l.Key] != id {
				t.Fatalf("value %q under %s, whose campaigner is c%d", l.Value, l.Key, keyOwner[l.Key])
			}
		}
	}
	t.Logf("%d observed changes, %d leaders, %d won campaigns", len(seq), len(terms), len(wins))
	if len(wins) < 3 {
		t.Fatalf("only %d won campaigns: the churn did not churn", len(wins))
	}
}

// electChurnRound is one campaign of campaigner id: campaign (maybe with
// a short deadline), proclaim a few times, then leave one way or another.
// record is told the campaign key, and the token when elected.
func electChurnRound(ctx context.Context, n *concord.Node, id int, rng *rand.Rand, record func(string, int64)) {
	s, err := concord.NewSession(n, concord.WithSessionTTL(time.Second))
	if err != nil {
		return // no quorum right now, or the run is over
	}
	defer s.Close()
	e := concord.NewElection[string](s, "elect/churn")
	record(fmt.Sprintf("elect/churn/%x", int64(s.Lease())), 0)
	cctx, cancel := context.WithTimeout(ctx, time.Duration(100+rng.IntN(900))*time.Millisecond)
	defer cancel()
	if err := e.Campaign(cctx, fmt.Sprintf("c%d-0", id)); err != nil {
		return
	}
	record(e.Key(), e.Token())
	for i := range rng.IntN(3) {
		if e.Proclaim(cctx, fmt.Sprintf("c%d-%d", id, i+1)) != nil {
			break
		}
	}
	switch rng.IntN(3) {
	case 0:
		e.Resign(ctx)
	case 1:
		// Close revokes (deferred).
	case 2:
		s.Orphan() // expires after its TTL
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		// The orphaned lease may outlive the run; Close below revokes it.
	}
}
