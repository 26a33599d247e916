package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestGapsMatchModel: gaps, after random sets (of spans empty in a model
// keyspace) and puts, never claims a live key is in a gap, and stays
// sorted and disjoint.
func TestGapsMatchModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	key := func(i int) []byte { return fmt.Appendf(nil, "k%03d", i) }
	for round := range 50 {
		var g gaps
		live := map[int]bool{}
		for i := range 200 {
			live[i] = rng.IntN(3) == 0
		}
		for range 500 {
			switch rng.IntN(3) {
			case 0: // a put
				i := rng.IntN(200)
				live[i] = true
				g.put(key(i))
			case 1: // a delete: only widens what is empty
				live[rng.IntN(200)] = false
			default: // record an empty span of the model, as a scan would
				a := rng.IntN(200)
				b := a
				for b < 200 && !live[b] {
					b++
				}
				hi := []byte("k999")
				if b < 200 {
					hi = key(b)
				}
				g.set(key(a), hi)
			}
			for i := 1; i < len(g.s); i++ {
				if bytes.Compare(g.s[i-1].hi, g.s[i].lo) >= 0 {
					t.Fatalf("round %d: spans %q and %q overlap or touch", round, g.s[i-1], g.s[i])
				}
			}
			for i := range 200 {
				if live[i] && g.find(key(i)) >= 0 {
					t.Fatalf("round %d: live key %s in a gap", round, key(i))
				}
				if end := g.end(key(i)); live[i] && !bytes.Equal(end, key(i)) {
					t.Fatalf("round %d: end(%s) = %s for a live key", round, key(i), end)
				}
			}
		}
	}
}
