package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"

	"github.com/concordkv/concord"
)

// Locker is one participant of a lock, with a session of its own.
type Locker interface {
	Lock(ctx context.Context) error
	Unlock(ctx context.Context) error
	Close() error
}

// LockCluster is what the lock scenario needs of a Cluster.
type LockCluster interface {
	// Locker returns a participant of the lock called name, with a new
	// session on member i % Size().
	Locker(i int, name string) (Locker, error)
}

// Locker implements LockCluster: a concord.Mutex on a concord.Session.
func (c *concordCluster) Locker(i int, name string) (Locker, error) {
	s, err := concord.NewSession(c.nodes[i%len(c.nodes)])
	if err != nil {
		return nil, err
	}
	return &concordLocker{Mutex: concord.NewMutex(s, name), s: s}, nil
}

type concordLocker struct {
	*concord.Mutex
	s *concord.Session
}

func (l *concordLocker) Close() error { return l.s.Close() }

// Locker implements LockCluster: etcd's concurrency.Mutex on a
// concurrency.Session of an in-process client.
func (c *etcdCluster) Locker(i int, name string) (Locker, error) {
	cli := v3client.New(c.members[i%len(c.members)].Server)
	s, err := concurrency.NewSession(cli)
	if err != nil {
		cli.Close()
		return nil, err
	}
	return &etcdLocker{Mutex: concurrency.NewMutex(s, name), s: s, cli: cli}, nil
}

type etcdLocker struct {
	*concurrency.Mutex
	s   *concurrency.Session
	cli interface{ Close() error }
}

func (l *etcdLocker) Close() error {
	l.s.Close()
	return l.cli.Close()
}

// lockResult is one system's measurement of the lock scenario.
type lockResult struct {
	uncontended       []time.Duration // Lock+Unlock round trips of a lone holder
	handoffs          []time.Duration // Unlock call to the next holder's Lock return
	holdingsPerSecond float64
}

// runLocks measures, for d each: Lock+Unlock by one holder alone, then
// waiters holders taking one lock in turn (so that waiters-1 always wait),
// the hand-off being the time from one holder's Unlock call to the next
// holder's Lock returning.
func runLocks(ctx context.Context, sys System, nodes, waiters int, warmup, d time.Duration, parent string, keep bool) (lockResult, error) {
	var r lockResult
	c, done, err := openScenario(ctx, sys, nodes, "locks", parent, keep)
	if err != nil {
		return r, err
	}
	defer done()
	lc, ok := c.(LockCluster)
	if !ok {
		return r, fmt.Errorf("%s has no lock support in the bench", sys.Name)
	}
	lone, err := lc.Locker(1, "bench-lock/alone")
	if err != nil {
		return r, err
	}
	defer lone.Close()
	for phase, dur := range []time.Duration{warmup, d} {
		r.uncontended = r.uncontended[:0]
		for end := time.Now().Add(dur); time.Now().Before(end); {
			t0 := time.Now()
			if err := lone.Lock(ctx); err != nil {
				return r, err
			}
			if err := lone.Unlock(ctx); err != nil {
				return r, err
			}
			if phase == 1 {
				r.uncontended = append(r.uncontended, time.Since(t0))
			}
		}
	}
	lockers := make([]Locker, waiters)
	for i := range lockers {
		if lockers[i], err = lc.Locker(i, "bench-lock/contended"); err != nil {
			return r, err
		}
		defer lockers[i].Close()
	}
	var (
		released atomic.Int64 // unix nanos of the last Unlock call
		measure  atomic.Bool
		stop     atomic.Bool
		mu       sync.Mutex
		errs     []error
	)
	var wg sync.WaitGroup
	for _, l := range lockers {
		wg.Go(func() {
			for !stop.Load() {
				if err := l.Lock(ctx); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				if rel := released.Load(); rel != 0 && measure.Load() {
					dt := time.Duration(time.Now().UnixNano() - rel)
					mu.Lock()
					r.handoffs = append(r.handoffs, dt)
					mu.Unlock()
				}
				released.Store(time.Now().UnixNano())
				if err := l.Unlock(ctx); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	if err := sleep(ctx, warmup); err != nil {
		return r, err
	}
	measure.Store(true)
	t0 := time.Now()
	err = sleep(ctx, d)
	measure.Store(false)
	mu.Lock()
	r.holdingsPerSecond = float64(len(r.handoffs)) / time.Since(t0).Seconds()
	mu.Unlock()
	stop.Store(true)
	wg.Wait()
	if err != nil {
		return r, err
	}
	if len(errs) > 0 {
		return r, errs[0]
	}
	return r, nil
}

// lockQuantile returns the q-quantile of ds (sorted in place), 0 if empty.
func lockQuantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(q*float64(len(ds))))]
}

func writeLockTable(w io.Writer, nodes, waiters int, res map[string]lockResult, order []System) {
	fmt.Fprintf(w, "\nlocks, %d node(s): one holder alone, then %d holders on one lock\n", nodes, waiters)
	fmt.Fprintf(w, "%-8s %22s %22s %22s %14s\n", "system", "Lock+Unlock p50", "Lock+Unlock p99", "hand-off p50 / p99", "holdings/s")
	for _, s := range order {
		r, ok := res[s.Name]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "%-8s %22v %22v %22s %14.0f\n", s.Name,
			lockQuantile(r.uncontended, 0.5).Round(time.Microsecond), lockQuantile(r.uncontended, 0.99).Round(time.Microsecond),
			fmt.Sprintf("%v / %v", lockQuantile(r.handoffs, 0.5).Round(time.Microsecond), lockQuantile(r.handoffs, 0.99).Round(time.Microsecond)),
			r.holdingsPerSecond)
	}
}

// runLockScenario runs the lock scenario on every system and size.
func runLockScenario(ctx context.Context, selected []System, sizes []int, waiters int, warmup, d time.Duration, dir string, keep bool) error {
	for _, n := range sizes {
		res := map[string]lockResult{}
		for _, sys := range selected {
			fmt.Fprintf(os.Stderr, "  %s, %d node(s): locks\n", sys.Name, n)
			r, err := runLocks(ctx, sys, n, waiters, warmup, d, dir, keep)
			if err != nil {
				return fmt.Errorf("%s %d node(s): %w", sys.Name, n, err)
			}
			res[sys.Name] = r
		}
		writeLockTable(os.Stdout, n, waiters, res, selected)
	}
	return nil
}
