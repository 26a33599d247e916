// Package lintest holds what the porcupine-checked linearizability tests
// of raftnode and concord share: the loop over seeds, the nemesis's random
// message faults, and the check that writes a visualization on failure.
package lintest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/concordkv/concord/transport"
)

// Seeds returns the seeds to run: one alone if it is not 0, else 1..n.
func Seeds(one int64, n int) []int64 {
	if one != 0 {
		return []int64{one}
	}
	var seeds []int64
	for s := int64(1); s <= int64(n); s++ {
		seeds = append(seeds, s)
	}
	return seeds
}

// Run runs run as a subtest "seed=S" per seed, logging the seed and the
// command that reruns it (rerun is a format of the seed). run tells
// whether the seed's workload made progress: a harsh schedule can stall a
// seed, but many stalled seeds mean a liveness bug, or a test that checks
// nothing, and fail t.
func Run(t *testing.T, seeds []int64, rerun string, run func(t *testing.T, seed int64) (progress bool)) {
	stalled := 0
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			cmd := fmt.Sprintf(rerun, seed)
			t.Logf("seed %d (rerun: %s)", seed, cmd)
			defer func() {
				if t.Failed() {
					t.Logf("FAILED with seed %d: %s", seed, cmd)
				}
			}()
			if !run(t, seed) {
				stalled++
			}
		})
	}
	if stalled > len(seeds)/4 {
		t.Errorf("%d of %d seeds made no progress (no write or no read succeeded)", stalled, len(seeds))
	}
}

// SetFaults gives net new random message faults drawn from rng: drops,
// duplicates and reordering up to 5% each, delays up to 5ms.
func SetFaults(net *transport.Network, rng *rand.Rand) {
	net.SetDropRate(rng.Float64() * 0.05)
	lo := time.Duration(rng.IntN(1000)) * time.Microsecond
	net.SetDelay(lo, lo+time.Duration(rng.IntN(4000))*time.Microsecond)
	net.SetDuplicateRate(rng.Float64() * 0.05)
	net.SetReorderRate(rng.Float64() * 0.05)
}

// Check runs porcupine on history within timeout and returns its verdict.
// Unless the history is linearizable, it writes the visualization, with
// notes (e.g. the nemesis's actions), to history.html in dir, or in a new
// temporary directory if dir is "", and logs the path.
func Check(t testing.TB, model porcupine.Model, history []porcupine.Operation, notes []porcupine.Annotation, dir string, timeout time.Duration) porcupine.CheckResult {
	t.Helper()
	began := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, history, timeout)
	t.Logf("porcupine: %s on %d operations in %v", res, len(history), time.Since(began).Round(time.Millisecond))
	if res == porcupine.Ok {
		return res
	}
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "concord-linearizability-"); err != nil {
			t.Logf("visualization: %v", err)
			return res
		}
	}
	info.AddAnnotations(notes)
	path := filepath.Join(dir, "history.html")
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		t.Logf("visualization: %v", err)
		return res
	}
	t.Logf("visualization: %s", path)
	return res
}

// Every calls step at once, then again after random pauses of 30ms to
// 200ms drawn from rng, until stop is closed or step returns false. It
// paces a nemesis: the pauses are not waits on a condition.
func Every(rng *rand.Rand, stop <-chan struct{}, step func() bool) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-stop:
			return
		}
		timer.Reset(time.Duration(30+rng.IntN(170)) * time.Millisecond)
		if !step() {
			return
		}
	}
}

// Leader returns the first of nodes 0..n-1 that leads, else a random one.
// It draws from rng either way, so that later draws do not depend on
// which node led.
func Leader(rng *rand.Rand, n int, leads func(i int) bool) int {
	pick := rng.IntN(n)
	for i := range n {
		if leads(i) {
			return i
		}
	}
	return pick
}
