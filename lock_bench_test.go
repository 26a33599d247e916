package concord_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

// BenchmarkMutexUncontended: Lock then Unlock by one holder, on a
// follower of a 3-node cluster (one write each: the queuing txn, then the
// release).
func BenchmarkMutexUncontended(b *testing.B) {
	c := concordtest.NewCluster(b, 3)
	ctx := context.Background()
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		b.Fatal(err)
	}
	n := c.Node((lead + 1) % 3)
	s, err := concord.NewSession(n)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m := concord.NewMutex(s, "bench/u")
	b.ResetTimer()
	for b.Loop() {
		if err := m.Lock(ctx); err != nil {
			b.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMutexHandOff16: 16 holders spread over 3 nodes take one lock
// in turn, so that 15 always wait; a hand-off is the time from one
// holder's Unlock call to the next holder's Lock returning, measured on
// every one (ns/op is the time per holding, which is one hand-off plus
// the holder's turn).
func BenchmarkMutexHandOff16(b *testing.B) {
	c := concordtest.NewCluster(b, 3)
	ctx := context.Background()
	var (
		left     atomic.Int64
		released atomic.Int64 // unix nanos of the last Unlock call
		mu       sync.Mutex
		total    time.Duration // guarded by mu
		count    int           // guarded by mu
	)
	left.Store(int64(b.N))
	mutexes := make([]*concord.Mutex, 16)
	for i := range mutexes {
		s, err := concord.NewSession(c.Node(i % 3))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		mutexes[i] = concord.NewMutex(s, "bench/h")
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, m := range mutexes {
		wg.Go(func() {
			for {
				if err := m.Lock(ctx); err != nil {
					b.Error(err)
					return
				}
				if r := released.Load(); r != 0 {
					d := time.Duration(time.Now().UnixNano() - r)
					mu.Lock()
					total, count = total+d, count+1
					mu.Unlock()
				}
				more := left.Add(-1) > 0
				released.Store(time.Now().UnixNano())
				if err := m.Unlock(ctx); err != nil {
					b.Error(err)
					return
				}
				if !more {
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if count > 0 {
		b.ReportMetric(float64(total.Microseconds())/float64(count)/1000, "ms/handoff")
	}
}
