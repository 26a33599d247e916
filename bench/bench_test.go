package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var xs []time.Duration
	for i := 100; i >= 1; i-- {
		xs = append(xs, time.Duration(i))
	}
	if got := percentile(xs, 0.50); got != 50 {
		t.Errorf("p50 = %d, want 50", got)
	}
	if got := percentile(xs, 0.99); got != 99 {
		t.Errorf("p99 = %d, want 99", got)
	}
	if got := percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("p99 of one sample = %d, want 7", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("p50 of nothing = %d, want 0", got)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{{0, "0"}, {999.4, "999"}, {1000, "1,000"}, {25812.2, "25,812"}, {1234567, "1,234,567"}} {
		if got := fmtRate(c.v); got != c.want {
			t.Errorf("fmtRate(%v) = %q, want %q", c.v, got, c.want)
		}
	}
	for _, c := range []struct {
		d    time.Duration
		want string
	}{{412 * time.Microsecond, "0.412ms"}, {4120 * time.Microsecond, "4.12ms"}, {41200 * time.Microsecond, "41.2ms"}, {412 * time.Millisecond, "412ms"}} {
		if got := fmtLatency(c.d); got != c.want {
			t.Errorf("fmtLatency(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestTable(t *testing.T) {
	rows := []row{
		{nodes: 3, workload: "put c=256", cells: map[string]cell{
			"concord": {ok: true, opsPerS: 60000, p50: time.Millisecond, p99: 2 * time.Millisecond},
			"etcd":    {ok: true, opsPerS: 20000, p50: 3 * time.Millisecond, p99: 9 * time.Millisecond},
		}},
		{nodes: 3, workload: "get-lin c=256", cells: map[string]cell{
			"concord": {note: "error (open)"},
			"etcd":    {ok: true, opsPerS: 100000},
		}},
		{nodes: 1, workload: "put c=1", cells: map[string]cell{
			"etcd": {ok: true, opsPerS: 3000},
		}},
	}
	var b bytes.Buffer
	writeTable(&b, rows)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("want header, separator and 3 rows, got:\n%s", b.String())
	}
	for i, want := range []string{"3.00x", "error (open)", "-"} {
		if !strings.Contains(lines[2+i], want) {
			t.Errorf("row %d lacks %q: %s", i, want, lines[2+i])
		}
	}
	width := len(lines[0])
	for _, l := range lines {
		if len(l) != width {
			t.Errorf("ragged table:\n%s", b.String())
			break
		}
	}
}

// TestDrivers checks every System against the Store contract and runs each
// workload briefly on 1 and 3 members.
func TestDrivers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real clusters")
	}
	for _, sys := range systems {
		for _, nodes := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/%d", sys.Name, nodes), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				c, err := sys.Open(ctx, nodes, t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				defer func() {
					if err := c.Close(); err != nil {
						t.Error(err)
					}
				}()
				if c.Size() != nodes {
					t.Fatalf("Size() = %d, want %d", c.Size(), nodes)
				}
				checkContract(ctx, t, c)

				e := newEnv(100, 256)
				if err := preload(ctx, c, e); err != nil {
					t.Fatal(err)
				}
				for _, wl := range workloads {
					if wl.Watchers > 0 {
						res, err := runFanout(ctx, c, wl, runOpts{Ops: 50})
						if err != nil {
							t.Fatalf("%s: %v", wl.ID(), err)
						}
						if res.Ops != 50*int64(wl.Watchers) || res.Successes != 50 || res.P99 <= 0 || res.P50 > res.P99 {
							t.Errorf("%s: %+v", wl.ID(), res)
						}
						continue
					}
					res, err := run(ctx, c, e, wl, runOpts{Ops: 200})
					if err != nil {
						t.Fatalf("%s: %v", wl.ID(), err)
					}
					if res.Ops != 200 || res.Errors != 0 || res.P99 <= 0 || res.P50 > res.P99 {
						t.Errorf("%s: %+v", wl.ID(), res)
					}
					if wl.CAS && (res.Successes < 1 || res.Successes > res.Ops) {
						t.Errorf("%s: %d successes of %d attempts", wl.ID(), res.Successes, res.Ops)
					}
				}
			})
		}
	}
}

// checkContract verifies the Store semantics the workloads rely on, through
// a client on every member.
func checkContract(ctx context.Context, t *testing.T, c Cluster) {
	t.Helper()
	stores, err := openStores(c)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStores(stores)
	for i, s := range stores {
		key := fmt.Sprintf("contract/%d", i)
		if v, err := s.Get(ctx, key, true); err != nil || v != "" {
			t.Fatalf("member %d: Get(absent) = %q, %v; want \"\", nil", i, v, err)
		}
		if err := s.Put(ctx, key, "a"); err != nil {
			t.Fatalf("member %d: Put: %v", i, err)
		}
		// Linearizable reads on every member see the acknowledged write.
		for j, r := range stores {
			if v, err := r.Get(ctx, key, true); err != nil || v != "a" {
				t.Fatalf("member %d: linearizable Get after Put on %d = %q, %v", j, i, v, err)
			}
		}
		if v, err := s.Get(ctx, key, false); err != nil || v != "a" {
			t.Fatalf("member %d: serializable Get of own write = %q, %v", i, v, err)
		}
		if ok, err := s.CAS(ctx, key, "wrong", "b"); err != nil || ok {
			t.Fatalf("member %d: CAS with wrong old = %v, %v; want false, nil", i, ok, err)
		}
		if ok, err := s.CAS(ctx, key, "a", "b"); err != nil || !ok {
			t.Fatalf("member %d: CAS with right old = %v, %v; want true, nil", i, ok, err)
		}
		if v, err := stores[len(stores)-1-i].Get(ctx, key, true); err != nil || v != "b" {
			t.Fatalf("linearizable Get after CAS = %q, %v; want b", v, err)
		}
	}
}

// TestLeaseScenario: every system keeps a few leases alive from 3 members;
// the scenario counts keep-alive responses, and concord's keep-alives
// write no raft entry.
func TestLeaseScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real clusters")
	}
	for _, sys := range systems {
		t.Run(sys.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			const ttl = 3 * time.Second
			r, err := runLeases(ctx, sys, 3, 30, ttl, ttl, 2*time.Second, t.TempDir(), false)
			if err != nil {
				t.Fatal(err)
			}
			// 30 leases renewed every TTL/3: 30 responses a second.
			if r.leases != 30 || r.kaPerSec < 15 || r.kaPerSec > 60 {
				t.Fatalf("%+v", r)
			}
			if sys.Name == "concord" && r.entriesPerSec != 0 {
				t.Fatalf("keep-alives wrote %.1f raft entries/s", r.entriesPerSec)
			}
		})
	}
}

// TestPrimitives runs every primitives workload briefly for every system
// on 3 members: each must complete operations without error.
func TestPrimitives(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real clusters")
	}
	for _, sys := range systems {
		t.Run(sys.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			c, err := sys.Open(ctx, 3, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pc := c.(PrimCluster)
			o := primOpts{duration: 500 * time.Millisecond, rounds: 2, ttl: time.Second}
			for _, wl := range primWorkloads {
				res, err := wl.run(ctx, pc, 3, o)
				if err != nil {
					t.Fatalf("%s: %v", wl.id, err)
				}
				if res.Ops < 1 || res.P50 <= 0 || res.P50 > res.P99 {
					t.Errorf("%s: %+v", wl.id, res)
				}
			}
		})
	}
}
