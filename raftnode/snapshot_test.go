package raftnode_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
)

var (
	snapshotBig       = flag.Bool("snapshot.big", false, "run TestSnapshotBigTransfer: a state of 200+ MB sent to a lagging peer over TCP")
	snapshotBigInline = flag.Bool("snapshot.big.inline", false, "in TestSnapshotBigTransfer, keep badger's default value threshold (values inline in the LSM tree)")
)

// restoreCounter is an Applier that counts Restore calls, that is
// snapshots installed, of the Applier it wraps.
type restoreCounter struct {
	raftnode.Applier
	n *atomic.Int64
}

func (r restoreCounter) Restore(db *badger.DB, rd io.Reader) error {
	r.n.Add(1)
	return r.Applier.Restore(db, rd)
}

// countRestores returns a Configure that sets small compaction thresholds
// and counts each peer's snapshot installs in restores[i].
func countRestores(restores []atomic.Int64, entries, catchUp uint64) func(int, *raftnode.Config) {
	return func(i int, cfg *raftnode.Config) {
		cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = entries, catchUp
		cfg.Applier = restoreCounter{cfg.Applier, &restores[i]}
	}
}

// waitUntil polls cond until it holds or ctx ends.
func waitUntil(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// putKeys proposes key%03d = value%d for i in [from, to) on n, one at a
// time, and records them in model.
func putKeys(ctx context.Context, t testing.TB, n *raftnode.Node, model map[string]string, from, to int, value string) {
	t.Helper()
	for i := from; i < to; i++ {
		k, v := fmt.Sprintf("key%03d", i%1000), fmt.Sprintf("%s%d", value, i)
		if _, err := n.Propose(ctx, raftnodetest.PutCmd(k, v)); err != nil {
			t.Fatalf("put %s on peer %d: %v", k, n.ID(), err)
		}
		model[k] = v
	}
}

// checkSameState checks that the running peers idx hold the same state, and
// the values of model, once each has applied everything committed.
func checkSameState(ctx context.Context, t testing.TB, c *raftnodetest.Cluster, idx []int, model map[string]string) {
	t.Helper()
	var want []byte
	var wantCount uint64
	for j, i := range idx {
		n := c.Node(i)
		chain, count := readState(ctx, t, n)
		if j == 0 {
			want, wantCount = chain, count
		} else if string(chain) != string(want) || count != wantCount {
			t.Fatalf("peer %d: state (%x, %d commands), peer %d has (%x, %d)", i+1, chain, count, idx[0]+1, want, wantCount)
		}
		for k, v := range model {
			got, ok, err := raftnodetest.Get(n.DB(), k)
			if err != nil || !ok || got != v {
				t.Fatalf("peer %d: %s = %q, %v, %v; want %q", i+1, k, got, ok, err, v)
			}
		}
	}
}

// TestSnapshotCatchUpAfterCompaction: a peer that was down while the log
// was compacted past it rejoins through a snapshot and ends with identical
// state.
func TestSnapshotCatchUpAfterCompaction(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := "stop"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) { testSnapshotCatchUp(t, crash) })
	}
}

func testSnapshotCatchUp(t *testing.T, crash bool) {
	restores := make([]atomic.Int64, 3)
	c, ctx, lead := leadCluster(t, raftnodetest.Options{
		TCP: true, OnDisk: true, Configure: countRestores(restores, 200, 50),
	})
	f := (lead + 1) % 3
	model := map[string]string{}
	putKeys(ctx, t, c.Node(lead), model, 0, 100, "a")
	readState(ctx, t, c.Node(f))
	downAt := c.Node(f).AppliedIndex()
	if crash {
		c.Crash(f)
	} else {
		c.Stop(f)
	}

	// Far more entries than SnapshotEntries + SnapshotCatchUpEntries: the
	// live peers compact their logs well past downAt.
	p := c.Node(lead)
	for i := 100; p.AppliedIndex() < downAt+600; i++ {
		putKeys(ctx, t, p, model, i, i+1, "b")
	}
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	n := c.Node(f)
	if got := n.AppliedIndex(); got != downAt {
		t.Fatalf("restarted peer %d resumes at applied index %d, was %d when it went down", f+1, got, downAt)
	}
	waitUntil(ctx, t, "the restarted peer to catch up", func() bool { return n.AppliedIndex() >= p.AppliedIndex() })
	if restores[f].Load() == 0 {
		t.Fatalf("peer %d caught up without installing a snapshot", f+1)
	}
	putKeys(ctx, t, c.Node(lead), model, 1000, 1050, "c")
	checkSameState(ctx, t, c, []int{0, 1, 2}, model)
	// The snapshot replaced the entries the peer missed: its KV applied none
	// of them (nor, of course, anything it had applied before going down),
	// only the commands proposed after it caught up.
	_, idx := c.Peer(f).KV.Applied()
	if len(idx) < 50 || idx[0] <= downAt+50 {
		t.Fatalf("restarted peer applied %d commands from entry %v; want the 50 new ones, none within the compacted log after %d", len(idx), idx[:min(len(idx), 1)], downAt)
	}
	t.Logf("peer %d down at %d, rejoined at %d through %d snapshot(s), then applied %d commands from entry %d",
		f+1, downAt, p.AppliedIndex(), restores[f].Load(), len(idx), idx[0])
}

