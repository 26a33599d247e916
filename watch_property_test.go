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
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
	"github.com/concordkv/concord/internal/watchhub"
)

var (
	watchSeeds = flag.Int("watch.seeds", 5, "seeds of TestWatchProperty")
	watchSeed  = flag.Uint64("watch.seed", 0, "run TestWatchProperty with this seed only")
	watchOps   = flag.Int("watch.ops", 400, "writes per seed of TestWatchProperty")
)

// TestWatchProperty: random puts, deletes and txns on three members while
// the leader is restarted, cut off, or a member is partitioned from the
// others (concordtest, on disk); watchers on every member, from
// random start revisions, with previous values, resuming on another
// member when theirs closes and at random. Each watcher's stream, read
// back against the committed history (Get at every past revision), is
// ordered, has every event once and nothing else, whole revisions per
// response, progress never ahead of events, correct previous values and
// create flags (Version 1), across every resume.
func TestWatchProperty(t *testing.T) {
	seeds := []uint64{*watchSeed}
	if *watchSeed == 0 {
		seeds = nil
		for i := range *watchSeeds {
			seeds = append(seeds, uint64(time.Now().UnixNano())+uint64(i)*7919)
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (rerun the workload: -watch.seed %d)", seed, seed)
			runWatchProperty(t, seed)
		})
	}
}

// live is the property test's cluster: concordtest's, whose nodes stop,
// restart and get cut off while others use them.
type live struct {
	c *concordtest.Cluster
}

// pick returns a random running node.
func (l *live) pick(rng *rand.Rand) *concord.Node {
	var up []*concord.Node
	for _, n := range l.c.Nodes() {
		if n != nil {
			up = append(up, n)
		}
	}
	return up[rng.IntN(len(up))]
}

// nemesis does one fault to the leader's side, lasting a moment, then
// heals: stop and restart the leader, cut it off, or split one node
// from the other two. It returns the fault's name.
func (l *live) nemesis(ctx context.Context, rng *rand.Rand) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lead, err := l.c.WaitLeader(wctx)
	if err != nil {
		return "", err
	}
	pause := func() { time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond) } // the fault's duration
	switch rng.IntN(3) {
	case 0:
		if err := l.c.Stop(lead); err != nil {
			return "", err
		}
		pause()
		return "restart leader", l.c.Restart(lead)
	case 1:
		l.c.Isolate(lead)
		pause()
		l.c.Heal()
		return "isolate leader", nil
	default:
		alone := rng.IntN(3)
		var rest []int
		for i := range 3 {
			if i != alone {
				rest = append(rest, i)
			}
		}
		l.c.Partition([]int{alone}, rest)
		pause()
		l.c.Heal()
		return fmt.Sprintf("partition n%d from the others", alone+1), nil
	}
}

// watchRange is a range a property-test watcher watches.
type watchRange struct {
	key  string
	opt  concord.OpOption // nil: the key alone
	from bool             // every key >= key
	end  string           // with WithRange
}

func (r watchRange) has(k string) bool {
	switch {
	case r.opt == nil:
		return k == r.key
	case r.from:
		return k >= r.key
	case r.end != "":
		return k >= r.key && k < r.end
	}
	return strings.HasPrefix(k, r.key)
}

func (r watchRange) String() string {
	switch {
	case r.opt == nil:
		return r.key
	case r.from:
		return r.key + ".."
	case r.end != "":
		return r.key + ".." + r.end
	}
	return r.key + "*"
}

var watchRanges = []watchRange{
	{key: "k0", opt: concord.WithPrefix()},
	{key: "k05"},
	{key: "", opt: concord.WithPrefix()},
	{key: "k05", opt: concord.WithRange("k12"), end: "k12"},
	{key: "k1", opt: concord.WithFromKey(), from: true},
}

func setHubVar(t *testing.T, p *int, v int) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}

// propWatcher is one watcher of the property test.
type propWatcher struct {
	r        watchRange
	from     int64 // the first revision it wants; 0 until its first watch says
	next     int64 // where its next watch starts
	got      []histEvent
	segments int
}

// histEvent is an event as the property test compares it.
type histEvent struct {
	rev  int64
	key  string
	desc string
}

