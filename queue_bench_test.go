package concord_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

// BenchmarkQueue: 8 producers enqueue b.N messages while 8 consumers
// dequeue and ack them, spread over a 3-node in-memory cluster; one op is
// one message through enqueue, dequeue and ack.
func BenchmarkQueue(b *testing.B) {
	const producers, consumers = 8, 8
	c := concordtest.NewCluster(b, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var left atomic.Int64
	left.Store(int64(b.N))
	var enq atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for p := range producers {
		s, err := concord.NewSession(c.Node(p % 3))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Orphan()
		q := concord.NewQueue[int](s, "bench")
		wg.Go(func() {
			for i := enq.Add(1); i <= int64(b.N); i = enq.Add(1) {
				if _, err := q.Enqueue(ctx, int(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	for i := range consumers {
		s, err := concord.NewSession(c.Node(i % 3))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Orphan()
		q := concord.NewQueue[int](s, "bench")
		wg.Go(func() {
			for {
				m, err := q.Dequeue(ctx)
				if err != nil {
					if ctx.Err() == nil {
						b.Error(err)
					}
					return
				}
				if err := m.Ack(ctx); err != nil {
					b.Error(err)
					return
				}
				if left.Add(-1) == 0 {
					cancel()
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
