package concord_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

var (
	leaseFaultSeed     = flag.Uint64("concord.lease.seed", 0, "TestLeaseNeverExpiresEarly: seed (0: random)")
	leaseFaultDuration = flag.Duration("concord.lease.duration", 6*time.Second, "TestLeaseNeverExpiresEarly: time under faults")
)

// heldLease is a lease a holder keeps alive, as the test saw it.
type heldLease struct {
	id     concord.LeaseID
	key    string
	ttl    time.Duration
	putRev int64 // the revision that attached key

	mu       sync.Mutex
	promised time.Time // guarded by mu: latest ack's request time + ttl
	acks     int       // guarded by mu
	goneAt   time.Time // guarded by mu: the key was first seen deleted by then
	goneOn   int       // guarded by mu: on that node
}

func (h *heldLease) gone() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.goneAt.IsZero()
}

// leaseFaults runs TestLeaseNeverExpiresEarly's workload.
type leaseFaults struct {
	t    *testing.T
	c    *concordtest.Cluster
	seed uint64

	mu     sync.Mutex
	leases []*heldLease // guarded by mu
}

// TestLeaseNeverExpiresEarly: holders grant leases and renew them from
// random nodes, on time, late or not at all, while the network drops,
// delays and reorders messages, partitions and cuts links (the leader's
// too) and nodes restart. No lease's key is ever deleted before the last
// acknowledged keep-alive's request time plus the TTL. Seeded: the seed
// is logged; -concord.lease.seed replays its faults.
func TestLeaseNeverExpiresEarly(t *testing.T) {
	seed := *leaseFaultSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (-concord.lease.seed=%d)", seed, seed)
	c := concordtest.NewCluster(t, 3, concordtest.Seed(int64(seed)), concordtest.OnDisk())
	lf := &leaseFaults{t: t, c: c, seed: seed}
	startTerm := c.Node(0).Status().Term
	ctx, stop := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	for k := range 6 {
		wg.Go(func() { lf.hold(ctx, k) })
	}
	wg.Go(func() { lf.poll(ctx) })
	lf.faults(ctx, *leaseFaultDuration)
	// Healed: renewals and expiries go on until enough happened to judge
	// (a loaded host may get few through the faults), within a deadline.
	for end := time.Now().Add(30 * time.Second); !lf.enough() && time.Now().Before(end); {
		pause(ctx, 50*time.Millisecond)
	}
	stop()
	wg.Wait()

	var maxTerm uint64
	for _, n := range c.Nodes() {
		if n != nil {
			maxTerm = max(maxTerm, n.Status().Term)
		}
	}
	for _, h := range lf.leases {
		h.mu.Lock()
		if !h.goneAt.IsZero() && h.goneAt.Before(h.promised) {
			t.Errorf("lease %x (ttl %v): its key was deleted on node %d by %v, %v before its last keep-alive's promise",
				h.id, h.ttl, h.goneOn, h.goneAt.Format("15:04:05.000"), h.promised.Sub(h.goneAt))
		}
		h.mu.Unlock()
	}
	acks, expired := lf.tally()
	t.Logf("%d leases, %d acknowledged keep-alives, %d seen expired, terms %d..%d", len(lf.leases), acks, expired, startTerm, maxTerm)
	if acks < 10 || expired < 2 || maxTerm == startTerm {
		t.Fatalf("too little happened to test anything (seed %d)", seed)
	}
}

// enough reports whether the run has at least 10 acknowledged
// keep-alives and 2 leases seen expired.
func (lf *leaseFaults) enough() bool {
	acks, expired := lf.tally()
	return acks >= 10 && expired >= 2
}

// tally counts the acknowledged keep-alives and the leases seen expired.
func (lf *leaseFaults) tally() (acks, expired int) {
	lf.mu.Lock()
	hs := append([]*heldLease(nil), lf.leases...)
	lf.mu.Unlock()
	for _, h := range hs {
		h.mu.Lock()
		acks += h.acks
		if !h.goneAt.IsZero() {
			expired++
		}
		h.mu.Unlock()
	}
	return acks, expired
}

// node returns a random running node.
func (lf *leaseFaults) node(rng *rand.Rand) *concord.Node {
	for {
		if n := lf.c.Node(rng.IntN(lf.c.Len())); n != nil {
			return n
		}
	}
}