func describeKV(kv *concord.KeyValue) string {
	if kv == nil {
		return "-"
	}
	return fmt.Sprintf("%s=%q c%d m%d v%d l%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
}

func toHist(e *concord.Event) histEvent {
	d := fmt.Sprintf("%s %s prev %s", e.Type, describeKV(e.Kv), describeKV(e.PrevKv))
	if e.IsCreate() != (e.Type == concord.EventTypePut && e.PrevKv == nil) {
		d += " (bad create flag)"
	}
	return histEvent{rev: e.Kv.ModRevision, key: string(e.Kv.Key), desc: d}
}

func propKey(rng *rand.Rand) string { return fmt.Sprintf("k%02d", rng.IntN(16)) }

func runWatchProperty(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0))
	// Tiny queues, ring and deliveries: watchers fall out of sync, read
	// the history in small chunks and rejoin all the time.
	setHubVar(t, &watchhub.QueueLen, 1+rng.IntN(8))
	setHubVar(t, &watchhub.RingLen, rng.IntN(4))
	setHubVar(t, &watchhub.MaxEvents, 1+rng.IntN(8))
	// Frequent raft log compactions: a member back from a fault may catch
	// up by snapshot, whose changes its watchers read from history.
	snapshots := rng.IntN(2) == 0
	c := concordtest.NewCluster(t, 3, concordtest.OnDisk(), concordtest.Seed(int64(seed)),
		concordtest.Configure(func(_ int, cfg *concord.Config) {
			cfg.WatchProgressInterval = 20 * time.Millisecond
			if snapshots {
				cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 32, 8
			}
		}))
	l := &live{c: c}
	ctx := testCtx(t)
	t.Logf("frequent snapshots: %v", snapshots)

	var (
		final   atomic.Int64 // the revision watchers read up to, once known
		budget  atomic.Int64
		done    atomic.Int64
		wg      sync.WaitGroup
		writers sync.WaitGroup
	)
	budget.Store(int64(*watchOps))
	for range 3 {
		wrng := rand.New(rand.NewPCG(rng.Uint64(), 1))
		writers.Go(func() {
			for budget.Add(-1) >= 0 {
				propWrite(ctx, l.pick(wrng), wrng)
				done.Add(1)
			}
		})
	}
	crng := rand.New(rand.NewPCG(rng.Uint64(), 2))
	writers.Go(func() {
		for i := range 3 {
			for done.Load() < int64((i+1)**watchOps/4) {
				time.Sleep(5 * time.Millisecond) // poll the writers' progress
			}
			what, err := l.nemesis(ctx, crng)
			if err != nil {
				t.Errorf("nemesis: %v", err)
				return
			}
			t.Logf("after %d writes: %s", done.Load(), what)
		}
	})
	const nWatchers = 6
	watchers := make([]*propWatcher, nWatchers)
	for i := range watchers {
		for done.Load() < int64(i**watchOps/(2*nWatchers)) {
			time.Sleep(5 * time.Millisecond) // stagger the watchers' starts
		}
		w := &propWatcher{r: watchRanges[rng.IntN(len(watchRanges))]}
		if rng.IntN(3) > 0 {
			w.from = 1 + rng.Int64N(l.pick(rng).Status().Revision)
			w.next = w.from
		}
		watchers[i] = w
		wrng := rand.New(rand.NewPCG(rng.Uint64(), 3))
		wg.Go(func() { propWatch(ctx, t, l, w, wrng, &final) })
	}
	writers.Wait()

	// Every member is up and connected again; the last revision is what
	// all read.
	c.Heal()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	ref := l.pick(rng)
	last, err := ref.Get(ctx, "barrier")
	if err != nil {
		t.Fatal(err)
	}
	final.Store(last.Revision)
	wg.Wait()
	if t.Failed() {
		return
	}
	history := committedHistory(t, ref, last.Revision)
	for i, w := range watchers {
		var got, want []string
		for _, e := range w.got {
			if e.rev <= last.Revision {
				got = append(got, e.desc)
			}
		}
		for _, e := range history {
			if e.rev >= w.from && w.r.has(e.key) {
				want = append(want, e.desc)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("watcher %d (%v from %d, %d segments):\n got %q\nwant %q", i, w.r, w.from, w.segments, got, want)
		}
		t.Logf("watcher %d: %v from %d: %d events in %d segments", i, w.r, w.from, len(got), w.segments)
	}
	t.Logf("%d revisions", last.Revision)
	checkCompactedReplay(t, l, rng, history, last.Revision)
}

// propWrite makes one random write; failures (leader changes, closed
// nodes) are fine: the history is read back.
func propWrite(ctx context.Context, n *concord.Node, rng *rand.Rand) {
	ctx, cancel := context.WithTimeout(ctx, time.Second) // a node cut off fails fast
	defer cancel()
	val := fmt.Sprint(rng.IntN(1000))
	switch op := rng.IntN(10); {
	case op < 5:
		n.Put(ctx, propKey(rng), val)
	case op < 7:
		n.Delete(ctx, propKey(rng))
	case op < 8:
		n.Delete(ctx, fmt.Sprintf("k%d", rng.IntN(2)), concord.WithPrefix())
	default:
		var k []string
		for len(k) < 3 {
			if p := propKey(rng); !slices.Contains(k, p) {
				k = append(k, p)
			}
		}
		n.Txn(ctx).
			If(concord.Compare(concord.Version(k[0]), ">", 0)).
			Then(concord.OpPut(k[0], val), concord.OpDelete(k[1]), concord.OpPut(k[2], val)).
			Else(concord.OpPut(k[1], val), concord.OpPut(k[2], val)).
			Commit()
	}
}

