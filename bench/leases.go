package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// LeaseCluster is what the lease scenario needs of a Cluster.
type LeaseCluster interface {
	// KeepLeases grants n leases of ttl through member i and keeps them
	// alive from that member until ctx ends, counting the keep-alive
	// responses in responses. It returns once all are granted and kept
	// alive; the keep-alives stop when ctx ends.
	KeepLeases(ctx context.Context, i, n int, ttl time.Duration, responses *atomic.Int64) error
	// CommitIndex is the highest raft commit index among the members.
	CommitIndex() uint64
}

// leaseResult is one system's measurement of the lease scenario.
type leaseResult struct {
	leases                  int
	entriesPerSec, kaPerSec float64
	cpu                     float64 // process CPU seconds per wall second
}

// runLeases grants total leases spread over every member, keeps each alive
// from the member that granted it, lets keep-alives settle for warmup, then
// measures raft entries, keep-alive responses and process CPU over d.
func runLeases(ctx context.Context, sys System, nodes, total int, ttl, warmup, d time.Duration, parent string, keep bool) (leaseResult, error) {
	c, done, err := openScenario(ctx, sys, nodes, "leases", parent, keep)
	if err != nil {
		return leaseResult{}, err
	}
	defer done()
	lc, ok := c.(LeaseCluster)
	if !ok {
		return leaseResult{}, fmt.Errorf("%s has no lease support in the bench", sys.Name)
	}
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	var responses atomic.Int64
	var g errgroup.Group
	for i := range nodes {
		n := total / nodes
		if i < total%nodes {
			n++
		}
		g.Go(func() error { return lc.KeepLeases(kctx, i, n, ttl, &responses) })
	}
	if err := g.Wait(); err != nil {
		return leaseResult{}, err
	}
	fmt.Fprintf(os.Stderr, "  %s: %d leases granted and kept alive from %d node(s); settling %v\n", sys.Name, total, nodes, warmup)
	if err := sleep(ctx, warmup); err != nil {
		return leaseResult{}, err
	}
	idx0, ka0, cpu0, t0 := lc.CommitIndex(), responses.Load(), cpuTime(), time.Now()
	if err := sleep(ctx, d); err != nil {
		return leaseResult{}, err
	}
	wall := time.Since(t0).Seconds()
	r := leaseResult{
		leases:        total,
		entriesPerSec: float64(lc.CommitIndex()-idx0) / wall,
		kaPerSec:      float64(responses.Load()-ka0) / wall,
		cpu:           (cpuTime() - cpu0).Seconds() / wall,
	}
	return r, nil
}

// openScenario opens a cluster of sys for a scenario, with its data in a
// new directory under parent; done closes it and removes the directory
// (unless keep).
func openScenario(ctx context.Context, sys System, nodes int, scenario, parent string, keep bool) (c Cluster, done func(), err error) {
	dir, err := os.MkdirTemp(parent, "bench-"+scenario+"-"+sys.Name+"-")
	if err != nil {
		return nil, nil, err
	}
	octx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if c, err = sys.Open(octx, nodes, dir); err != nil {
		if !keep {
			os.RemoveAll(dir)
		}
		return nil, nil, err
	}
	return c, func() {
		c.Close()
		if !keep {
			os.RemoveAll(dir)
		}
	}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cpuTime is the CPU time (user + system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// grantAll runs grant for each of n leases, 64 at a time.
func grantAll(ctx context.Context, n int, grant func(ctx context.Context) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for range n {
		g.Go(func() error { return grant(gctx) })
	}
	return g.Wait()
}

// drain counts the responses of a keep-alive channel until it closes.
func drain[T any](wg *sync.WaitGroup, ch <-chan T, responses *atomic.Int64) {
	wg.Go(func() {
		for range ch {
			responses.Add(1)
		}
	})
}

// writeLeaseTable prints the lease scenario's results.
func writeLeaseTable(w io.Writer, nodes int, ttl time.Duration, res map[string]leaseResult) {
	fmt.Fprintf(w, "leases kept alive from %d node(s), TTL %v, steady state:\n", nodes, ttl)
	fmt.Fprintf(w, "%-8s %8s %16s %18s %10s\n", "system", "leases", "raft entries/s", "keep-alives/s", "CPU")
	for _, sys := range systems {
		r, ok := res[sys.Name]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "%-8s %8d %16.2f %18.0f %9.0f%%\n", sys.Name, r.leases, r.entriesPerSec, r.kaPerSec, 100*r.cpu)
	}
}

// runLeaseScenario runs the lease scenario for every system and size and
// prints a table per size.
func runLeaseScenario(ctx context.Context, selected []System, sizes []int, total int, ttl, warmup, d time.Duration, dir string, keep bool) error {
	if ttl < time.Second || ttl%time.Second != 0 {
		return fmt.Errorf("-lease-ttl must be whole seconds (etcd's unit), got %v", ttl)
	}
	// Settle for at least a TTL, so that grants and first renewals are over.
	warmup = max(warmup, ttl)
	var failures []error
	for _, n := range sizes {
		res := map[string]leaseResult{}
		for _, sys := range selected {
			fmt.Fprintf(os.Stderr, "%s, %d node(s): %d leases\n", sys.Name, n, total)
			r, err := runLeases(ctx, sys, n, total, ttl, warmup, d, dir, keep)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				failures = append(failures, fmt.Errorf("%s %d node(s): %w", sys.Name, n, err))
				continue
			}
			res[sys.Name] = r
		}
		fmt.Println()
		writeLeaseTable(os.Stdout, n, ttl, res)
	}
	return errors.Join(failures...)
}
