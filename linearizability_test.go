package concord_test

// Linearizability acceptance test, through the public API only: clients
// on every member of a three-node cluster (concordtest, on disk) run Get,
// Put and CompareAndSwap on a few keys while a nemesis partitions the
// network, isolates the leader, and stops and restarts it (even seeds
// compact the log often, so that lagging nodes may catch up from
// snapshots); porcupine then checks the history against a key-value
// model, key by key.
//
// Flags:
//
//	-concord.lin.seeds N      run seeds 1..N (default 20, what CI runs)
//	-concord.lin.seed S       run only seed S (to reproduce a failure); overrides -concord.lin.seeds
//	-concord.lin.duration D   workload length per seed (default 1.5s)
//
// Examples (the package goes before these flags, which go test passes on):
//
//	go test . -run 'TestLinearizability$' -concord.lin.seeds 200
//	go test . -run 'TestLinearizability$' -concord.lin.seed 17 -v
//
// A seed fixes the network's fault rates and random decisions, every
// client's choice of operations and the nemesis's schedule; goroutine
// scheduling and timing still vary from run to run. A failing seed is
// logged with the command that reruns it, and the porcupine visualization
// of the history is written to a file whose path is logged.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
	"github.com/concordkv/concord/internal/lintest"
	"github.com/concordkv/concord/raftnode"
)

var (
	linSeeds    = flag.Int("concord.lin.seeds", 20, "linearizability test: run seeds 1..N")
	linSeed     = flag.Int64("concord.lin.seed", 0, "linearizability test: run only this seed (0: use -concord.lin.seeds)")
	linDuration = flag.Duration("concord.lin.duration", 1500*time.Millisecond, "linearizability test: workload length per seed")
)

const (
	linNodes     = 3
	linClients   = 6                      // spread round-robin over the nodes
	linKeys      = 4                      // keys "lin/0".."lin/3"
	linOpTimeout = 500 * time.Millisecond // per operation: several election timeouts
)

func TestLinearizability(t *testing.T) {
	lintest.Run(t, lintest.Seeds(*linSeed, *linSeeds),
		"go test . -run 'TestLinearizability$' -concord.lin.seed %d -v",
		func(t *testing.T, seed int64) bool { return runLinearizability(t, seed, *linDuration) })
}

// linRecorder collects a history and the nemesis's actions.
type linRecorder struct {
	start time.Time

	mu      sync.Mutex
	history []porcupine.Operation  // guarded by mu
	notes   []porcupine.Annotation // guarded by mu
	stats   linStats               // guarded by mu
	odd     []error                // guarded by mu; errors a fault cannot explain
}

type linStats struct {
	gets, getsFailed, writesOK, writesApplied, writesUnknown, casFailed int
	partitions, isolations, heals, stops                                int
}

func newRecorder() *linRecorder { return &linRecorder{start: time.Now()} }

func (r *linRecorder) now() int64 { return int64(time.Since(r.start)) }

// checkErr records err as odd unless faults explain it: a deadline (no
// quorum in time), a cancellation (the workload's end) or a node closed
// under the call. Odd errors fail the test. r.mu must be held.
func (r *linRecorder) checkErr(err error) {
	if !errors.Is(err, concord.ErrTimeout) && !errors.Is(err, context.Canceled) && !errors.Is(err, concord.ErrClosed) {
		r.odd = append(r.odd, err)
	}
}

// note records a nemesis action for the visualization, and counts it in
// the stat count points to (if not nil).
func (r *linRecorder) note(count *int, format string, a ...any) {
	r.mu.Lock()
	r.notes = append(r.notes, porcupine.Annotation{Tag: "nemesis", Start: r.now(), Description: fmt.Sprintf(format, a...)})
	if count != nil {
		*count++
	}
	r.mu.Unlock()
}

// get reads key on n and records it, unless it failed: a failed read has
// no effect. It returns the value read and whether the read succeeded.
func (r *linRecorder) get(ctx context.Context, n *concord.Node, client int, key string, opts ...concord.OpOption) (string, bool) {
	call := r.now()
	resp, err := n.Get(ctx, key, opts...)
	ret := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.checkErr(err)
		r.stats.getsFailed++
		return "", false
	}
	r.stats.gets++
	v := ""
	if len(resp.Kvs) > 0 {
		v = string(resp.Kvs[0].Value)
	}
	r.history = append(r.history, porcupine.Operation{ClientId: client, Input: linInput{kind: linGet, key: key},
		Call: call, Output: linOutput{value: v}, Return: ret})
	return v, true
}

