package raftnode

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/transport"
)

var errFlushEIO = errors.New("injected EIO in the writer's flush")

// flushFailure records, for one peer, the loop's failed sync and what the
// peer acknowledged after it.
type flushFailure struct {
	mu       sync.Mutex
	armed    bool
	failed   bool
	synced   uint64 // log index durable when the loop's sync failed
	probe    *syncProbe
	bad      []string
	afterAck int

	inSync atomic.Int32 // syncs of the syncer's running
}

type ackWatchTransport struct {
	transport.Transport
	f *flushFailure
}

func (t *ackWatchTransport) Send(msgs []*pb.Message) {
	t.f.mu.Lock()
	for _, m := range msgs {
		if t.f.failed && m.GetType() == pb.MsgAppResp && !m.GetReject() && m.GetIndex() > t.f.synced {
			t.f.afterAck++
			if len(t.f.bad) < 5 {
				t.f.bad = append(t.f.bad, fmt.Sprintf("peer %d acked index %d to %d after its loop's sync failed (durable then: %d)", m.GetFrom(), m.GetIndex(), m.GetTo(), t.f.synced))
			}
		}
	}
	t.f.mu.Unlock()
	t.Transport.Send(msgs)
}

func callerIs(name string) bool {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(2, pcs)
	fr := runtime.CallersFrames(pcs[:n])
	for {
		f, more := fr.Next()
		if strings.Contains(f.Function, name) {
			return true
		}
		if !more {
			return false
		}
	}
}

// TestLoopSyncFailureReleasesNothing: the loop's own sync (writer.flush,
// for a compaction here) fails on a follower. The peer stops, and nothing
// written before the failure is acknowledged after it: the failed
// fdatasync may have dropped those pages, and Linux reports a writeback
// error once, so a later fdatasync of the same file would succeed (the
// injected failure does the same). The syncer may still take a batch
// before it stops: its sync must fail too (stickySyncs).
func TestLoopSyncFailureReleasesNothing(t *testing.T) {
	fails := map[uint64]*flushFailure{1: {}, 2: {}, 3: {}}
	s := newSyncPeersCfg(t, 3, func(cfg *Config) {
		f := fails[cfg.ID]
		cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 40, 10
		cfg.Transport = &ackWatchTransport{Transport: cfg.Transport, f: f}
		inner := cfg.testHook
		cfg.testHook = func(n *Node) {
			inner(n)
			sync := n.sync
			n.sync = func(fid int, vlog bool) error {
				if callerIs("(*syncer).syncAll") {
					f.inSync.Add(1)
					defer f.inSync.Add(-1)
					time.Sleep(5 * time.Millisecond) // a slow disk: the syncer is often mid-sync
					return sync(fid, vlog)
				}
				if callerIs("(*writer).flush") {
					f.mu.Lock()
					fire := f.armed && !f.failed
					f.mu.Unlock()
					if fire {
						// Fail while a sync of the syncer's runs, as when
						// two fdatasyncs of one file race and only one is
						// told of the writeback error. (Syncs behind one
						// gate never overlap: then it fails alone.)
						for end := time.Now().Add(200 * time.Millisecond); f.inSync.Load() == 0 && time.Now().Before(end); {
							time.Sleep(50 * time.Microsecond)
						}
						f.mu.Lock()
						f.failed = true
						_, f.synced = f.probe.state()
						f.mu.Unlock()
						return errFlushEIO // reported once: the next fdatasync succeeds
					}
				}
				return sync(fid, vlog)
			}
		}
	})
	for i, p := range s.probes {
		fails[uint64(i+1)].probe = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.waitLeader(ctx)
	f := 0
	if s.nodes[0].IsLeader() {
		f = 1
	}
	ff := fails[uint64(f+1)]
	ff.mu.Lock()
	ff.armed = true
	ff.mu.Unlock()
	// Load from the leader only (the follower may stop).
	lead := 0
	for i, n := range s.nodes {
		if n.IsLeader() {
			lead = i
		}
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for k := 0; k < 60; k++ {
				pctx, pc := context.WithTimeout(ctx, 3*time.Second)
				s.nodes[lead].Propose(pctx, fmt.Appendf(nil, "%d-%d", w, k))
				pc()
			}
		})
	}
	wg.Wait()
	ff.mu.Lock()
	defer ff.mu.Unlock()
	t.Logf("follower %d: loop sync failed %v; acks after it: %d; err %v", f+1, ff.failed, ff.afterAck, s.nodes[f].Err())
	if !ff.failed {
		t.Fatal("the loop never synced: the test proved nothing")
	}
	for _, b := range ff.bad {
		t.Error(b)
	}
}

// TestStickySyncs: syncs behind the gate never overlap, and after one
// fails every later one fails with its error, whichever of the two
// functions it goes through, without reaching the disk.
func TestStickySyncs(t *testing.T) {
	var running, overlaps, calls atomic.Int32
	fail := atomic.Bool{}
	body := func() error {
		if running.Add(1) > 1 {
			overlaps.Add(1)
		}
		defer running.Add(-1)
		calls.Add(1)
		time.Sleep(100 * time.Microsecond)
		if fail.Load() {
			return errFlushEIO
		}
		return nil
	}
	syncF, old := stickySyncs(func(int, bool) error { return body() }, func(int) error { return body() })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 20 {
				var err error
				if i%2 == 0 {
					err = syncF(1, false)
				} else {
					err = old(1)
				}
				if err != nil {
					t.Errorf("sync failed before any failure: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if overlaps.Load() != 0 {
		t.Fatalf("%d syncs overlapped", overlaps.Load())
	}
	fail.Store(true)
	if err := syncF(1, false); !errors.Is(err, errFlushEIO) {
		t.Fatalf("failing sync: %v", err)
	}
	fail.Store(false) // the disk now claims success, as a second fdatasync would
	before := calls.Load()
	if err := old(1); !errors.Is(err, errFlushEIO) {
		t.Fatalf("sync of a rotated-past memtable after a failure: %v, want the failure", err)
	}
	if err := syncF(1, true); !errors.Is(err, errFlushEIO) {
		t.Fatalf("sync after a failure: %v, want the failure", err)
	}
	if calls.Load() != before {
		t.Fatal("a sync after the failure reached the disk")
	}
}