// hold grants lease after lease, each with a key, and renews it with
// KeepAliveOnce from random nodes: on time, late, or a few times and then
// no more, until it is seen gone.
func (lf *leaseFaults) hold(ctx context.Context, k int) {
	rng := rand.New(rand.NewPCG(lf.seed, uint64(k)))
	ttls := []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, time.Second}
	for round := 0; ctx.Err() == nil; round++ {
		h := lf.grant(ctx, rng, ttls[rng.IntN(len(ttls))], fmt.Sprintf("lease/%d/%d", k, round))
		if h == nil {
			pause(ctx, 20*time.Millisecond)
			continue
		}
		renewals := 1 << 30
		if rng.IntN(3) == 0 {
			renewals = rng.IntN(4) // then abandoned
		}
		for i := 0; ctx.Err() == nil && !h.gone(); i++ {
			pause(ctx, time.Duration(float64(h.ttl)*(0.15+0.45*rng.Float64())))
			if i >= renewals || h.gone() {
				continue
			}
			kctx, cancel := context.WithTimeout(ctx, h.ttl/2)
			sent := time.Now()
			_, err := lf.node(rng).KeepAliveOnce(kctx, h.id)
			cancel()
			if err == nil {
				h.mu.Lock()
				h.acks++
				if p := sent.Add(h.ttl); p.After(h.promised) {
					h.promised = p
				}
				h.mu.Unlock()
			}
		}
	}
}

// grant grants a lease of ttl and puts key on it; nil if either failed.
func (lf *leaseFaults) grant(ctx context.Context, rng *rand.Rand, ttl time.Duration, key string) *heldLease {
	gctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	n := lf.node(rng)
	id, err := n.Grant(gctx, ttl)
	if err != nil {
		return nil
	}
	resp, err := n.Put(gctx, key, "v", concord.WithLease(id))
	if err != nil {
		return nil // the key may or may not be there: not a lease to check
	}
	h := &heldLease{id: id, key: key, ttl: ttl, putRev: resp.Header.Revision}
	lf.mu.Lock()
	lf.leases = append(lf.leases, h)
	lf.mu.Unlock()
	return h
}

// poll reads every live lease's key on every node in turn and records
// when one is first seen deleted: by a node whose state includes the put.
func (lf *leaseFaults) poll(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		pause(ctx, 5*time.Millisecond)
		idx := i % lf.c.Len()
		n := lf.c.Node(idx)
		if n == nil {
			continue
		}
		lf.mu.Lock()
		hs := append([]*heldLease(nil), lf.leases...)
		lf.mu.Unlock()
		for _, h := range hs {
			if h.gone() {
				continue
			}
			gctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			resp, err := n.Get(gctx, h.key, concord.WithSerializable())
			cancel()
			if err != nil || len(resp.Kvs) > 0 || resp.Header.Revision < h.putRev {
				continue
			}
			h.mu.Lock()
			h.goneAt, h.goneOn = time.Now(), idx+1
			h.mu.Unlock()
		}
	}
}

// faults injects a random fault every few hundred milliseconds for d,
// the leader's isolation every fourth, then heals everything.
func (lf *leaseFaults) faults(ctx context.Context, d time.Duration) {
	c, net := lf.c, lf.c.Network()
	rng := rand.New(rand.NewPCG(lf.seed, 1<<32))
	stopped := -1
	defer func() {
		c.Heal()
		net.Reset()
		if stopped >= 0 {
			if err := c.Restart(stopped); err != nil {
				lf.t.Error(err)
			}
		}
	}()
	for end, i := time.Now().Add(d), 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
		pause(ctx, time.Duration(150+rng.IntN(450))*time.Millisecond)
		a, b := rng.IntN(3), rng.IntN(3)
		switch act := rng.IntN(8); {
		case i%4 == 0:
			c.Heal()
			for j, n := range c.Nodes() {
				if n != nil && n.IsLeader() {
					c.Isolate(j)
				}
			}
		case act == 0 || act == 1:
			c.Heal()
		case act == 2:
			c.Isolate(a)
		case act == 3:
			c.Partition([]int{a}, []int{(a + 1) % 3, (a + 2) % 3})
		case act == 4 && a != b:
			net.Cut(concord.MemberID(c.Name(a)), concord.MemberID(c.Name(b)))
		case act == 5:
			net.SetDropRate(0.3 * rng.Float64())
			net.SetDelay(0, time.Duration(rng.IntN(5))*time.Millisecond)
			net.SetReorderRate(0.2 * rng.Float64())
		case act == 6 && stopped < 0:
			stopped = a
			if err := c.Stop(a); err != nil {
				lf.t.Error(err)
			}
		case act == 7 && stopped >= 0:
			if err := c.Restart(stopped); err != nil {
				lf.t.Error(err)
			}
			stopped = -1
		}
	}
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
