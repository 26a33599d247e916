package raftnode_test

// Benchmarks of a durable 3-peer cluster on TCP loopback, and of the disk's
// fsync rate that bounds it.
//
//	go test -run '^$' -bench 'Propose|ReadIndex|Fsync' -benchtime 3s ./raftnode/
//
// Every cluster benchmark starts 3 peers with Options{TCP: true, OnDisk:
// true}: each peer's badger DB lives under b.TempDir(), opened with
// SyncWrites, and each Ready (new entries, hard state, applied state) is one
// synced badger commit before anything depending on it is sent or
// acknowledged.
// Ticks are the harness's fast ones (10ms, election after 10 ticks), which
// only shortens set-up; steady-state throughput does not depend on them.
//
// Callers are spread round-robin over all three peers (caller i uses peer
// i%3), so two thirds of the proposals are forwarded by a follower to the
// leader, and two thirds of the reads run a ReadIndex round from a follower:
// the mix a client that picks any peer would produce.
//
// b.N is the total number of operations, shared by the callers. Each
// benchmark reports, beside ns/op (wall time per operation, all callers
// together):
//
//	props/s, reads/s   throughput
//	p50-µs, p99-µs     per-call latency percentiles as a caller sees them
//
// The cluster is built and torn down outside the timer.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
)

const (
	benchKeys     = 10000
	benchValueLen = 256
)

var benchConcs = []int{1, 16, 256}

// benchCluster starts a durable 3-peer TCP cluster and waits until all peers
// agree on a leader. The timer is stopped while it runs.
func benchCluster(b *testing.B) *raftnodetest.Cluster {
	b.Helper()
	b.StopTimer()
	c := raftnodetest.NewCluster(b, raftnodetest.Options{Peers: 3, TCP: true, OnDisk: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitLeader(ctx); err != nil {
		b.Fatal(err)
	}
	// One round trip through every peer, so that followers have a
	// connection to the leader before the clock starts.
	for i := 0; i < c.Len(); i++ {
		if _, err := c.Node(i).Propose(ctx, raftnodetest.PutCmd("warmup", "x")); err != nil {
			b.Fatalf("warm-up proposal on peer %d: %v", i+1, err)
		}
	}
	return c
}

// benchCmds returns PutCmds over benchKeys keys with benchValueLen-byte
// values, built once so that encoding is not timed.
var benchCmds = sync.OnceValue(func() [][]byte {
	val := strings.Repeat("v", benchValueLen)
	cmds := make([][]byte, benchKeys)
	for i := range cmds {
		cmds[i] = raftnodetest.PutCmd(fmt.Sprintf("key%05d", i), val)
	}
	return cmds
})

// runConcurrent runs b.N calls of op shared by conc callers, caller i on
// peer i%3, and reports throughput (as unit) and latency percentiles.
func runConcurrent(b *testing.B, c *raftnodetest.Cluster, conc int, unit string, op func(ctx context.Context, peer, i int) error) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var next atomic.Int64
	lats := make([][]time.Duration, conc)
	var failed atomic.Bool
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	b.StartTimer() // benchCluster stopped it
	start := time.Now()
	for w := 0; w < conc; w++ {
		lat := make([]time.Duration, 0, b.N/conc+1)
		wg.Go(func() {
			defer func() { lats[w] = lat }()
			peer := w % c.Len()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) || failed.Load() {
					return
				}
				t0 := time.Now()
				if err := op(ctx, peer, int(i)); err != nil {
					failed.Store(true)
					b.Errorf("caller %d on peer %d: %v", w, peer+1, err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	all := slices.Concat(lats...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	pct := func(p int) float64 {
		i := min(len(all)*p/100, len(all)-1)
		return float64(all[i]) / float64(time.Microsecond)
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), unit)
	b.ReportMetric(pct(50), "p50-µs")
	b.ReportMetric(pct(99), "p99-µs")
}

// BenchmarkPropose measures replicated, durable writes: Propose of a PutCmd
// with a 256-byte value, returning once the command is applied on the
// calling peer.
func BenchmarkPropose(b *testing.B) {
	for _, conc := range benchConcs {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			c := benchCluster(b)
			defer c.Close()
			cmds := benchCmds()
			nodes := benchNodes(c)
			runConcurrent(b, c, conc, "props/s", func(ctx context.Context, peer, i int) error {
				_, err := nodes[peer].Propose(ctx, cmds[i%len(cmds)])
				return err
			})
		})
	}
}

// BenchmarkReadIndex measures linearizable read barriers: ReadIndex on a
// peer (leader or follower) with a few thousand keys written beforehand.
// Concurrent calls on one peer share a raft round.
func BenchmarkReadIndex(b *testing.B) {
	for _, conc := range []int{16, 256} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			c := benchCluster(b)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// Some state to read, written in parallel so set-up stays short.
			cmds := benchCmds()
			var wg sync.WaitGroup
			for w := 0; w < 64; w++ {
				wg.Go(func() {
					for i := w; i < 2000; i += 64 {
						if _, err := c.Node(w%3).Propose(ctx, cmds[i]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			nodes := benchNodes(c)
			runConcurrent(b, c, conc, "reads/s", func(ctx context.Context, peer, _ int) error {
				return nodes[peer].ReadIndex(ctx)
			})
		})
	}
}

// benchNodes resolves the peers' nodes once, so that the timed loop does
// not take the cluster's lock on every call.
func benchNodes(c *raftnodetest.Cluster) []*raftnode.Node {
	nodes := make([]*raftnode.Node, c.Len())
	for i := range nodes {
		nodes[i] = c.Node(i)
	}
	return nodes
}

// BenchmarkFsync measures what bounds a durable peer: how many syncs per
// second the disk under b.TempDir() takes.
//
//	raw:               append 256 bytes to a file and fsync it (f.Sync)
//	badger-dbsync:     commit one small transaction, then db.Sync(), on a DB
//	                   opened with SyncWrites=false (raftnode's scheme
//	                   before it moved to SyncWrites)
//	badger-syncwrites: commit one small transaction on a DB opened with
//	                   SyncWrites=true, which syncs in Commit: what raftnode
//	                   does once per Ready
func BenchmarkFsync(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 256)
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "fsyncs/s")
		b.StopTimer()
	})
	b.Run("badger-dbsync", func(b *testing.B) { benchBadgerSync(b, false) })
	b.Run("badger-syncwrites", func(b *testing.B) { benchBadgerSync(b, true) })
}

// benchBadgerSync commits one 256-byte write per op, durably: through
// SyncWrites if syncWrites, else with an explicit db.Sync after the commit.
func benchBadgerSync(b *testing.B, syncWrites bool) {
	// The options raftnode's openDB uses for an on-disk peer, but for
	// SyncWrites.
	opts := badger.DefaultOptions(b.TempDir()).
		WithSyncWrites(syncWrites).
		WithLogger(nil).
		WithMemTableSize(32 << 20).
		WithNumMemtables(3).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueLogFileSize(128 << 20).
		WithNumCompactors(2).
		WithDetectConflicts(false)
	db, err := badger.Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := make([]byte, 256)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		key := fmt.Appendf(nil, "k%08d", i%benchKeys)
		if err := db.Update(func(txn *badger.Txn) error { return txn.Set(key, val) }); err != nil {
			b.Fatal(err)
		}
		if !syncWrites {
			if err := db.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "syncs/s")
	b.StopTimer()
}
