// Command bench runs the same key-value workloads against concord and against
// embedded etcd v3.7.3, both durable and in this process, and prints ops/s,
// p50 and p99 latency side by side with the ratio concord/etcd.
//
//	cd bench && go run . -duration 5s
//
// See README.md for the workloads and how to read the numbers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	var (
		duration   = flag.Duration("duration", 5*time.Second, "measured time per workload (ignored when -ops > 0)")
		ops        = flag.Int64("ops", 0, "measured operations per workload instead of a duration (0 = use -duration)")
		warmup     = flag.Duration("warmup", time.Second, "unmeasured run of each workload before it is measured")
		only       = flag.String("only", "both", "which systems to run: etcd, concord or both")
		nodesFlag  = flag.String("nodes", "1,3", "comma-separated cluster sizes")
		runFlag    = flag.String("run", "", "regexp selecting workloads by id (put-c1, put-c16, put-c256, get-lin-c16, get-lin-c256, get-ser-c16, get-ser-c256, cas-c16, watch-w100, watch-w1000)")
		nkeys      = flag.Int("keys", 10000, "number of distinct keys for put and get")
		valueSize  = flag.Int("value-size", 256, "put value size in bytes")
		dirFlag    = flag.String("dir", "", "parent directory for the data directories (default: the system temp dir); must be on the disk you want to measure")
		keep       = flag.Bool("keep", false, "keep the data directories after the run")
		cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
		leases     = flag.Int("leases", 0, "run the lease scenario instead of the workloads: this many leases kept alive, spread over the members")
		leaseTTL   = flag.Duration("lease-ttl", 10*time.Second, "TTL of the lease scenario's leases (whole seconds, for etcd)")
		lockers    = flag.Int("lock-waiters", 0, "run the lock scenario instead of the workloads: Lock+Unlock alone, then this many holders taking one Mutex in turn (hand-off latency)")
		prims      = flag.Bool("primitives", false, "run the election and queue scenario instead of the workloads; -run selects among elect-revoke, elect-expire, queue-p8c8")
		rounds     = flag.Int("rounds", 10, "election failover rounds per election workload (-primitives)")
		electTTL   = flag.Duration("elect-ttl", 2*time.Second, "session TTL of the elect-expire workload (whole seconds, for etcd)")
	)
	flag.Parse()

	var selected []System
	switch *only {
	case "both":
		selected = systems
	case "etcd", "concord":
		for _, s := range systems {
			if s.Name == *only {
				selected = append(selected, s)
			}
		}
	default:
		return fmt.Errorf("-only must be etcd, concord or both, got %q", *only)
	}
	var sizes []int
	for f := range strings.SplitSeq(*nodesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-nodes: %q is not a cluster size", f)
		}
		sizes = append(sizes, n)
	}
	var selectedWL []Workload
	re, err := regexp.Compile(*runFlag)
	if err != nil {
		return fmt.Errorf("-run: %w", err)
	}
	if *prims {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		fmt.Printf("concord bench, primitives: %s %s/%s, %d CPUs; %v per workload, %d election rounds; durable (fsync on)\n",
			runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), *duration, *rounds)
		o := primOpts{duration: *duration, rounds: *rounds, ttl: *electTTL}
		return runPrimitives(ctx, selected, sizes, o, re.MatchString, *dirFlag, *keep)
	}
	for _, wl := range workloads {
		if re.MatchString(wl.ID()) {
			selectedWL = append(selectedWL, wl)
		}
	}
	if len(selectedWL) == 0 {
		return fmt.Errorf("-run %q selects no workload", *runFlag)
	}
	if *ops <= 0 && *duration <= 0 {
		return errors.New("-duration must be > 0 when -ops is 0")
	}
	if *nkeys < 1 || *valueSize < 1 {
		return errors.New("-keys and -value-size must be >= 1")
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	o := runOpts{Duration: *duration, Ops: *ops, Warmup: *warmup}
	measure := fmt.Sprintf("%v per workload", *duration)
	if *ops > 0 {
		measure = fmt.Sprintf("%d ops per workload", *ops)
	}
	fmt.Printf("concord bench: %s %s/%s, %d CPUs, GOMAXPROCS=%d; %s after %v warmup; %d keys, %d-byte values; durable (fsync on)\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0),
		measure, *warmup, *nkeys, *valueSize)
	if la := loadavg(); la != "" {
		fmt.Printf("load average at start: %s (other processes share the CPUs and the disk)\n", la)
	}
	fmt.Println()

	if *lockers > 0 {
		return runLockScenario(ctx, selected, sizes, *lockers, *warmup, *duration, *dirFlag, *keep)
	}
	if *leases > 0 {
		return runLeaseScenario(ctx, selected, sizes, *leases, *leaseTTL, *warmup, *duration, *dirFlag, *keep)
	}

	e := newEnv(*nkeys, *valueSize)
	var rows []row
	rowIndex := map[string]int{}
	// Every row exists up front, so the table keeps workload order even when
	// a system fails part way.
	for _, n := range sizes {
		for _, wl := range selectedWL {
			for _, name := range rowNames(wl) {
				k := fmt.Sprintf("%d/%s", n, name)
				rowIndex[k] = len(rows)
				rows = append(rows, row{nodes: n, workload: name, cells: map[string]cell{}})
			}
		}
	}

	setCell := func(nodes int, name, sys string, c cell) {
		rows[rowIndex[fmt.Sprintf("%d/%s", nodes, name)]].cells[sys] = c
	}

	var failures []error
	for _, n := range sizes {
		for _, sys := range selected {
			err := runSystem(ctx, sys, n, e, selectedWL, o, *dirFlag, *keep, setCell)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(os.Stderr, "%s %d node(s): %v\n", sys.Name, n, err)
				failures = append(failures, fmt.Errorf("%s %d node(s): %w", sys.Name, n, err))
			}
		}
	}

	fmt.Println()
	writeTable(os.Stdout, rows)
	fmt.Println()
	fmt.Println("cas rows: \"attempts\" counts every read+compare-and-swap round, \"successes\" only the swaps that won;")
	fmt.Println("their latency columns cover the attempts (resp. the winning attempts), read included.")
	fmt.Println("watch rows: one writer, w watchers of its prefix; ops/s is events delivered per second over all")
	fmt.Println("watchers, p50/p99 the lag from the start of a put to its delivery to a watcher.")
	return errors.Join(failures...)
}

