package concord_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

var (
	lockSafetyDuration = flag.Duration("concord.lock.duration", 8*time.Second, "TestLockSafety: time under session kills and leader failovers (the issue's acceptance: 30s)")
	lockSafetySeed     = flag.Uint64("concord.lock.seed", 0, "TestLockSafety: seed (0: random)")
)

const (
	lockSafetyHolders = 16
	lockSafetyName    = "safety/lock"
	lockSafetyFence   = "safety/fence"
)

// lockSafety runs TestLockSafety's workload and records its outcomes.
type lockSafety struct {
	t    *testing.T
	c    *concordtest.Cluster
	seed uint64

	kills, failovers, holdings, pauses atomic.Int64

	mu       sync.Mutex
	sessions map[int]*concord.Session // guarded by mu: each holder's current session
	acked    map[string]bool          // guarded by mu: increment ids acknowledged
	unknown  map[string]bool          // guarded by mu: increment ids whose outcome is unknown
}

// TestLockSafety is the acceptance test for locks: 16 holders on
// 3 nodes take one Mutex again and again, while their sessions are killed
// at random (orphaned, closed, or their lease revoked from another node)
// and the leader fails over (leadership transferred, or the leader node
// stopped and restarted). Each holding increments two counters, one
// through a Txn guarded by IsOwner, one through a Fence with the token;
// each increment also records "value token" under an id. At the end, for
// each counter, the recorded values are exactly 1..N (no increment lost
// or applied twice), every acknowledged increment is there and nothing
// else is, and along the counter's order the tokens never decrease and
// each token belongs to one holder: successive holders' tokens strictly
// increase. Seeded (-concord.lock.seed); -concord.lock.duration sets the
// length (default 8s; 30s is the run).
func TestLockSafety(t *testing.T) {
	seed := *lockSafetySeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (-concord.lock.seed=%d), duration %v", seed, seed, *lockSafetyDuration)
	c := concordtest.NewCluster(t, 3, concordtest.Seed(int64(seed)), concordtest.OnDisk())
	ls := &lockSafety{t: t, c: c, seed: seed, sessions: map[int]*concord.Session{}, acked: map[string]bool{}, unknown: map[string]bool{}}
	ctx, stop := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	for k := range lockSafetyHolders {
		wg.Go(func() { ls.holder(ctx, k) })
	}
	wg.Go(func() { ls.killer(ctx) })
	ls.failover(ctx, *lockSafetyDuration)
	stop()
	wg.Wait()

	n := ls.anyNode()
	ls.check(n, "safety/a")
	ls.check(n, "safety/b")
	t.Logf("%d holdings, %d acknowledged increments, %d unknown, %d session kills, %d paused holders, %d failovers",
		ls.holdings.Load(), len(ls.acked), len(ls.unknown), ls.kills.Load(), ls.pauses.Load(), ls.failovers.Load())
	if !ls.enough() {
		t.Fatalf("too little happened to test anything (seed %d)", seed)
	}
}

// enough tells whether the run has done enough of everything to test
// anything.
func (ls *lockSafety) enough() bool {
	ls.mu.Lock()
	acked := len(ls.acked)
	ls.mu.Unlock()
	return ls.holdings.Load() >= 20 && acked >= 40 && ls.kills.Load() >= 3 && ls.pauses.Load() >= 2 && ls.failovers.Load() >= 2
}

