package concord_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/internal/watchhub"
)

// putMany puts count keys prefix%05d with workers writers and returns how
// long it took.
func putMany(t *testing.T, n *concord.Node, prefix string, count, workers int) time.Duration {
	t.Helper()
	ctx := testCtx(t)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(count) {
					return
				}
				if _, err := n.Put(ctx, fmt.Sprintf("%s%05d", prefix, i), "v"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return time.Since(start)
}

// drain reads wc until it has count events or is canceled, checking that
// revisions strictly increase and no key repeats.
func drain(wc concord.WatchChan, count int) (keys map[string]bool, last concord.WatchResponse, err error) {
	keys = map[string]bool{}
	var rev int64
	timeout := time.After(60 * time.Second)
	for len(keys) < count {
		select {
		case r, ok := <-wc:
			if !ok {
				return keys, last, errors.New("channel closed")
			}
			last = r
			if r.Canceled {
				return keys, last, nil
			}
			for _, e := range r.Events {
				if e.Kv.ModRevision <= rev || keys[string(e.Kv.Key)] {
					return keys, last, fmt.Errorf("event %s@%d after revision %d", e.Kv.Key, e.Kv.ModRevision, rev)
				}
				rev = e.Kv.ModRevision
				keys[string(e.Kv.Key)] = true
			}
		case <-timeout:
			return keys, last, fmt.Errorf("timed out with %d events", len(keys))
		}
	}
	return keys, last, nil
}

// TestWatchSlowWatcherNeverSlowsWrites: two watchers never read while 10k
// writes go through. The writes finish at about the speed they have
// without watchers, a third watcher gets all 10k as they happen, one slow
// watcher then gets all 10k from the history, and the other, whose
// history was compacted meanwhile, gets what was queued and then the
// resync signal.
func TestWatchSlowWatcherNeverSlowsWrites(t *testing.T) {
	setHubVar(t, &watchhub.QueueLen, 64) // fall out of sync early
	n := openOne(t)
	ctx := testCtx(t)
	const writes, workers = 10000, 16

	baseline := putMany(t, n, "warm/", writes, workers)

	slow := n.Watch(ctx, "k/", concord.WithPrefix(), concord.WithPrevKV())
	compacted := n.Watch(ctx, "k/", concord.WithPrefix())
	type result struct {
		keys map[string]bool
		err  error
	}
	fastC := make(chan result, 1)
	fast := n.Watch(ctx, "k/", concord.WithPrefix())
	go func() {
		keys, _, err := drain(fast, writes)
		fastC <- result{keys, err}
	}()
	took := putMany(t, n, "k/", writes, workers)
	t.Logf("10k puts: %v without watchers, %v with two that never read", baseline, took)
	if took > 3*baseline+2*time.Second {
		t.Errorf("writes slowed down by the slow watchers: %v against %v", took, baseline)
	}
	if r := <-fastC; r.err != nil || len(r.keys) != writes {
		t.Fatalf("fast watcher: %d events, %v", len(r.keys), r.err)
	}

	keys, last, err := drain(slow, writes)
	if err != nil || len(keys) != writes || last.Canceled {
		t.Fatalf("slow watcher: %d events, %v, last %+v", len(keys), err, last)
	}

	if err := n.Compact(ctx, n.Status().Revision); err != nil {
		t.Fatal(err)
	}
	keys, last, err = drain(compacted, writes)
	if err != nil {
		t.Fatal(err)
	}
	if !last.Canceled || !errors.Is(last.Err(), concord.ErrCompacted) || last.CompactRevision != n.Status().CompactRevision {
		t.Fatalf("compacted watcher ended with %+v after %d events", last, len(keys))
	}
	if len(keys) >= writes {
		t.Fatalf("compacted watcher got all %d events: it never fell behind", len(keys))
	}
	t.Logf("the compacted watcher got %d events, then the resync signal", len(keys))
	closes(t, compacted)
}
