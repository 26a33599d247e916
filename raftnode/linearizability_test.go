package raftnode_test

// Linearizability acceptance test: a register workload on the KV applier,
// checked with porcupine, under seeded random partitions, leader isolation,
// leader crashes and restarts, and message drop, delay, duplication and
// reordering on the in-memory network.
//
// Flags:
//
//	-lin.seeds N      run seeds 1..N (default 20, what CI runs)
//	-lin.seed S       run only seed S (to reproduce a failure); overrides -lin.seeds
//	-lin.duration D   workload length per seed (default 1.5s)
//
// Examples (the package goes before these flags, which go test passes on):
//
//	go test ./raftnode -run Linearizab -lin.seeds 500
//	go test ./raftnode -run Linearizab -lin.seed 17 -v
//
// Each seed fixes the cluster size (3 or 5 peers), whether peers compact
// their logs every few dozen entries (so that lagging and restarted peers
// catch up through snapshots), the network's fault rates and random
// decisions, every client's choice of operations and the nemesis's schedule
// of faults; goroutine scheduling and timing still vary from run to run. A failing seed is logged with the command that reruns it,
// and the porcupine visualization of the history is written to a file whose
// path is logged.

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/concordkv/concord/internal/lintest"
	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
)

var (
	linSeeds    = flag.Int("lin.seeds", 20, "linearizability test: run seeds 1..N")
	linSeed     = flag.Int64("lin.seed", 0, "linearizability test: run only this seed (0: use -lin.seeds)")
	linDuration = flag.Duration("lin.duration", 1500*time.Millisecond, "linearizability test: workload length per seed")
)

const (
	linClients   = 5                      // concurrent clients, spread round-robin over the peers
	linKey       = "reg"                  // the register
	linOpTimeout = 500 * time.Millisecond // per operation: several election timeouts
	linCheckTime = 30 * time.Second       // porcupine's budget; Unknown fails the test
)

func TestLinearizability(t *testing.T) {
	lintest.Run(t, lintest.Seeds(*linSeed, *linSeeds),
		"go test ./raftnode -run 'Linearizab' -lin.seed %d -v",
		func(t *testing.T, seed int64) bool { return runLinearizability(t, seed, *linDuration) })
}

// --- the register model -------------------------------------------------

// linInput is a register operation: a write of value, or a read.
type linInput struct {
	write bool
	value string
}

// linOutput is what an operation returned: the value read, or for a write
// the register's previous value, which the KV applier returns (a write is a
// swap). unknown marks a write whose outcome is unknown (it failed or timed
// out): it may have taken effect at any point after its call, or never.
type linOutput struct {
	value   string
	unknown bool
}

var linModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(string), input.(linInput), output.(linOutput)
		if !in.write {
			return out.value == st, st
		}
		return out.unknown || out.value == st, in.value
	},
	Hash: func(state any) uint64 {
		h := fnv.New64a()
		h.Write([]byte(state.(string)))
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		switch {
		case !in.write:
			return fmt.Sprintf("read() -> %q", out.value)
		case out.unknown:
			return fmt.Sprintf("write(%q) -> ?", in.value)
		}
		return fmt.Sprintf("write(%q) -> prev %q", in.value, out.value)
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state) },
}

// --- the run --------------------------------------------------------------

// linRun is one seed's workload: the cluster, which peers are down, and the
// history recorded so far.
type linRun struct {
	t     *testing.T
	c     *raftnodetest.Cluster
	n     int // peers
	start time.Time
	stop  chan struct{} // closed when the workload ends

	// peerMu[i] is held for writing while peer i is crashed or restarted,
	// and for reading while a client reads its DB, so that no read runs on
	// a DB being closed under it.
	peerMu []sync.RWMutex

	mu       sync.Mutex
	down     []bool        // guarded by mu; crashed peers
	changedC chan struct{} // guarded by mu; closed when a peer goes down or up
	history  []porcupine.Operation
	stats    linStats
}