// anyNode returns a running node, waiting for one.
func (ls *lockSafety) anyNode() *concord.Node {
	for {
		for _, n := range ls.c.Nodes() {
			if n != nil {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// holder takes the lock again and again from random nodes, with a fresh
// session whenever the last one ended.
func (ls *lockSafety) holder(ctx context.Context, k int) {
	rng := rand.New(rand.NewPCG(ls.seed, uint64(k)))
	seq := 0
	for ctx.Err() == nil {
		n := ls.c.Node(rng.IntN(ls.c.Len()))
		if n == nil {
			continue
		}
		s, err := concord.NewSession(n, concord.WithSessionTTL(500*time.Millisecond), concord.WithSessionContext(ctx))
		if err != nil {
			pause(ctx, 10*time.Millisecond)
			continue
		}
		ls.mu.Lock()
		ls.sessions[k] = s
		ls.mu.Unlock()
		m := concord.NewMutex(s, lockSafetyName)
		f := concord.NewFence(n, lockSafetyFence)
		for ctx.Err() == nil {
			select {
			case <-s.Done():
			default:
				lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := m.Lock(lctx)
				cancel()
				if err != nil {
					continue
				}
				ls.holdings.Add(1)
				ls.hold(ctx, rng, n, s, m, f, k, &seq)
				uctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				m.Unlock(uctx)
				cancel()
				continue
			}
			break
		}
		s.Close()
	}
}

// hold increments both counters a few times while it believes it holds.
func (ls *lockSafety) hold(ctx context.Context, rng *rand.Rand, n *concord.Node, s *concord.Session, m *concord.Mutex, f *concord.Fence, k int, seq *int) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	tok := m.Token()
	if _, err := f.Do(ctx, tok); err != nil { // shut out earlier holders first
		return
	}
	// Now and then the holder pauses between a read and its write, past
	// its session's end (its keep-alives stop, as in a GC pause), until
	// it lost the lock; then it writes what it computed.
	pauseAt := -1
	if rng.IntN(8) == 0 {
		pauseAt = rng.IntN(6)
	}
	stall := func(at int) {
		if at != pauseAt {
			return
		}
		ls.pauses.Add(1)
		s.Orphan()
		key := m.Key()
		for ctx.Err() == nil {
			if r, err := n.Get(ctx, key, concord.WithSerializable()); err != nil || len(r.Kvs) == 0 {
				break
			}
			pause(ctx, 20*time.Millisecond)
		}
		pause(ctx, time.Duration(rng.IntN(100))*time.Millisecond) // the new holder goes on meanwhile
	}
	for i := range 1 + rng.IntN(3) {
		*seq++
		id := fmt.Sprintf("%d-%d", k, *seq)
		if !ls.increment(ctx, n, "safety/a", id, tok, func() { stall(2 * i) }, func(ops ...concord.Op) (bool, error) {
			resp, err := n.Txn(ctx).If(m.IsOwner()).Then(ops...).Commit()
			return err == nil && resp.Succeeded, err
		}) {
			return
		}
		if !ls.increment(ctx, n, "safety/b", id, tok, func() { stall(2*i + 1) }, func(ops ...concord.Op) (bool, error) {
			_, err := f.Do(ctx, tok, ops...)
			if errors.Is(err, concord.ErrStaleToken) {
				return false, nil
			}
			return err == nil, err
		}) {
			return
		}
		if rng.IntN(4) == 0 {
			pause(ctx, time.Duration(rng.IntN(20))*time.Millisecond)
		}
	}
}

// increment reads counter and writes counter+1 with a record of it
// through write; it tells whether the increment is known to be done.
func (ls *lockSafety) increment(ctx context.Context, n *concord.Node, counter, id string, tok int64, stall func(), write func(...concord.Op) (bool, error)) bool {
	resp, err := n.Get(ctx, counter)
	if err != nil {
		return false
	}
	stall()
	v := int64(0)
	if len(resp.Kvs) > 0 {
		v, _ = strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
	}
	ok, err := write(concord.OpPut(counter, strconv.FormatInt(v+1, 10)),
		concord.OpPut(counter+"-ops/"+id, fmt.Sprintf("%d %d", v+1, tok)))
	ls.mu.Lock()
	defer ls.mu.Unlock()
	switch {
	case err != nil:
		ls.unknown[counter+"-ops/"+id] = true
	case ok:
		ls.acked[counter+"-ops/"+id] = true
	}
	return ok
}

// killer ends a random holder's session every so often: orphaned (its
// lease expires after its TTL), closed, or revoked from another node.
func (ls *lockSafety) killer(ctx context.Context) {
	rng := rand.New(rand.NewPCG(ls.seed, 1000))
	for ctx.Err() == nil {
		pause(ctx, time.Duration(100+rng.IntN(300))*time.Millisecond)
		ls.mu.Lock()
		s := ls.sessions[rng.IntN(lockSafetyHolders)]
		ls.mu.Unlock()
		if s == nil {
			continue
		}
		select {
		case <-s.Done():
			continue
		default:
		}
		switch rng.IntN(3) {
		case 0:
			s.Orphan()
		case 1:
			s.Close()
		case 2:
			n := ls.c.Node(rng.IntN(ls.c.Len()))
			if n == nil {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			n.Revoke(rctx, s.Lease())
			cancel()
		}
		ls.kills.Add(1)
	}
}

// failover moves the leadership away every so often for d: by transfer,
// or by stopping the leader and restarting it a little later.
//
// It runs for d, and on (up to 4d in all) while too little has happened
// (a loaded machine makes slower progress).
func (ls *lockSafety) failover(ctx context.Context, d time.Duration) {
	rng := rand.New(rand.NewPCG(ls.seed, 2000))
	start := time.Now()
	end := start.Add(d)
	for time.Now().Before(end) {
		if time.Until(end) < time.Second && !ls.enough() && time.Since(start) < 3*d {
			end = end.Add(time.Second)
		}
		pause(ctx, min(time.Until(end), time.Duration(700+rng.IntN(800))*time.Millisecond))
		if !time.Now().Before(end) {
			break
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		lead, err := ls.c.WaitLeader(wctx)
		if err != nil {
			cancel()
			ls.t.Fatal(err)
		}
		if rng.IntN(2) == 0 {
			to := (lead + 1 + rng.IntN(2)) % 3
			if err := ls.c.Node(lead).TransferLeadership(wctx, concord.MemberID(ls.c.Name(to))); err == nil {
				ls.failovers.Add(1)
			}
		} else {
			if err := ls.c.Stop(lead); err != nil {
				ls.t.Fatal(err)
			}
			ls.failovers.Add(1)
			pause(ctx, time.Duration(100+rng.IntN(300))*time.Millisecond)
			if err := ls.c.Restart(lead); err != nil {
				ls.t.Fatal(err)
			}
		}
		cancel()
	}
}

// check verifies counter's records (see lockSafetyProblems); each
// problem fails the test.
func (ls *lockSafety) check(n *concord.Node, counter string) {
	for _, p := range lockSafetyProblems(ls.t, n, counter, ls.acked, ls.unknown) {
		ls.t.Error(p)
	}
}

// lockSafetyProblems checks counter's increment records (keys
// counter-ops/<holder>-<n>, values "value token"): values 1..N once each,
// N the counter's value, every acknowledged increment there and no other,
// tokens non-decreasing along the values, one holder per token.
func lockSafetyProblems(t *testing.T, n *concord.Node, counter string, acked, unknown map[string]bool) []string {
	var problems []string
	fail := func(format string, args ...any) {
		problems = append(problems, counter+": "+fmt.Sprintf(format, args...))
	}
	resp, err := n.Get(testCtx(t), counter+"-ops/", concord.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		v, tok int64
		holder string
	}
	var recs []rec
	for _, kv := range resp.Kvs {
		id := string(kv.Key)
		if !acked[id] && !unknown[id] {
			fail("increment %s applied but refused to its holder", id)
		}
		var r rec
		fmt.Sscanf(string(kv.Value), "%d %d", &r.v, &r.tok)
		r.holder, _, _ = strings.Cut(strings.TrimPrefix(id, counter+"-ops/"), "-")
		recs = append(recs, r)
	}
	for id := range acked {
		if strings.HasPrefix(id, counter+"-ops/") && !slices.ContainsFunc(resp.Kvs, func(kv *concord.KeyValue) bool { return string(kv.Key) == id }) {
			fail("acknowledged increment %s lost", id)
		}
	}
	slices.SortFunc(recs, func(a, b rec) int { return int(a.v - b.v) })
	owner := map[int64]string{}
	for i, r := range recs {
		if r.v != int64(i+1) {
			fail("increment values %v at %d: an increment was lost or applied twice", recs[max(0, i-2):i+1], i)
			break
		}
		if i > 0 && r.tok < recs[i-1].tok {
			fail("token %d after %d", r.tok, recs[i-1].tok)
		}
		if h, ok := owner[r.tok]; ok && h != r.holder {
			fail("token %d held by holders %s and %s", r.tok, h, r.holder)
		}
		owner[r.tok] = r.holder
	}
	if v := value(t, n, counter); v != strconv.Itoa(len(recs)) {
		fail("counter = %s after %d recorded increments", v, len(recs))
	}
	t.Logf("%s: %d increments by %d holdings", counter, len(recs), len(owner))
	return problems
}
