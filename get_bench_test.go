package concord_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/concordkv/concord/concordtest"
)

// BenchmarkGetLinearizable3: linearizable gets of 1000 keys from 256
// goroutines spread over a three-node cluster in this process (two thirds
// of them on followers, which ask the leader for a read index): the
// shape of bench/'s get-lin c=256.
func BenchmarkGetLinearizable3(b *testing.B) {
	c := concordtest.NewCluster(b, 3)
	ctx := context.Background()
	if _, err := c.WaitLeader(ctx); err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if _, err := c.Node(0).Put(ctx, fmt.Sprintf("bench/%04d", i), "value"); err != nil {
			b.Fatal(err)
		}
	}
	var worker atomic.Int64
	b.SetParallelism(128)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := int(worker.Add(1))
		n := c.Node(w % 3)
		i := w
		for pb.Next() {
			if _, err := n.Get(ctx, fmt.Sprintf("bench/%04d", i%1000)); err != nil {
				b.Error(err)
				return
			}
			i += 7
		}
	})
}