// put writes key=v on n (WithPrevKV) and records it; it returns the
// previous value if the put succeeded.
func (r *linRecorder) put(ctx context.Context, n *concord.Node, client int, key, v string) (string, bool) {
	call := r.now()
	resp, err := n.Put(ctx, key, v, concord.WithPrevKV())
	out := linOutput{}
	if err == nil && resp.PrevKv != nil {
		out.value = string(resp.PrevKv.Value)
	}
	r.write(client, linInput{kind: linPut, key: key, value: v}, call, &out, err)
	return out.value, out.outcome == linOK
}

// cas swaps key from old to v on n and records it; it returns whether it
// swapped for sure.
func (r *linRecorder) cas(ctx context.Context, n *concord.Node, client int, key, old, v string) bool {
	call := r.now()
	_, err := n.CompareAndSwap(ctx, key, old, v)
	out := linOutput{}
	r.write(client, linInput{kind: linCAS, key: key, value: v, old: old}, call, &out, err)
	return out.outcome == linOK
}

// write classifies a write's error into out's outcome and records it.
// ErrCompareFailed and ErrResultUnknown (but for an expired proposal,
// applied at most once) are definite; every other error
// (timeout, node closed under the call, ...) leaves the write's fate
// unknown, so that it stays pending until the end of time.
func (r *linRecorder) write(client int, in linInput, call int64, out *linOutput, err error) {
	ret := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		r.stats.writesOK++
	case in.kind == linCAS && errors.Is(err, concord.ErrCompareFailed):
		out.outcome = linFailed
		r.stats.casFailed++
	case errors.Is(err, concord.ErrResultUnknown) && !errors.Is(err, raftnode.ErrProposalExpired):
		out.outcome = linApplied
		r.stats.writesApplied++
	default:
		r.checkErr(err)
		out.outcome, ret = linUnknown, math.MaxInt64
		r.stats.writesUnknown++
	}
	r.history = append(r.history, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: *out, Return: ret})
}

// linRun is one seed's workload.
type linRun struct {
	t    *testing.T
	c    *concordtest.Cluster
	rec  *linRecorder
	stop chan struct{} // closed when the workload ends
}

func linKey(i int) string { return fmt.Sprintf("lin/%d", i) }

