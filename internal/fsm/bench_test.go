package fsm_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
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

// BenchmarkClaimAck proposes, from many goroutines through a one-peer
// in-memory node, a Claim of the first free key of a prefix of b.N keys
// then its ack (a txn deleting the key and its marker): the state
// machine's side of a queue.
func BenchmarkClaimAck(b *testing.B) {
	nd := startNode(b, false)
	for i := 0; i < b.N; i += 500 {
		txn := &command.TxnRequest{}
		for j := i; j < min(i+500, b.N); j++ {
			txn.Success = append(txn.Success, &command.RequestOp{Request: &command.RequestOp_RequestPut{
				RequestPut: &command.PutRequest{Key: fmt.Appendf(nil, "q/%012d", j), Value: []byte("message")},
			}})
		}
		mustOK(b, nd.propose(&command.Request{Request: &command.Request_Txn{Txn: txn}}))
	}
	claim := mustEncode(b, claimReq("q/", "q0", "c/", "w", 0))
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := nd.n.Propose(ctx(b), claim)
			if err != nil {
				b.Error(err)
				return
			}
			resp, err := command.DecodeResponse(res)
			if err != nil || resp.GetClaim().GetKv() == nil {
				b.Errorf("claim: %v %v", resp, err)
				return
			}
			kv := resp.GetClaim()
			ack := &command.TxnRequest{Success: []*command.RequestOp{
				{Request: &command.RequestOp_RequestDeleteRange{RequestDeleteRange: &command.DeleteRangeRequest{Key: kv.GetKv().GetKey()}}},
				{Request: &command.RequestOp_RequestDeleteRange{RequestDeleteRange: &command.DeleteRangeRequest{Key: kv.GetMarker().GetKey()}}},
			}}
			if _, err := nd.n.Propose(ctx(b), mustEncode(b, &command.Request{Request: &command.Request_Txn{Txn: ack}})); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkRangeAfterChurn reads a prefix after 2000 keys under it were
// put and deleted, with 3 keys live (the shape of a queue's head or a
// lock's waiters): the deleted keys stay in badger until compaction.
func BenchmarkRangeAfterChurn(b *testing.B) {
	nd := startNode(b, false)
	for i := range 2000 {
		k := fmt.Sprintf("q/%06d", i)
		mustOK(b, nd.propose(put(k, "message")))
		if i < 1997 {
			mustOK(b, nd.propose(del(k, "")))
		}
	}
	for _, tc := range []struct {
		name string
		req  *command.RangeRequest
		want int64
	}{
		{"first", &command.RangeRequest{Key: []byte("q/"), RangeEnd: []byte("q0"), Limit: 1}, 3},
		{"all", &command.RangeRequest{Key: []byte("q/"), RangeEnd: []byte("q0")}, 3},
		{"count", &command.RangeRequest{Key: []byte("q/"), RangeEnd: []byte("q0"), CountOnly: true}, 3},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if resp := rangeDB(b, nd.f, nd.n.DB(), tc.req); resp.GetRange().GetCount() != tc.want {
					b.Fatal(resp)
				}
			}
		})
	}
}

// BenchmarkHistoryQuietKey replays a key put 10 times among 10,000 puts
// of other keys, from the first revision: what a watch on a quiet key of
// a busy store does when it starts in the past. The scan case forces a
// scan of the history, which History did for every range before it
// could read the revision index.
func BenchmarkHistoryQuietKey(b *testing.B) {
	nd := startNode(b, false)
	for i := range 10000 {
		req := put(fmt.Sprintf("busy/%03d", i%1000), "v")
		if i%1000 == 0 {
			req = put("quiet", fmt.Sprint(i))
		}
		mustOK(b, nd.propose(req))
	}
	for _, c := range []struct {
		name   string
		budget int64
	}{{"index", math.MaxInt64}, {"scan", 0}} {
		b.Run(c.name, func(b *testing.B) {
			fsm.SetHistoryIndexBudget(b, c.budget)
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				err := nd.n.DB().View(func(txn *badger.Txn) error {
					return nd.f.History(txn, 1, []byte("quiet"), nil, false, func(*command.Event) error { n++; return nil })
				})
				if err != nil || n != 10 {
					b.Fatal(n, err)
				}
			}
		})
	}
}
