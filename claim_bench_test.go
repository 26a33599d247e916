package concord_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// BenchmarkClaimAck measures claim throughput as a queue uses it, through
// the public API of a one-node in-memory cluster: b.N messages are queued
// first; then 16 goroutines per CPU each Claim the first free message
// (marker bound to a session) and ack it (delete message and marker in
// one Txn guarded by the marker's create revision). Reports msgs/s.
func BenchmarkClaimAck(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "claimbench"
	n, err := concord.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	if err := n.Ready(ctx); err != nil {
		b.Fatal(err)
	}
	s, err := concord.NewSession(n)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < b.N; i += 500 {
		var ops []concord.Op
		for j := i; j < min(i+500, b.N); j++ {
			ops = append(ops, concord.OpPut(fmt.Sprintf("bq/m/%012d", j), "message"))
		}
		if _, err := n.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, err := n.Claim(ctx, "bq/m/", "bq/c/", "w", concord.WithPrefix(), concord.WithLease(s.Lease()))
			if err != nil || r.Kv == nil {
				b.Errorf("claim: %v %v", r, err)
				return
			}
			mk := r.Marker
			_, err = n.Txn(ctx).If(concord.Compare(concord.CreateRevision(string(mk.Key)), "=", mk.CreateRevision)).
				Then(concord.OpDelete(string(r.Kv.Key)), concord.OpDelete(string(mk.Key))).Commit()
			if err != nil {
				b.Errorf("ack: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
