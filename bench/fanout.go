package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// watchPrefix is where the fan-out workload writes and watches.
const watchPrefix = "bench/w/"

// fanoutWatcher is one watcher's measurements.
type fanoutWatcher struct {
	events atomic.Int64    // measured events received
	lat    []time.Duration // put-to-delivery lag of each, owned by the watcher
	err    error
}

// runFanout measures watch fan-out: wl.Watchers watchers of watchPrefix,
// watcher i on member i % size, and one writer (on member 0) putting keys
// under it one after the other, each value holding the time its put
// started. Every watcher must get every put; the result counts the events
// delivered over all watchers per second (from the first measured put to
// the last delivery) and the lag from the start of a put to its delivery
// to each watcher. Warmup puts go first, unmeasured.
func runFanout(ctx context.Context, c Cluster, wl Workload, o runOpts) (Result, error) {
	stores, err := openStores(c)
	if err != nil {
		return Result{}, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ws := make([]*fanoutWatcher, wl.Watchers)
	var created, wg sync.WaitGroup
	created.Add(len(ws))
	for i := range ws {
		w := &fanoutWatcher{}
		ws[i] = w
		wg.Go(func() {
			w.err = stores[i%len(stores)].WatchPrefix(wctx, watchPrefix, created.Done, func(v []byte) {
				if len(v) == 0 || v[0] != 'm' {
					return // a warmup put
				}
				t, err := strconv.ParseInt(string(v[1:]), 10, 64)
				if err != nil {
					return
				}
				w.lat = append(w.lat, time.Since(time.Unix(0, t)))
				w.events.Add(1)
			})
		})
	}
	var stopErr error
	stop := func() {
		cancel()
		closeStores(stores) // closing the etcd clients ends their watches
		// Bounded: a system whose watch channels do not close after
		// cancellation gets an error rather than hanging the run (its
		// goroutines are left behind).
		if err := waitGroup(ctx, &wg, 10*time.Second); err != nil {
			stopErr = fmt.Errorf("%s: watchers did not end after cancel: %w", wl.ID(), err)
		}
	}
	if err := waitGroup(ctx, &created, time.Minute); err != nil {
		stop()
		return Result{}, fmt.Errorf("%s: watchers not created: %w", wl.ID(), err)
	}

	writer := stores[0]
	put := func(i int64, val string) error {
		return writer.Put(ctx, watchPrefix+strconv.FormatInt(i%100, 10), val)
	}
	for end, i := time.Now().Add(o.Warmup), int64(0); time.Now().Before(end); i++ {
		if err := put(i, "warmup"); err != nil {
			stop()
			return Result{}, err
		}
	}
	start := time.Now()
	var puts int64
	for ; o.Ops > 0 && puts < o.Ops || o.Ops <= 0 && time.Since(start) < o.Duration; puts++ {
		if err := put(puts, "m"+strconv.FormatInt(time.Now().UnixNano(), 10)); err != nil {
			stop()
			return Result{}, err
		}
	}
	want := puts * int64(len(ws))
	deadline := time.Now().Add(time.Minute)
	var got int64
	for {
		got = 0
		for _, w := range ws {
			got += w.events.Load()
		}
		if got >= want || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Microsecond) // poll the watchers' counters
	}
	elapsed := time.Since(start)
	stop()
	if stopErr != nil && got == want {
		// Measured in full: say so, and go on.
		fmt.Fprintf(os.Stderr, "warning: %v (the measurement is complete)\n", stopErr)
	} else if stopErr != nil {
		return Result{}, fmt.Errorf("%w (%d events delivered of %d)", stopErr, got, want)
	}
	if got != want {
		var errs []error
		for _, w := range ws {
			if w.err != nil && !errors.Is(w.err, context.Canceled) {
				errs = append(errs, w.err)
			}
		}
		return Result{}, fmt.Errorf("%s: %d events delivered of %d: %w", wl.ID(), got, want, errors.Join(errs...))
	}
	var lat []time.Duration
	for _, w := range ws {
		lat = append(lat, w.lat...)
	}
	return Result{
		Ops: got, Successes: puts, Elapsed: elapsed,
		P50: percentile(lat, 0.50), P99: percentile(lat, 0.99),
	}, nil
}

// waitGroup waits for wg, at most d.
func waitGroup(ctx context.Context, wg *sync.WaitGroup, d time.Duration) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