// propWatch runs one watcher until it has read up to the final revision,
// resuming from the revision after the last it got whenever its watch
// ends (its member closed, or a random cancel).
func propWatch(ctx context.Context, t *testing.T, l *live, w *propWatcher, rng *rand.Rand, final *atomic.Int64) {
	for {
		w.segments++
		wctx, cancel := context.WithCancel(ctx)
		var stop *time.Timer
		if rng.IntN(3) == 0 {
			stop = time.AfterFunc(time.Duration(20+rng.IntN(300))*time.Millisecond, cancel)
		}
		opts := []concord.OpOption{concord.WithPrevKV(), concord.WithProgressNotify()}
		if w.r.opt != nil {
			opts = append(opts, w.r.opt)
		}
		if w.next == 0 {
			opts = append(opts, concord.WithCreatedNotify())
		} else {
			opts = append(opts, concord.WithRev(w.next))
		}
		err := propSegment(l.pick(rng).Watch(wctx, w.r.key, opts...), w, final, rng)
		if stop != nil {
			stop.Stop()
		}
		cancel()
		if err != nil {
			t.Errorf("watcher %v: %v", w.r, err)
			return
		}
		if f := final.Load(); f != 0 && w.next > f {
			return
		}
		if err := ctx.Err(); err != nil {
			t.Errorf("watcher %v: %v", w.r, err)
			return
		}
	}
}

// propSegment reads one watch until it ends, checking each response
// against the revisions delivered before.
func propSegment(wc concord.WatchChan, w *propWatcher, final *atomic.Int64, rng *rand.Rand) error {
	slow := rng.IntN(3) == 0
	for r := range wc {
		if slow {
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond) // a slow reader
		}
		switch {
		case r.Created:
			if w.next == 0 {
				w.from, w.next = r.Header.Revision+1, r.Header.Revision+1
			}
			continue
		case r.Canceled:
			if errors.Is(r.Err(), concord.ErrClosed) {
				return nil // its member closed: resume elsewhere
			}
			return fmt.Errorf("canceled: %w", r.Err())
		case r.Header.Revision < w.next-1:
			return fmt.Errorf("response at %d after one at %d", r.Header.Revision, w.next-1)
		}
		for _, e := range r.Events {
			if rev := e.Kv.ModRevision; rev < w.next || rev > r.Header.Revision {
				return fmt.Errorf("event %s@%d in a response up to %d, after one up to %d (progress ahead, duplicate or split revision)",
					e.Kv.Key, rev, r.Header.Revision, w.next-1)
			}
			w.got = append(w.got, toHist(e))
		}
		w.next = r.Header.Revision + 1
		if f := final.Load(); f != 0 && w.next > f {
			return nil
		}
	}
	return nil
}

// committedHistory reconstructs every event up to rev from reads of the
// whole keyspace at each past revision: a path that shares no code with
// the watch.
func committedHistory(t *testing.T, n *concord.Node, rev int64) []histEvent {
	t.Helper()
	ctx := testCtx(t)
	var out []histEvent
	prev := map[string]*concord.KeyValue{}
	for r := int64(2); r <= rev; r++ {
		g, err := n.Get(ctx, "", concord.WithPrefix(), concord.WithRev(r), concord.WithSerializable())
		if err != nil {
			t.Fatal(err)
		}
		cur := map[string]*concord.KeyValue{}
		var keys []string
		for _, kv := range g.Kvs {
			cur[string(kv.Key)] = kv
			keys = append(keys, string(kv.Key))
		}
		for k := range prev {
			if cur[k] == nil {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			p, c := prev[k], cur[k]
			switch {
			case c != nil && c.ModRevision == r:
				out = append(out, toHist(&concord.Event{Type: concord.EventTypePut, Kv: c, PrevKv: p}))
			case c == nil:
				kv := &concord.KeyValue{Key: []byte(k), ModRevision: r}
				out = append(out, toHist(&concord.Event{Type: concord.EventTypeDelete, Kv: kv, PrevKv: p}))
			}
		}
		prev = cur
	}
	return out
}

// checkCompactedReplay compacts half the history: a watch from below gets
// the compaction signal, one from the compact revision replays the rest
// with previous values (some from below it).
func checkCompactedReplay(t *testing.T, l *live, rng *rand.Rand, history []histEvent, final int64) {
	ctx := testCtx(t)
	half := final / 2
	if half < 3 {
		return
	}
	n := l.pick(rng)
	if err := n.Compact(ctx, half); err != nil {
		t.Fatal(err)
	}
	r := next(t, n.Watch(ctx, "", concord.WithPrefix(), concord.WithRev(half-1)))
	if !r.Canceled || r.CompactRevision != half || !errors.Is(r.Err(), concord.ErrCompacted) {
		t.Fatalf("watch below the compaction: %+v", r)
	}
	var want []string
	for _, e := range history {
		if e.rev >= half {
			want = append(want, e.desc)
		}
	}
	var got []string
	for _, e := range collect(t, l.pick(rng).Watch(ctx, "", concord.WithPrefix(), concord.WithRev(half), concord.WithPrevKV()), len(want)) {
		got = append(got, toHist(e).desc)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("replay from the compact revision %d:\n got %q\nwant %q", half, got, want)
	}
}