type linStats struct {
	writesOK, writesUnknown, reads, readsFailed int
	partitions, isolations, heals, crashes      int
}

func (r *linRun) now() int64 { return int64(time.Since(r.start)) }

func (r *linRun) record(op porcupine.Operation) {
	r.mu.Lock()
	r.history = append(r.history, op)
	r.mu.Unlock()
}

func (r *linRun) setDown(i int, down bool) {
	r.mu.Lock()
	r.down[i] = down
	close(r.changedC)
	r.changedC = make(chan struct{})
	r.mu.Unlock()
}

// livePeer returns the first running peer starting at home, waiting for one
// to come up if none is; -1 and nil once the workload stops.
func (r *linRun) livePeer(home int) (int, *raftnode.Node) {
	for {
		r.mu.Lock()
		changed := r.changedC
		for k := 0; k < r.n; k++ {
			i := (home + k) % r.n
			if r.down[i] {
				continue
			}
			if n := r.c.Node(i); n != nil {
				r.mu.Unlock()
				return i, n
			}
		}
		r.mu.Unlock()
		select {
		case <-changed:
		case <-r.stop:
			return -1, nil
		}
	}
}

// runLinearizability runs one seed; it returns false if no write or no read
// succeeded during the workload.
func runLinearizability(t *testing.T, seed int64, dur time.Duration) (progress bool) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6c696e))
	peers := 3
	if rng.IntN(2) == 0 {
		peers = 5
	}
	opts := raftnodetest.Options{Peers: peers, Seed: seed, OnDisk: true}
	snapshots := rng.IntN(2) == 0
	if snapshots {
		opts.Configure = func(i int, cfg *raftnode.Config) { cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 40, 10 }
	}
	c := raftnodetest.NewCluster(t, opts)
	r := &linRun{
		t: t, c: c, n: peers, stop: make(chan struct{}),
		peerMu: make([]sync.RWMutex, peers), down: make([]bool, peers), changedC: make(chan struct{}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}

	// The workload: clients and the nemesis until dur has passed.
	r.start = time.Now()
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for id := 0; id < linClients; id++ {
		crng := rand.New(rand.NewPCG(uint64(seed), uint64(id+1)))
		wg.Go(func() { r.client(wctx, id, id%peers, crng) })
	}
	nemDone := make(chan struct{})
	nrng := rand.New(rand.NewPCG(uint64(seed), 0x6e656d))
	go func() { defer close(nemDone); r.nemesis(nrng) }()
	<-time.After(dur)
	close(r.stop)
	<-nemDone
	wcancel() // cuts the clients' last operations short
	wg.Wait()

	// Quiesce: no faults, every peer up, one leader.
	c.Heal()
	c.Network().Reset()
	for i := 0; i < peers; i++ {
		if c.Node(i) == nil {
			if err := c.Restart(i); err != nil {
				t.Fatalf("restart peer %d: %v", i+1, err)
			}
			r.setDown(i, false)
		}
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatalf("after healing: %v", err)
	}

	// A final linearizable read on every peer joins the history: it pins the
	// register's last value, so that unknown writes applied late are checked
	// too.
	for i := 0; i < peers; i++ {
		n := c.Node(i)
		call := r.now()
		if err := n.ReadIndex(ctx); err != nil {
			t.Fatalf("final ReadIndex on peer %d: %v", i+1, err)
		}
		v, _, err := raftnodetest.Get(n.DB(), linKey)
		if err != nil {
			t.Fatalf("final read on peer %d: %v", i+1, err)
		}
		r.record(porcupine.Operation{ClientId: linClients + i, Input: linInput{}, Call: call, Output: linOutput{value: v}, Return: r.now()})
	}
	r.checkConvergence(ctx)

	s := r.stats
	t.Logf("%d peers (frequent snapshots: %v), %v workload: %d writes ok, %d unknown, %d reads (%d failed); nemesis: %d partitions, %d isolations, %d heals, %d crashes",
		peers, snapshots, dur, s.writesOK, s.writesUnknown, s.reads, s.readsFailed, s.partitions, s.isolations, s.heals, s.crashes)
	progress = s.writesOK > 0 && s.reads > 0
	if !progress {
		t.Logf("the workload made no progress: %d writes and %d reads succeeded", s.writesOK, s.reads)
	}
	r.check()
	return progress
}

