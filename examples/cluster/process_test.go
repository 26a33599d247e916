package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var rollingRounds = flag.Int("rolling.rounds", 1, "TestRollingRestart: times every replica is restarted")

// names returns "p1".."pN".
func pnames(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("p%d", i))
	}
	return out
}

// writer writes keys through the running replicas and remembers the
// acknowledged ones.
type writer struct {
	p     *procs
	mu    sync.Mutex
	acked map[string]string
	n     atomic.Int64
}

func newWriter(p *procs) *writer { return &writer{p: p, acked: map[string]string{}} }

// write tries once to write a new key through some running replica.
func (w *writer) write(rng *rand.Rand) error {
	run := w.p.running()
	if len(run) == 0 {
		return fmt.Errorf("no replica running")
	}
	i := w.n.Add(1)
	key, val := fmt.Sprintf("k%05d", i), fmt.Sprint(i)
	if err := put(w.p.http(run[rng.IntN(len(run))]), key, val); err != nil {
		return err
	}
	w.mu.Lock()
	w.acked[key] = val
	w.mu.Unlock()
	return nil
}

// mustWrite writes count keys, retrying each until it is acknowledged.
func (w *writer) mustWrite(t *testing.T, rng *rand.Rand, count int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for done := 0; done < count; {
		if err := w.write(rng); err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("writes failing for 30s: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		done++
	}
}

// verify checks that every running replica reads every acknowledged write.
func (w *writer) verify(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, name := range w.p.running() {
		for k, v := range w.acked {
			got, found, err := get(w.p.http(name), k)
			if err != nil || !found || got != v {
				t.Fatalf("%s reads %s = %q, %v (%v); acknowledged %q", name, k, got, found, err, v)
			}
		}
	}
	t.Logf("%d acknowledged writes readable on %d replicas", len(w.acked), len(w.p.running()))
}

// TestProcessesKillRestartGrow: five OS processes with identical flags
// (BootstrapExpect 3, the same seeds) form one cluster of five voters;
// kill -9 two of them, the others go on; restart them on their data
// dirs, they come back as the same members; add two new replicas, they
// join as learners; everything written before is readable everywhere.
func TestProcessesKillRestartGrow(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 3))
	p := newProcs(t, pnames(1, 3), "--bootstrap-expect", "3", "--dead-reclaim", "1m", "--stabilization", "300ms")
	start := time.Now()
	for _, name := range pnames(1, 5) {
		p.start(name)
	}
	p.waitShape(60*time.Second, 5, 0)
	t.Logf("five processes formed one cluster of five voters in %v", time.Since(start).Round(time.Millisecond))
	w := newWriter(p)
	w.mustWrite(t, rng, 50)

	victims := pnames(1, 5)
	rng.Shuffle(len(victims), func(i, j int) { victims[i], victims[j] = victims[j], victims[i] })
	victims = victims[:2]
	for _, v := range victims {
		p.kill(v)
	}
	t.Logf("killed %v", victims)
	w.mustWrite(t, rng, 50)
	for _, v := range victims {
		p.start(v)
	}
	p.waitShape(60*time.Second, 5, 0)
	w.mustWrite(t, rng, 20)

	p.start("p6")
	p.start("p7")
	_, learners := p.waitShape(60*time.Second, 5, 2)
	t.Logf("learners %v", learners)
	w.mustWrite(t, rng, 20)
	w.verify(t)
}

// TestRollingRestart: five processes under a steady write load are
// restarted one at a time (SIGTERM, then start on the same data dir,
// then wait for five voters again). No acknowledged write is lost; the
// fraction of time some replica led is reported.
func TestRollingRestart(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d (-rolling.rounds=%d)", seed, *rollingRounds)
	rng := rand.New(rand.NewPCG(uint64(seed), 4))
	p := newProcs(t, pnames(1, 3), "--bootstrap-expect", "3", "--dead-reclaim", "1m", "--stabilization", "300ms")
	for _, name := range pnames(1, 5) {
		p.start(name)
	}
	p.waitShape(60*time.Second, 5, 0)
	w := newWriter(p)
	w.mustWrite(t, rng, 20)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	wg.Go(func() {
		r := rand.New(rand.NewPCG(uint64(seed), 5))
		for {
			select {
			case <-stop:
				return
			default:
			}
			if w.write(r) != nil {
				failed.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		}
	})
	var samples, led atomic.Int64
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			samples.Add(1)
			for _, name := range p.running() {
				if st, err := getStatus(p.http(name)); err == nil && st.IsLeader {
					led.Add(1)
					break
				}
			}
		}
	})
	begin := time.Now()
	for range *rollingRounds {
		for _, name := range pnames(1, 5) {
			p.stop(name)
			p.start(name)
			p.waitShape(60*time.Second, 5, 0)
		}
	}
	elapsed := time.Since(begin)
	close(stop)
	wg.Wait()
	t.Logf("rolling restart of 5 processes x %d in %v: %d writes acknowledged, %d attempts failed; a leader in %d of %d samples (%.1f%%)",
		*rollingRounds, elapsed.Round(time.Millisecond), w.n.Load()-failed.Load(), failed.Load(), led.Load(), samples.Load(),
		100*float64(led.Load())/float64(max(samples.Load(), 1)))
	w.verify(t)
}
