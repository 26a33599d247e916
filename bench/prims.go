package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// PrimCluster is what the primitives scenario needs of a Cluster: sessions
// on a member, and through them the systems' own election and queue
// (concord's Election and Queue; etcd's concurrency.Election and
// experimental/recipes.Queue). Locks have their own scenario (locks.go).
type PrimCluster interface {
	// Session opens a session with ttl through member i.
	Session(ctx context.Context, i int, ttl time.Duration) (PrimSession, error)
}

// PrimSession is one session: the liveness of one candidate or consumer.
type PrimSession interface {
	// Campaign blocks until this session leads election name.
	Campaign(ctx context.Context, name, val string) error
	// Enqueue adds val to queue name.
	Enqueue(ctx context.Context, name, val string) error
	// Dequeue takes the oldest message of queue name, blocking until there
	// is one, and returns its value and its ack (a no-op where the system
	// has no acks).
	Dequeue(ctx context.Context, name string) (val string, ack func(context.Context) error, err error)
	// Consume is a consumer loop on queue name until ctx ends or fn
	// fails: each message's value goes to fn, and the message is acked
	// once fn returns, as the system's API lets a loop do it best
	// (concord: Message.AckAndDequeue, the ack in the next claim's write;
	// etcd: its recipe's Dequeue, which needs no ack).
	Consume(ctx context.Context, name string, fn func(val string) error) error
	// Orphan stops keeping the session alive, as a process death would:
	// the lease runs out after its TTL.
	Orphan()
	// Revoke ends the session's lease now.
	Revoke(ctx context.Context) error
	// Close ends the session (revoking its lease if it still lives).
	Close() error
}

// primWorkload is one primitives workload; run fills one row per system.
type primWorkload struct {
	id   string
	what string // row label
	run  func(ctx context.Context, c PrimCluster, nodes int, o primOpts) (Result, error)
}

// primOpts are the scenario's knobs.
type primOpts struct {
	duration time.Duration
	rounds   int           // election failover rounds
	ttl      time.Duration // session TTL of the failover-by-expiry rounds
}

var primWorkloads = []primWorkload{
	{"elect-revoke", "election failover (revoke)", runElectRevoke},
	{"elect-expire", "election failover (expiry)", runElectExpire},
	{"queue-p8c8", "queue p=8 c=8", func(ctx context.Context, c PrimCluster, nodes int, o primOpts) (Result, error) {
		return runQueue(ctx, c, nodes, o, false)
	}},
	{"queue-p8c8-loop", "queue p=8 c=8, consumer loop", func(ctx context.Context, c PrimCluster, nodes int, o primOpts) (Result, error) {
		return runQueue(ctx, c, nodes, o, true)
	}},
}

// runPrimitives runs the primitives workloads on every system and size and
// prints one table.
func runPrimitives(ctx context.Context, selected []System, sizes []int, o primOpts, match func(string) bool, parent string, keep bool) error {
	var rows []row
	var failures []error
	for _, n := range sizes {
		for _, wl := range primWorkloads {
			if match(wl.id) {
				rows = append(rows, row{nodes: n, workload: wl.what, cells: map[string]cell{}})
			}
		}
	}
	for _, sys := range selected {
		for _, n := range sizes {
			if err := runPrimSystem(ctx, sys, n, o, match, parent, keep, rows); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				failures = append(failures, fmt.Errorf("%s %d node(s): %w", sys.Name, n, err))
				fmt.Fprintf(os.Stderr, "%s %d node(s): %v\n", sys.Name, n, err)
			}
		}
	}
	fmt.Println()
	writeTable(os.Stdout, rows)
	fmt.Println()
	fmt.Println("election rows: ops/s = failovers per second of failover time; p50/p99 from revoking (or orphaning) the")
	fmt.Println("leader's session to the next candidate's Campaign returning. queue row: messages consumed (dequeued and")
	fmt.Println("acked) per second with 8 producers and 8 consumers; p50/p99 from Enqueue's start to the consumer getting")
	fmt.Println("the message (after its ack; in the loop, before it: the ack rides with the next dequeue).")
	return errors.Join(failures...)
}

func runPrimSystem(ctx context.Context, sys System, nodes int, o primOpts, match func(string) bool, parent string, keep bool, rows []row) error {
	c, done, err := openScenario(ctx, sys, nodes, "prims", parent, keep)
	if err != nil {
		return err
	}
	defer done()
	pc, ok := c.(PrimCluster)
	if !ok {
		return fmt.Errorf("%s has no primitives in the bench", sys.Name)
	}
	for _, wl := range primWorkloads {
		if !match(wl.id) {
			continue
		}
		res, err := wl.run(ctx, pc, nodes, o)
		r := findRow(rows, nodes, wl.what)
		if err != nil {
			r.cells[sys.Name] = cell{note: "error"}
			return fmt.Errorf("%s: %w", wl.id, err)
		}
		r.cells[sys.Name] = cell{ok: true, opsPerS: res.OpsPerSec(), p50: res.P50, p99: res.P99}
		fmt.Fprintf(os.Stderr, "%s %d node(s) %-13s %10s ops/s  p50 %-9s p99 %-9s (%d ops)\n",
			sys.Name, nodes, wl.id, fmtRate(res.OpsPerSec()), fmtLatency(res.P50), fmtLatency(res.P99), res.Ops)
	}
	return nil
}

func findRow(rows []row, nodes int, what string) *row {
	for i := range rows {
		if rows[i].nodes == nodes && rows[i].workload == what {
			return &rows[i]
		}
	}
	panic("no row " + what)
}

