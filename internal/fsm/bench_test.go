package fsm_test

import (
	"fmt"
	"testing"

	"github.com/concordkv/concord/internal/command"
)

// BenchmarkPut proposes puts of 256-byte values over 1000 keys from many
// goroutines through a one-peer in-memory node.
func BenchmarkPut(b *testing.B) {
	nd := startNode(b, false)
	val := string(make([]byte, 256))
	reqs := make([][]byte, 1000)
	for i := range reqs {
		reqs[i] = mustEncode(b, put(fmt.Sprintf("key/%04d", i), val))
	}
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := nd.n.Propose(ctx(b), reqs[i%len(reqs)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkRangeOne reads one key with Range on a read-only transaction:
// the local part of a linearizable get.
func BenchmarkRangeOne(b *testing.B) {
	nd := startNode(b, false)
	for i := range 1000 {
		mustOK(b, nd.propose(put(fmt.Sprintf("key/%04d", i), string(make([]byte, 256)))))
	}
	req := &command.RangeRequest{Key: []byte("key/0500")}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if resp := rangeDB(b, nd.f, nd.n.DB(), req); len(resp.GetRange().GetKvs()) != 1 {
			b.Fatal(resp)
		}
	}
}

// BenchmarkRangePrefix reads 100 keys of a prefix with limit 10.
func BenchmarkRangePrefix(b *testing.B) {
	nd := startNode(b, false)
	for i := range 1000 {
		mustOK(b, nd.propose(put(fmt.Sprintf("key/%04d", i), "v")))
	}
	req := &command.RangeRequest{Key: []byte("key/01"), RangeEnd: []byte("key/02"), Limit: 10}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if resp := rangeDB(b, nd.f, nd.n.DB(), req); len(resp.GetRange().GetKvs()) != 10 {
			b.Fatal(resp)
		}
	}
}
