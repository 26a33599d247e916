package concord_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

// TestClaimEachKeyToOneLiveClaimer: claimers with their own sessions, on
// the three nodes of a cluster, claim the keys of a prefix concurrently
// until none is free: each key goes to exactly one claimer, whose marker
// holds it, bound to its session. When a session closes, its markers go
// and exactly its keys can be claimed again, with their Version bumped.
func TestClaimEachKeyToOneLiveClaimer(t *testing.T) {
	const (
		claimSeed     = 5
		claimKeys     = 48
		claimClaimers = 6
		claimQueue    = "claimtest/q/"
		claimMarkers  = "claimtest/c/"
	)
	t.Logf("seed %d", claimSeed)
	c := concordtest.NewCluster(t, 3, concordtest.Seed(claimSeed))
	ctx := testCtx(t)
	var ops []concord.Op
	for i := range claimKeys {
		ops = append(ops, concord.OpPut(fmt.Sprintf("%s%03d", claimQueue, i), fmt.Sprint(i)))
	}
	if _, err := c.Node(0).Txn(ctx).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}
	sessions := make([]*concord.Session, claimClaimers)
	for i := range sessions {
		s, err := concord.NewSession(c.Node(i % 3))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		sessions[i] = s
	}
	// claimAll claims with claimer i until nothing is free and returns the
	// keys it got.
	claimAll := func(i int) ([]*concord.KeyValue, error) {
		var got []*concord.KeyValue
		for {
			if len(got) > claimKeys {
				return got, fmt.Errorf("%d claims of %d keys", len(got), claimKeys)
			}
			r, err := c.Node(i%3).Claim(ctx, claimQueue, claimMarkers, fmt.Sprint("claimer", i),
				concord.WithPrefix(), concord.WithLease(sessions[i].Lease()))
			if err != nil || r.Kv == nil {
				return got, err
			}
			got = append(got, r.Kv)
		}
	}
	owner := map[string]int{} // key -> claimer
	var (
		mu sync.Mutex // guards owner
		wg sync.WaitGroup
	)
	for i := range claimClaimers {
		wg.Go(func() {
			got, err := claimAll(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("claimer %d: %v", i, err)
			}
			for _, kv := range got {
				if prev, dup := owner[string(kv.Key)]; dup {
					t.Errorf("%s claimed by claimer %d and claimer %d", kv.Key, prev, i)
				}
				owner[string(kv.Key)] = i
				if kv.Version != 2 {
					t.Errorf("%s claimed at version %d, want 2", kv.Key, kv.Version)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if len(owner) != claimKeys {
		t.Fatalf("%d keys claimed, want %d", len(owner), claimKeys)
	}
	claimCheckMarkers(t, c.Node(1), claimMarkers, claimQueue, owner, sessions)

	// Claimer 0's session ends: exactly its keys are free again.
	var freed []string
	for k, i := range owner {
		if i == 0 {
			freed = append(freed, k)
			delete(owner, k)
		}
	}
	if err := sessions[0].Close(); err != nil {
		t.Fatal(err)
	}
	claimCheckMarkers(t, c.Node(2), claimMarkers, claimQueue, owner, sessions)
	got, err := claimAll(claimClaimers - 1)
	if err != nil {
		t.Fatal(err)
	}
	var again []string
	for _, kv := range got {
		again = append(again, string(kv.Key))
		if kv.Version != 3 {
			t.Errorf("%s claimed again at version %d, want 3", kv.Key, kv.Version)
		}
	}
	slices.Sort(freed)
	if !slices.Equal(again, freed) {
		t.Fatalf("claimed again %v, want claimer 0's keys %v", again, freed)
	}
}

// claimCheckMarkers checks that the markers in the store are exactly
// owner's, each with its claimer's value and session lease.
func claimCheckMarkers(t *testing.T, n *concord.Node, markers, queue string, owner map[string]int, sessions []*concord.Session) {
	t.Helper()
	r := get(t, n, markers, concord.WithPrefix())
	if len(r.Kvs) != len(owner) {
		t.Fatalf("%d markers, want %d", len(r.Kvs), len(owner))
	}
	for _, kv := range r.Kvs {
		key := queue + string(kv.Key[len(markers):])
		i, ok := owner[key]
		if !ok || string(kv.Value) != fmt.Sprint("claimer", i) || kv.Lease != sessions[i].Lease() {
			t.Fatalf("marker %s = %q lease %d; owner of %s: %d (%v)", kv.Key, kv.Value, kv.Lease, key, i, ok)
		}
	}
}

// TestCounterAddsNeverLost: 16 goroutines adding to one Counter through
// the three nodes of a cluster: every Add returns a distinct value, the
// values are exactly 1..total, and every node loads the total.
func TestCounterAddsNeverLost(t *testing.T) {
	const (
		counterSeed    = 7
		counterWorkers = 16
		counterAdds    = 25
	)
	t.Logf("seed %d", counterSeed)
	c := concordtest.NewCluster(t, 3, concordtest.Seed(counterSeed))
	ctx := testCtx(t)
	results := make([][]int64, counterWorkers)
	var wg sync.WaitGroup
	for w := range counterWorkers {
		wg.Go(func() {
			counter := concord.NewCounter(c.Node(w%3), "counter/hits")
			for range counterAdds {
				v, err := counter.Add(ctx, 1)
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				results[w] = append(results[w], v)
			}
		})
	}
	wg.Wait()
	var all []int64
	for _, r := range results {
		all = append(all, r...)
	}
	slices.Sort(all)
	const total = counterWorkers * counterAdds
	for i, v := range all {
		if v != int64(i+1) {
			t.Fatalf("sorted results %v..., want 1..%d each once", all[max(0, i-2):i+1], total)
		}
	}
	if len(all) != total {
		t.Fatalf("%d results, want %d", len(all), total)
	}
	for i, n := range c.Nodes() {
		if v, err := concord.NewCounter(n, "counter/hits").Load(ctx); err != nil || v != total {
			t.Fatalf("node %d loads %d, %v; want %d", i, v, err, total)
		}
	}
}
