package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	keyPrefix = "bench/k/"
	hotKey    = "bench/hot"
)

// worker is the per-goroutine state of one workload run.
type worker struct {
	id  int
	seq int // ops started by this worker so far, across phases
	rng *rand.Rand
	val string // this worker's 256-byte (or -value-size) put value
}

// opFunc does one operation. success is what the workload counts as a
// success; only CAS can return false without an error.
type opFunc func(ctx context.Context, s Store, env *env, w *worker) (success bool, err error)

// Workload is one row of the table (two rows for CAS: attempts and successes).
type Workload struct {
	Name string // "put", "get-lin", "get-ser", "cas", "watch"
	Conc int    // concurrent workers
	Op   opFunc
	CAS  bool // report successes as well as attempts
	// Watchers > 0 makes it the watch fan-out workload (runFanout): that
	// many watchers, one writer; Conc and Op are unused.
	Watchers int
}

// ID is the workload's name in -run and in progress lines, e.g. "put-c16"
// or "watch-w100".
func (wl Workload) ID() string {
	if wl.Watchers > 0 {
		return fmt.Sprintf("%s-w%d", wl.Name, wl.Watchers)
	}
	return fmt.Sprintf("%s-c%d", wl.Name, wl.Conc)
}

// env is what the workloads share: the key space and the run parameters.
type env struct {
	keys      []string
	valueSize int
}

func newEnv(nkeys, valueSize int) *env {
	e := &env{keys: make([]string, nkeys), valueSize: valueSize}
	for i := range e.keys {
		e.keys[i] = fmt.Sprintf("%s%05d", keyPrefix, i)
	}
	return e
}

func (e *env) randomKey(w *worker) string { return e.keys[w.rng.IntN(len(e.keys))] }

// value returns a printable value of exactly n bytes derived from seed.
func value(n int, seed uint64) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

func opPut(ctx context.Context, s Store, e *env, w *worker) (bool, error) {
	return true, s.Put(ctx, e.randomKey(w), w.val)
}

func opGetLinearizable(ctx context.Context, s Store, e *env, w *worker) (bool, error) {
	_, err := s.Get(ctx, e.randomKey(w), true)
	return true, err
}

func opGetSerializable(ctx context.Context, s Store, e *env, w *worker) (bool, error) {
	_, err := s.Get(ctx, e.randomKey(w), false)
	return true, err
}

// opCAS is one compare-and-swap attempt on the hot key: a linearizable read of
// the current value, then a transaction that replaces it with a value unique
// to this worker and attempt if it is still the value read.
func opCAS(ctx context.Context, s Store, e *env, w *worker) (bool, error) {
	cur, err := s.Get(ctx, hotKey, true)
	if err != nil {
		return false, err
	}
	next := "w" + strconv.Itoa(w.id) + "-" + strconv.Itoa(w.seq)
	return s.CAS(ctx, hotKey, cur, next)
}

// workloads is the fixed list, in table order.
var workloads = []Workload{
	{Name: "put", Conc: 1, Op: opPut},
	{Name: "put", Conc: 16, Op: opPut},
	{Name: "put", Conc: 256, Op: opPut},
	{Name: "get-lin", Conc: 16, Op: opGetLinearizable},
	{Name: "get-lin", Conc: 256, Op: opGetLinearizable},
	{Name: "get-ser", Conc: 16, Op: opGetSerializable},
	{Name: "get-ser", Conc: 256, Op: opGetSerializable},
	{Name: "cas", Conc: 16, Op: opCAS, CAS: true},
	{Name: "watch", Watchers: 100},
	{Name: "watch", Watchers: 1000},
}

// runOpts bounds each measured phase: by Duration, or by Ops total operations
// when Ops > 0. Warmup runs the same workload unmeasured first.
type runOpts struct {
	Duration time.Duration
	Ops      int64
	Warmup   time.Duration
}

// Result is one workload's measurement.
type Result struct {
	Ops       int64 // completed operations (CAS: attempts), errors excluded
	Successes int64 // CAS: attempts whose swap happened; others: = Ops
	Errors    int64
	FirstErr  error
	Elapsed   time.Duration

	P50, P99         time.Duration // over all completed operations
	SuccP50, SuccP99 time.Duration // over successful CAS attempts
}

func (r Result) OpsPerSec() float64 { return float64(r.Ops) / r.Elapsed.Seconds() }
func (r Result) SuccPerSec() float64 {
	return float64(r.Successes) / r.Elapsed.Seconds()
}