// runLinearizability runs one seed; it returns false if no write or no
// read succeeded during the workload.
func runLinearizability(t *testing.T, seed int64, dur time.Duration) (progress bool) {
	// Even seeds compact the raft log every few dozen entries, so that
	// stopped and cut-off nodes may catch up through snapshots.
	snapshots := seed%2 == 0
	opts := []concordtest.Option{concordtest.OnDisk(), concordtest.Seed(seed)}
	if snapshots {
		opts = append(opts, concordtest.Configure(func(_ int, cfg *concord.Config) {
			cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 40, 10
		}))
	}
	c := concordtest.NewCluster(t, linNodes, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rev0 := c.Node(0).Status().Revision
	r := &linRun{t: t, c: c, rec: newRecorder(), stop: make(chan struct{})}

	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for id := range linClients {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(id+1)))
		wg.Go(func() { r.client(wctx, id, id%linNodes, rng) })
	}
	nemDone := make(chan struct{})
	go func() {
		defer close(nemDone)
		r.nemesis(rand.New(rand.NewPCG(uint64(seed), 0x6e656d)))
	}()
	<-time.After(dur)
	close(r.stop)
	<-nemDone
	wcancel() // cuts the clients' last operations short
	wg.Wait()

	// Quiesce: no faults, every node up and ready, one leader.
	c.Heal()
	c.Network().Reset()
	for i := range linNodes {
		if c.Node(i) == nil {
			if err := c.Restart(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatalf("after healing: %v", err)
	}

	// A final read of every key on every node joins the history: it pins
	// the last values, so that unknown writes applied late are checked too.
	for i, n := range c.Nodes() {
		for k := range linKeys {
			if _, ok := r.rec.get(ctx, n, linClients+i, linKey(k)); !ok {
				t.Fatalf("final read of %s on node %d failed", linKey(k), i)
			}
		}
	}
	r.checkConvergence(ctx, rev0)
	for i, err := range r.rec.odd {
		if i == 5 {
			t.Errorf("... and %d more", len(r.rec.odd)-i)
			break
		}
		t.Errorf("a call failed in a way no fault explains: %v", err)
	}

	s := r.rec.stats
	t.Logf("frequent snapshots: %v; %v workload: %d gets ok, %d failed; %d writes ok, %d applied with result unknown, %d unknown, %d CAS failed; nemesis: %d partitions, %d isolations, %d heals, %d stops",
		snapshots, dur, s.gets, s.getsFailed, s.writesOK, s.writesApplied, s.writesUnknown, s.casFailed, s.partitions, s.isolations, s.heals, s.stops)
	if res := linCheck(t, r.rec.history, r.rec.notes, ""); res != porcupine.Ok {
		t.Errorf("porcupine: %s: the history is not linearizable (or too long to check in %v)", res, linCheckTime)
	}
	return s.writesOK > 0 && s.gets > linNodes*linKeys // more than the final reads
}

// client runs operations back to back on its home node, or on the next
// running one while its home is stopped. Reads are linearizable Gets;
// writes unique values, with CompareAndSwap from the last value the
// client saw for the key.
func (r *linRun) client(ctx context.Context, id, home int, rng *rand.Rand) {
	seen := map[string]string{}
	for k := 0; ; k++ {
		select {
		case <-r.stop:
			return
		default:
		}
		n := r.node(home)
		key := linKey(rng.IntN(linKeys))
		v := fmt.Sprintf("c%d-%d", id, k)
		opCtx, cancel := context.WithTimeout(ctx, linOpTimeout)
		switch op := rng.IntN(10); {
		case op < 4:
			if got, ok := r.rec.get(opCtx, n, id, key); ok {
				seen[key] = got
			}
		case op < 7:
			if _, ok := r.rec.put(opCtx, n, id, key, v); ok {
				seen[key] = v
			}
		default:
			if r.rec.cas(opCtx, n, id, key, seen[key], v) {
				seen[key] = v
			}
		}
		cancel()
	}
}

// node returns the first running node starting at home. The nemesis stops
// at most one of three, so there is always one.
func (r *linRun) node(home int) *concord.Node {
	for k := range linNodes {
		if n := r.c.Node((home + k) % linNodes); n != nil {
			return n
		}
	}
	panic("concord_test: no running node") // the nemesis keeps two up
}

// nemesis injects faults at random intervals until the workload stops:
// partitions into random groups, isolation of the leader, heals, a stop
// of the leader with a restart a few steps later, and new message drop,
// delay, duplicate and reorder rates. Every decision comes from rng.
func (r *linRun) nemesis(rng *rand.Rand) {
	c, net, rec := r.c, r.c.Network(), r.rec
	lintest.SetFaults(net, rng)
	stopped, downSteps := -1, 0
	leader := func() int {
		return lintest.Leader(rng, linNodes, func(i int) bool { n := c.Node(i); return n != nil && n.IsLeader() })
	}
	lintest.Every(rng, r.stop, func() bool {
		if stopped >= 0 {
			if downSteps--; downSteps <= 0 {
				if err := c.Restart(stopped); err != nil {
					r.t.Errorf("nemesis: %v", err)
					return false
				}
				rec.note(nil, "restart %s", c.Name(stopped))
				stopped = -1
			}
		}
		switch action := rng.IntN(10); {
		case action < 2: // a random split into two groups
			perm := rng.Perm(linNodes)
			a := 1 + rng.IntN(linNodes-1)
			c.Partition(perm[:a], perm[a:])
			rec.note(&rec.stats.partitions, "partition %v | %v", r.names(perm[:a]), r.names(perm[a:]))
		case action < 4:
			i := leader()
			c.Isolate(i)
			rec.note(&rec.stats.isolations, "isolate %s", c.Name(i))
		case action < 6:
			c.Heal()
			rec.note(&rec.stats.heals, "heal")
		case action < 8:
			i, steps := leader(), 1+rng.IntN(3)
			if stopped >= 0 {
				break
			}
			if err := c.Stop(i); err != nil {
				r.t.Errorf("nemesis: %v", err)
				return false
			}
			rec.note(&rec.stats.stops, "stop %s", c.Name(i))
			stopped, downSteps = i, steps
		default:
			lintest.SetFaults(net, rng)
			rec.note(nil, "new message fault rates")
		}
		return true
	})
}

// names returns the names of nodes idx.
func (r *linRun) names(idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, r.c.Name(i))
	}
	return out
}

// checkConvergence waits until every node, read linearizably, holds the
// same keys at the same revision (a write of unknown outcome may still
// land meanwhile), then checks that the writes made account for the
// revisions: each one that succeeded made exactly one, a failed CAS none,
// the others one or none.
func (r *linRun) checkConvergence(ctx context.Context, rev0 int64) {
	t := r.t
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var states []string
		var rev int64
		for i, n := range r.c.Nodes() {
			resp, err := n.Get(ctx, "lin/", concord.WithPrefix())
			if err != nil {
				t.Fatalf("convergence: node %d: %v", i, err)
			}
			rev = resp.Revision
			states = append(states, fmt.Sprint(resp.Revision, values(resp.Kvs)))
		}
		if !slices.ContainsFunc(states, func(st string) bool { return st != states[0] }) {
			s := r.rec.stats
			lo, hi := int64(s.writesOK), int64(s.writesOK+s.writesApplied+s.writesUnknown)
			if d := rev - rev0; d < lo || d > hi {
				t.Errorf("%d revisions made; want between %d (acknowledged writes) and %d (all writes but failed CAS)", d, lo, hi)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("nodes did not converge: %q", states)
		case <-tick.C:
		}
	}
}