// TestSnapshotNewLearner: a brand-new peer is added as a learner, receives
// a snapshot (the log no longer starts at 1), is promoted once caught up;
// then another member is removed and leadership is handed to the new peer.
func TestSnapshotNewLearner(t *testing.T) {
	restores := make([]atomic.Int64, 4)
	c, ctx, lead := leadCluster(t, raftnodetest.Options{
		TCP: true, OnDisk: true, Configure: countRestores(restores, 200, 50),
	})
	model := map[string]string{}
	putKeys(ctx, t, c.Node(lead), model, 0, 400, "a")

	ln, err := c.AddPeer()
	if err != nil {
		t.Fatal(err)
	}
	learner := c.Node(ln)
	newID := learner.ID()
	if err := c.Node(lead).AddLearner(ctx, newID, c.Peer(ln).Addr); err != nil {
		t.Fatal(err)
	}
	if st := c.Node(lead).Status(); !slices.Equal(st.Learners, []uint64{newID}) || len(st.Voters) != 3 {
		t.Fatalf("after AddLearner: voters %v, learners %v", st.Voters, st.Learners)
	}
	// Writes go on while the learner catches up.
	putKeys(ctx, t, c.Node(lead), model, 400, 450, "b")
	waitUntil(ctx, t, "the learner to catch up", func() bool {
		return learner.AppliedIndex() >= c.Node(lead).Status().Commit
	})
	if restores[ln].Load() == 0 {
		t.Fatal("the learner caught up without a snapshot, but the log was compacted")
	}
	if st := learner.Status(); !slices.Contains(st.Learners, newID) || slices.Contains(st.Voters, newID) {
		t.Fatalf("learner's own status: voters %v, learners %v", st.Voters, st.Learners)
	}
	onLeader(ctx, t, c, func(n *raftnode.Node) error { return n.PromoteLearner(ctx, newID) })
	all := []uint64{1, 2, 3, newID}
	waitVoters(ctx, t, c, []int{0, 1, 2, ln}, all)

	// Remove one of the original followers.
	lead, err = c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := (lead + 1) % 3 // an original peer, not the leader
	if err := c.Node(lead).RemovePeer(ctx, uint64(victim+1)); err != nil {
		t.Fatal(err)
	}
	var rest []int
	var restIDs []uint64
	for i := range c.Len() {
		if i != victim {
			rest = append(rest, i)
			restIDs = append(restIDs, uint64(i+1))
		}
	}
	waitVoters(ctx, t, c, rest, restIDs)
	c.Stop(victim) // it may or may not have learned of its removal
	putKeys(ctx, t, c.Node(ln), model, 450, 500, "c")

	// Hand leadership to the new peer. Under load an election may move it
	// on before every peer saw the transfer: then transfer again.
	for attempt := 1; ; attempt++ {
		lead, err := c.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Node(lead).TransferLeadership(ctx, newID); err != nil {
			t.Fatal(err)
		}
		got, err := c.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got == ln {
			break
		}
		if attempt == 3 {
			t.Fatalf("leader is peer %d after %d transfers to peer %d", got+1, attempt, newID)
		}
		t.Logf("leader is peer %d after transfer %d to peer %d; again", got+1, attempt, newID)
	}
	putKeys(ctx, t, c.Node(ln), model, 500, 550, "d")
	checkSameState(ctx, t, c, rest, model)
}

// onLeader calls f on the current leader, again on the next one if
// leadership moved meanwhile (ErrNotLeader), and returns the leader's
// index.
func onLeader(ctx context.Context, t testing.TB, c *raftnodetest.Cluster, f func(*raftnode.Node) error) int {
	t.Helper()
	for {
		i, err := c.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = f(c.Node(i))
		if err == nil {
			return i
		}
		if !errors.Is(err, raftnode.ErrNotLeader) {
			t.Fatalf("on leader %d: %v", i+1, err)
		}
	}
}

// waitVoters waits until each peer in idx reports voters and no learners.
func waitVoters(ctx context.Context, t testing.TB, c *raftnodetest.Cluster, idx []int, voters []uint64) {
	t.Helper()
	waitUntil(ctx, t, fmt.Sprintf("voters %v everywhere", voters), func() bool {
		for _, i := range idx {
			st := c.Node(i).Status()
			v := slices.Sorted(slices.Values(st.Voters))
			if !slices.Equal(v, voters) || len(st.Learners) != 0 {
				return false
			}
		}
		return true
	})
}