// client runs register operations back to back on its home peer, or on the
// next running peer while its home is down.
func (r *linRun) client(ctx context.Context, id, home int, rng *rand.Rand) {
	for k := 0; ; k++ {
		i, n := r.livePeer(home)
		if n == nil {
			return
		}
		write := rng.IntN(2) == 0
		opCtx, cancel := context.WithTimeout(ctx, linOpTimeout)
		if write {
			r.write(opCtx, n, id, fmt.Sprintf("c%d-%d", id, k))
		} else {
			r.read(opCtx, n, i, id)
		}
		cancel()
		select {
		case <-r.stop:
			return
		default:
		}
	}
}

func (r *linRun) write(ctx context.Context, n *raftnode.Node, id int, v string) {
	call := r.now()
	prev, err := n.Propose(ctx, raftnodetest.PutCmd(linKey, v))
	ret := r.now()
	out := linOutput{value: string(prev)}
	if err != nil {
		// Unknown outcome: the command may still be applied, at any
		// point after its call. It stays open until the end of time.
		out, ret = linOutput{unknown: true}, math.MaxInt64
	}
	r.mu.Lock()
	if err != nil {
		r.stats.writesUnknown++
	} else {
		r.stats.writesOK++
	}
	r.mu.Unlock()
	r.record(porcupine.Operation{ClientId: id, Input: linInput{write: true, value: v}, Call: call, Output: out, Return: ret})
}

func (r *linRun) read(ctx context.Context, n *raftnode.Node, i, id int) {
	call := r.now()
	err := n.ReadIndex(ctx)
	var v string
	if err == nil {
		r.peerMu[i].RLock()
		if r.c.Node(i) == n { // not crashed meanwhile: its DB is open
			v, _, err = raftnodetest.Get(n.DB(), linKey)
		} else {
			err = raftnode.ErrStopped
		}
		r.peerMu[i].RUnlock()
	}
	ret := r.now()
	r.mu.Lock()
	if err != nil {
		r.stats.readsFailed++ // a failed read has no effect: dropped
	} else {
		r.stats.reads++
	}
	r.mu.Unlock()
	if err == nil {
		r.record(porcupine.Operation{ClientId: id, Input: linInput{}, Call: call, Output: linOutput{value: v}, Return: ret})
	}
}

// nemesis injects faults at random intervals until the workload stops:
// partitions into random groups, isolation of the leader, heals, crashes of
// the leader with a restart a few steps later, and changes of the network's
// drop, delay, duplicate and reorder rates. Every decision comes from rng.
func (r *linRun) nemesis(rng *rand.Rand) {
	c, net := r.c, r.c.Network()
	lintest.SetFaults(net, rng)
	maxDown := (r.n - 1) / 2 // a quorum stays up, so healing always restores progress
	type crash struct{ peer, steps int }
	var crashed []crash
	leader := func() int {
		return lintest.Leader(rng, r.n, func(i int) bool { n := c.Node(i); return n != nil && n.IsLeader() })
	}
	lintest.Every(rng, r.stop, func() bool {
		// Restart crashed peers whose downtime is over.
		kept := crashed[:0]
		for _, cr := range crashed {
			if cr.steps--; cr.steps > 0 {
				kept = append(kept, cr)
				continue
			}
			r.peerMu[cr.peer].Lock()
			err := c.Restart(cr.peer)
			r.peerMu[cr.peer].Unlock()
			if err != nil {
				r.t.Errorf("restart peer %d: %v", cr.peer+1, err)
				return false
			}
			r.setDown(cr.peer, false)
		}
		crashed = kept
		switch action := rng.IntN(10); {
		case action < 2: // random partition into 2 or 3 groups
			perm := rng.Perm(r.n)
			a := 1 + rng.IntN(r.n-1)
			b := a + rng.IntN(r.n-a+1) // b == a or b == r.n: two groups
			c.Partition(perm[:a], perm[a:b], perm[b:])
			r.stats.partitions++
		case action < 4:
			c.Isolate(leader())
			r.stats.isolations++
		case action < 6:
			c.Heal()
			r.stats.heals++
		case action < 8:
			i := leader()
			steps := 1 + rng.IntN(3)
			if len(crashed) >= maxDown || r.down[i] {
				break
			}
			r.setDown(i, true) // first, so that clients move away
			r.peerMu[i].Lock()
			c.Crash(i)
			r.peerMu[i].Unlock()
			crashed = append(crashed, crash{i, steps})
			r.stats.crashes++
		default:
			lintest.SetFaults(net, rng)
		}
		return true
	})
}