// latencies collects samples from many goroutines.
type latencies struct {
	mu sync.Mutex
	xs []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.xs = append(l.xs, d)
	l.mu.Unlock()
}

func (l *latencies) result(elapsed time.Duration) Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Result{Ops: int64(len(l.xs)), Successes: int64(len(l.xs)), Elapsed: elapsed,
		P50: percentile(l.xs, 0.50), P99: percentile(l.xs, 0.99)}
}

// sessions opens n sessions, session i through member i mod nodes.
func sessions(ctx context.Context, c PrimCluster, nodes, n int, ttl time.Duration) ([]PrimSession, func(), error) {
	ss := make([]PrimSession, 0, n)
	closeAll := func() {
		for _, s := range ss {
			s.Close()
		}
	}
	for i := range n {
		s, err := c.Session(ctx, i%nodes, ttl)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		ss = append(ss, s)
	}
	return ss, closeAll, nil
}

// runElectRevoke: three candidates on distinct members; in each round the
// leader's lease is revoked and the next leader's Campaign return is timed.
// The revoked candidate comes back with a new session.
func runElectRevoke(ctx context.Context, c PrimCluster, nodes int, o primOpts) (Result, error) {
	return runElect(ctx, c, nodes, o, 10*time.Second, func(ctx context.Context, s PrimSession) error {
		return s.Revoke(ctx)
	})
}

// runElectExpire: as runElectRevoke, but the leader's session is orphaned
// (its keep-alives stop, as when its process dies), so the failover time
// includes the lease running out.
func runElectExpire(ctx context.Context, c PrimCluster, nodes int, o primOpts) (Result, error) {
	return runElect(ctx, c, nodes, o, o.ttl, func(_ context.Context, s PrimSession) error {
		s.Orphan()
		return nil
	})
}

func runElect(ctx context.Context, c PrimCluster, nodes int, o primOpts, ttl time.Duration, kill func(context.Context, PrimSession) error) (Result, error) {
	const candidates = 3
	name := fmt.Sprintf("bench/elect/%d", time.Now().UnixNano())
	type won struct {
		i  int
		at time.Time
	}
	wins := make(chan won, candidates)
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	cur := make([]PrimSession, candidates)
	var mu sync.Mutex
	defer func() {
		cancel()
		mu.Lock()
		for _, s := range cur {
			if s != nil {
				s.Close()
			}
		}
		mu.Unlock()
		wg.Wait()
	}()
	campaign := func(i int) error {
		s, err := c.Session(rctx, i%nodes, ttl)
		if err != nil {
			return err
		}
		mu.Lock()
		cur[i] = s
		mu.Unlock()
		wg.Go(func() {
			if err := s.Campaign(rctx, name, fmt.Sprint(i)); err == nil {
				wins <- won{i, time.Now()}
			}
		})
		return nil
	}
	for i := range candidates {
		if err := campaign(i); err != nil {
			return Result{}, err
		}
	}
	var lat latencies
	var total time.Duration
	leader := <-wins
	for range o.rounds {
		mu.Lock()
		s := cur[leader.i]
		mu.Unlock()
		t0 := time.Now()
		if err := kill(rctx, s); err != nil {
			return Result{}, err
		}
		select {
		case next := <-wins:
			d := next.at.Sub(t0)
			lat.add(d)
			total += d
			s.Close()
			if err := campaign(leader.i); err != nil {
				return Result{}, err
			}
			leader = next
		case <-time.After(time.Minute):
			return Result{}, errors.New("no new leader within a minute")
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	return lat.result(total), nil
}

// runQueue: 8 producers and 8 consumers on sessions spread over the
// members for the duration. Producers keep at most 1,000 messages in the
// queue, so latency measures the queue, not an ever-growing backlog. With
// loop, consumers use Consume, else Dequeue then ack.
func runQueue(ctx context.Context, c PrimCluster, nodes int, o primOpts, loop bool) (Result, error) {
	const producers, consumers, backlog = 8, 8, 1000
	name := fmt.Sprintf("bench/queue/%d", time.Now().UnixNano())
	ss, closeAll, err := sessions(ctx, c, nodes, producers+consumers, 10*time.Second)
	if err != nil {
		return Result{}, err
	}
	defer closeAll()
	var (
		lat      latencies
		inQueue  = make(chan struct{}, backlog)
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	rctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	fail := func(err error) {
		if rctx.Err() == nil {
			errOnce.Do(func() { firstErr = err })
			cancel()
		}
	}
	start := time.Now()
	for p := range producers {
		wg.Go(func() {
			for {
				select {
				case inQueue <- struct{}{}:
				case <-rctx.Done():
					return
				}
				if err := ss[p].Enqueue(rctx, name, fmt.Sprint(time.Now().UnixNano())); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	consumed := func(val string) {
		var t0 int64
		fmt.Sscan(val, &t0)
		lat.add(time.Since(time.Unix(0, t0)))
		<-inQueue
	}
	for k := range consumers {
		wg.Go(func() {
			if loop {
				err := ss[producers+k].Consume(rctx, name, func(val string) error { consumed(val); return nil })
				if err != nil {
					fail(err)
				}
				return
			}
			for {
				val, ack, err := ss[producers+k].Dequeue(rctx, name)
				if err != nil {
					fail(err)
					return
				}
				if err := ack(rctx); err != nil {
					fail(err)
					return
				}
				consumed(val)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return Result{}, firstErr
	}
	return lat.result(time.Since(start)), nil
}