// TestSnapshotBigTransfer (-snapshot.big): a state of 200+ MB is sent over
// TCP to a peer that was down while the log was compacted; the live heap
// grows by far less than the state while the transfer runs (all peers are in
// this process: the growth bounds sender and receiver together).
func TestSnapshotBigTransfer(t *testing.T) {
	if !*snapshotBig {
		t.Skip("enable with -snapshot.big")
	}
	const (
		valueSize = 64 << 10
		values    = 3300 // 206 MiB
		maxGrowth = 100 << 20
	)
	restores := make([]atomic.Int64, 3)
	count := countRestores(restores, 20, 5)
	configure := func(i int, cfg *raftnode.Config) {
		count(i, cfg)
		if *snapshotBigInline {
			return
		}
		// Values in badger's value log, not inline in its LSM tree (the
		// state then goes through badger's write path as it does for big
		// values: see chain.limit). Inline (badger's default threshold is
		// 1 MiB), every memtable flush and compaction builds its table in
		// z.Allocator buffers, which badger pools for reuse (8 per DB):
		// after the burst of writes a restore is, they hold 100-600 MiB
		// more, whatever the state's size (-snapshot.big.inline shows it).
		// That is badger's bounded cache, not the transfer's memory, and it
		// would hide the latter.
		cfg.BadgerOptions = func(o badger.Options) badger.Options { return o.WithValueThreshold(1 << 10) }
	}
	c := raftnodetest.NewCluster(t, raftnodetest.Options{TCP: true, OnDisk: true, Configure: configure})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := (lead + 1) % 3
	c.Stop(f)

	// Fill the state from a few writers; each value is distinct.
	start := time.Now()
	var wg sync.WaitGroup
	errC := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			val := make([]byte, valueSize)
			for k := w; k < values; k += 8 {
				for j := range val {
					val[j] = byte(k*31 + j)
				}
				if _, err := c.Node(lead).Propose(ctx, raftnodetest.PutCmd(fmt.Sprintf("big%05d", k), string(val))); err != nil {
					errC <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errC)
	for err := range errC {
		t.Fatal(err)
	}
	t.Logf("wrote %d MiB in %v", values*valueSize>>20, time.Since(start).Round(time.Millisecond))

	for i := range 3 {
		if i != f {
			readState(ctx, t, c.Node(i)) // the other follower is done applying
		}
	}

	// Restart the lagging peer cut off, so that its start-up allocations
	// are in the baseline, then let the transfer run and sample the heap.
	c.Isolate(f)
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	n := c.Node(f)
	// The live heap is sampled right after a forced collection: HeapInuse
	// alone counts garbage not yet collected too, up to GOGC percent of a
	// live heap that is large here (every peer's KV keeps the commands it
	// applied). Most of the heap holds no pointers, so collections are cheap.
	base := liveHeap()
	var peak atomic.Uint64
	var samples atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if h := liveHeap(); h > peak.Load() {
				peak.Store(h)
			}
			samples.Add(1)
		}
	})
	start = time.Now()
	c.Heal()
	waitUntil(ctx, t, "the lagging peer to install the snapshot", func() bool {
		return restores[f].Load() > 0 && n.AppliedIndex() >= c.Node(lead).AppliedIndex()
	})
	took := time.Since(start)
	close(stop)
	sampler.Wait()
	growth := int64(peak.Load()) - int64(base)
	t.Logf("snapshot of %d MiB installed in %v (%.0f MiB/s); live heap: baseline %d MiB, peak %d MiB, growth %d MiB (%d samples)",
		values*valueSize>>20, took.Round(time.Millisecond), float64(values*valueSize>>20)/took.Seconds(),
		base>>20, peak.Load()>>20, growth>>20, samples.Load())
	if growth > maxGrowth {
		t.Errorf("heap grew by %d MiB during the transfer of a %d MiB state, want < %d MiB", growth>>20, values*valueSize>>20, maxGrowth>>20)
	}
	for _, k := range []int{0, values / 2, values - 1} {
		key := fmt.Sprintf("big%05d", k)
		want, _, _ := raftnodetest.Get(c.Node(lead).DB(), key)
		got, ok, err := raftnodetest.Get(n.DB(), key)
		if err != nil || !ok || got != want {
			t.Fatalf("%s on the lagging peer: %d bytes, %v, %v; want %d bytes", key, len(got), ok, err, len(want))
		}
	}
	checkSameState(ctx, t, c, []int{0, 1, 2}, nil)
}

// liveHeap returns the bytes of live heap objects, right after a full
// collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// leadCluster starts a cluster and waits for its leader; ctx bounds the
// rest of the test.
func leadCluster(t *testing.T, opts raftnodetest.Options) (*raftnodetest.Cluster, context.Context, int) {
	t.Helper()
	c := raftnodetest.NewCluster(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c, ctx, lead
}