// checkConvergence waits until every peer, after a ReadIndex, holds the same
// applied state, and checks that state against the writes made: every
// acknowledged write applied, none applied twice.
func (r *linRun) checkConvergence(ctx context.Context) {
	t := r.t
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		chains := make([][]byte, r.n)
		counts := make([]uint64, r.n)
		same := true
		for i := 0; i < r.n; i++ {
			n := r.c.Node(i)
			if err := n.ReadIndex(ctx); err != nil {
				t.Fatalf("convergence: ReadIndex on peer %d: %v", i+1, err)
			}
			chain, count, err := raftnodetest.State(n.DB())
			if err != nil {
				t.Fatalf("convergence: peer %d: %v", i+1, err)
			}
			chains[i], counts[i] = chain, count
			same = same && string(chain) == string(chains[0]) && count == counts[0]
		}
		if same {
			s := r.stats
			if lo, hi := uint64(s.writesOK), uint64(s.writesOK+s.writesUnknown); counts[0] < lo || counts[0] > hi {
				t.Errorf("peers applied %d commands; want between %d (acknowledged writes) and %d (all writes)", counts[0], lo, hi)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("peers did not converge: applied counts %v", counts)
		case <-tick.C:
		}
	}
}

// check runs porcupine on the history, without the writes
// pruneUnobserved leaves out; a violation writes the visualization to a
// file whose path is logged.
func (r *linRun) check() {
	t := r.t
	history, dropped := pruneUnobserved(r.history)
	t.Logf("%d unobserved unknown writes left out of %d operations", dropped, len(r.history))
	switch lintest.Check(t, linModel, history, nil, "", linCheckTime) {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Errorf("porcupine timed out after %v on %d operations: the history is too long to check", linCheckTime, len(history))
	default:
		t.Errorf("history of %d operations is not linearizable", len(history))
	}
}

// pruneUnobserved leaves out the writes of unknown outcome whose value no
// operation observed (no read returned it, no acknowledged write replaced
// it). It changes nothing to the verdict, but porcupine would otherwise try
// every subset of them at every point, which is exponential in their count.
//
// Why the verdict stays the same, for such a write w of value v (values are
// unique): given a linearization with w, the operation right after w, if
// any, is another unknown write, since a read or an acknowledged write there
// would return v. So w's effect is overwritten before anything looks at it,
// and removing w leaves a valid linearization. Conversely, a linearization
// without w stays valid with w appended last: w never returned, so it may
// take effect after everything else.
func pruneUnobserved(history []porcupine.Operation) ([]porcupine.Operation, int) {
	seen := map[string]bool{}
	for _, op := range history {
		if out := op.Output.(linOutput); !out.unknown {
			seen[out.value] = true
		}
	}
	kept := make([]porcupine.Operation, 0, len(history))
	for _, op := range history {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		if in.write && out.unknown && !seen[in.value] {
			continue
		}
		kept = append(kept, op)
	}
	return kept, len(history) - len(kept)
}