// loadavg returns the 1, 5 and 15 minute load averages on Linux, "" elsewhere.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// rowNames is the table rows a workload fills: one, or two for CAS.
func rowNames(wl Workload) []string {
	if wl.Watchers > 0 {
		return []string{fmt.Sprintf("%s w=%d", wl.Name, wl.Watchers)}
	}
	name := fmt.Sprintf("%s c=%d", wl.Name, wl.Conc)
	if wl.CAS {
		return []string{name + " attempts", name + " successes"}
	}
	return []string{name}
}

// runSystem opens one cluster of sys with nodes members, preloads it, runs
// every workload on it in order and closes it.
func runSystem(ctx context.Context, sys System, nodes int, e *env, wls []Workload, o runOpts,
	parent string, keep bool, setCell func(int, string, string, cell)) (err error) {
	fail := func(from int, note string) {
		for _, wl := range wls[from:] {
			for _, name := range rowNames(wl) {
				setCell(nodes, name, sys.Name, cell{note: note})
			}
		}
	}
	dir, err := os.MkdirTemp(parent, fmt.Sprintf("concord-bench-%s-%dn-", sys.Name, nodes))
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(os.Stderr, "%s %d node(s): data in %s\n", sys.Name, nodes, dir)
	} else {
		defer os.RemoveAll(dir)
	}

	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	t0 := time.Now()
	c, err := sys.Open(openCtx, nodes, dir)
	cancel()
	if err != nil {
		fail(0, "error (open)")
		return err
	}
	defer func() {
		if cerr := c.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	fmt.Fprintf(os.Stderr, "%s %d node(s): ready in %v\n", sys.Name, nodes, time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	if err := preload(ctx, c, e); err != nil {
		fail(0, "error (preload)")
		return err
	}
	fmt.Fprintf(os.Stderr, "%s %d node(s): preloaded %d keys in %v\n", sys.Name, nodes, len(e.keys), time.Since(t0).Round(time.Millisecond))

	for i, wl := range wls {
		var res Result
		if wl.Watchers > 0 {
			res, err = runFanout(ctx, c, wl, o)
		} else {
			res, err = run(ctx, c, e, wl, o)
		}
		if err != nil {
			fail(i, "error")
			return err
		}
		names := rowNames(wl)
		setCell(nodes, names[0], sys.Name, cell{ok: true, opsPerS: res.OpsPerSec(), p50: res.P50, p99: res.P99})
		line := fmt.Sprintf("%s %d node(s) %-13s %10s ops/s  p50 %-9s p99 %-9s",
			sys.Name, nodes, wl.ID(), fmtRate(res.OpsPerSec()), fmtLatency(res.P50), fmtLatency(res.P99))
		if wl.Watchers > 0 {
			line = fmt.Sprintf("%s %d node(s) %-13s %10s events/s  lag p50 %-9s p99 %-9s  (%d puts, %s/s)",
				sys.Name, nodes, wl.ID(), fmtRate(res.OpsPerSec()), fmtLatency(res.P50), fmtLatency(res.P99),
				res.Successes, fmtRate(res.SuccPerSec()))
		}
		if wl.CAS {
			setCell(nodes, names[1], sys.Name, cell{ok: true, opsPerS: res.SuccPerSec(), p50: res.SuccP50, p99: res.SuccP99})
			line += fmt.Sprintf("  successes %s/s (%d of %d)", fmtRate(res.SuccPerSec()), res.Successes, res.Ops)
		}
		if res.Errors > 0 {
			line += fmt.Sprintf("  errors %d, first: %v", res.Errors, res.FirstErr)
		}
		fmt.Fprintln(os.Stderr, line)
	}
	return nil
}