// preload writes every key once and seeds the hot key, so that reads hit
// existing keys and the first CAS has a value to compare against.
func preload(ctx context.Context, c Cluster, e *env) error {
	stores, err := openStores(c)
	if err != nil {
		return err
	}
	defer closeStores(stores)
	const writers = 64
	val := value(e.valueSize, 0)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			s := stores[i%len(stores)]
			for {
				k := next.Add(1) - 1
				if k >= int64(len(e.keys)) {
					return
				}
				if err := s.Put(ctx, e.keys[k], val); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	if err := stores[0].Put(ctx, hotKey, "seed"); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	return nil
}

func openStores(c Cluster) ([]Store, error) {
	stores := make([]Store, c.Size())
	for i := range stores {
		s, err := c.Store(i)
		if err != nil {
			closeStores(stores[:i])
			return nil, fmt.Errorf("open client for member %d: %w", i, err)
		}
		stores[i] = s
	}
	return stores, nil
}

func closeStores(stores []Store) {
	for _, s := range stores {
		s.Close()
	}
}

// maxErrors aborts a workload whose operations keep failing, instead of
// spinning on errors for the whole duration.
const maxErrors = 1000

// run measures wl against c. Worker i uses a client bound to member
// i % c.Size(), so the load is spread evenly over the members.
func run(ctx context.Context, c Cluster, e *env, wl Workload, o runOpts) (Result, error) {
	stores, err := openStores(c)
	if err != nil {
		return Result{}, err
	}
	defer closeStores(stores)

	workers := make([]*worker, wl.Conc)
	for i := range workers {
		workers[i] = &worker{
			id:  i,
			rng: rand.New(rand.NewPCG(uint64(i)+1, uint64(wl.Conc))),
			val: value(e.valueSize, uint64(i)+1),
		}
	}
	if o.Warmup > 0 {
		if _, err := phase(ctx, stores, e, wl, workers, o.Warmup, 0, false); err != nil {
			return Result{}, err
		}
	}
	return phase(ctx, stores, e, wl, workers, o.Duration, o.Ops, true)
}

type sample struct {
	ops, successes, errors int64
	firstErr               error
	lat, succLat           []time.Duration
}

// phase runs wl.Conc workers until d has passed (maxOps == 0) or until maxOps
// operations have started in total.
func phase(ctx context.Context, stores []Store, e *env, wl Workload, workers []*worker, d time.Duration, maxOps int64, record bool) (Result, error) {
	samples := make([]sample, len(workers))
	var (
		started  atomic.Int64
		nerrors  atomic.Int64
		wg       sync.WaitGroup
		go_      = make(chan struct{})
		deadline time.Time
	)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, w := range workers {
		wg.Go(func() {
			s := stores[i%len(stores)]
			smp := &samples[i]
			<-go_
			for pctx.Err() == nil {
				if maxOps > 0 {
					if started.Add(1) > maxOps {
						return
					}
				}
				t0 := time.Now()
				if maxOps == 0 && !t0.Before(deadline) {
					return
				}
				ok, err := wl.Op(pctx, s, e, w)
				lat := time.Since(t0)
				w.seq++
				if err != nil {
					if pctx.Err() != nil {
						return
					}
					smp.errors++
					if smp.firstErr == nil {
						smp.firstErr = err
					}
					if nerrors.Add(1) >= maxErrors {
						cancel()
					}
					continue
				}
				smp.ops++
				if !record {
					continue
				}
				smp.lat = append(smp.lat, lat)
				if ok {
					smp.successes++
					if wl.CAS {
						smp.succLat = append(smp.succLat, lat)
					}
				}
			}
		})
	}
	start := time.Now()
	deadline = start.Add(d)
	close(go_)
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}

	res := Result{Elapsed: elapsed}
	var lat, succLat []time.Duration
	for _, smp := range samples {
		res.Ops += smp.ops
		res.Successes += smp.successes
		res.Errors += smp.errors
		if res.FirstErr == nil {
			res.FirstErr = smp.firstErr
		}
		lat = append(lat, smp.lat...)
		succLat = append(succLat, smp.succLat...)
	}
	if res.Errors >= maxErrors {
		return res, fmt.Errorf("%s: aborted after %d errors, first: %w", wl.ID(), res.Errors, res.FirstErr)
	}
	res.P50, res.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	res.SuccP50, res.SuccP99 = percentile(succLat, 0.50), percentile(succLat, 0.99)
	return res, nil
}

// percentile returns the smallest sample that at least q of the samples do not
// exceed (nearest rank). It sorts xs.
func percentile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	rank := int(q*float64(len(xs)) + 0.999999999)
	rank = min(max(rank, 1), len(xs))
	return xs[rank-1]
}
