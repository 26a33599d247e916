package fsm_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/concordkv/concord/internal/command"
)

// TestCachedMatchesModel: after every random command, a single-key read
// at the current revision answered from memory (Cached) is the model's
// answer, with the current revisions; with every option the cache takes
// (keys-only, count-only, revision filters). Most such reads must hit.
func TestCachedMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			nd := startNode(t, false)
			m := newModel()
			r := rand.New(rand.NewPCG(seed, 7))
			hits, reads := 0, 0
			for i, req := range randomCommands(seed, 300) {
				m.apply(req)
				nd.propose(req)
				for _, k := range modelKeys {
					rr := &command.RangeRequest{Key: []byte(k)}
					switch r.IntN(4) {
					case 1:
						rr.KeysOnly = true
					case 2:
						rr.CountOnly = true
					case 3:
						rr.MinModRevision = r.Int64N(m.rev() + 1)
					}
					reads++
					got, ok := nd.f.Cached(rr)
					if !ok {
						// A miss reads badger and fills the cache in.
						got = nd.read(rr)
						continue
					}
					hits++
					_, kvs, count, _ := m.read(k, "", 0, 0)
					var want []*command.KeyValue
					for _, kv := range kvs {
						if kv.ModRevision >= rr.MinModRevision && !rr.CountOnly {
							c := &command.KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision,
								ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease}
							if rr.KeysOnly {
								c.Value = nil
							}
							want = append(want, c)
						}
					}
					gr := got.GetRange()
					if got.GetRevision() != m.rev() || got.GetCompactRevision() != m.compact ||
						gr.GetCount() != count || !equalKVs(gr.GetKvs(), want) {
						t.Fatalf("command %d: cached read %v at %d/%d: %v; want rev %d/%d count %d %v",
							i, rr, got.GetRevision(), got.GetCompactRevision(), gr, m.rev(), m.compact, count, want)
					}
				}
			}
			t.Logf("%d of %d single-key reads answered from memory", hits, reads)
			if hits < reads/2 {
				t.Fatalf("only %d of %d reads hit the cache", hits, reads)
			}
		})
	}
}

// TestCachedValueIsCallers: a caller that changes the value it got does
// not change what the next reader gets.
func TestCachedValueIsCallers(t *testing.T) {
	nd := startNode(t, false)
	nd.propose(put("k", "v1"))
	for range 2 {
		got := nd.read(get("k", "", 0))
		kvs := got.GetRange().GetKvs()
		if len(kvs) != 1 || string(kvs[0].Value) != "v1" {
			t.Fatalf("read %v", got)
		}
		kvs[0].Value[0] = 'X'
		kvs[0].Key[0] = 'X'
	}
	if _, ok := nd.f.Cached(get("k", "", 0)); !ok {
		t.Fatal("k not cached after a put and reads")
	}
}

// TestCachedNeverBehindAck: readers racing a writer never see a value
// older than one already acknowledged, nor a revision below it.
func TestCachedNeverBehindAck(t *testing.T) {
	nd := startNode(t, false)
	const writes = 300
	var acked, ackedRev atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				a, ar := acked.Load(), ackedRev.Load()
				var got *command.Response
				got, ok := nd.f.Cached(get("k", "", 0))
				if !ok {
					got = rangeDB(t, nd.f, nd.n.DB(), get("k", "", 0))
				}
				var v int64
				if kvs := got.GetRange().GetKvs(); len(kvs) == 1 {
					v, _ = strconv.ParseInt(string(kvs[0].Value), 10, 64)
				}
				if v < a || got.GetRevision() < ar {
					errs <- fmt.Errorf("read value %d at revision %d after %d was acknowledged at %d", v, got.GetRevision(), a, ar)
					return
				}
			}
		})
	}
	for i := int64(1); i <= writes; i++ {
		resp := mustOK(t, nd.propose(put("k", strconv.FormatInt(i, 10))))
		ackedRev.Store(resp.GetRevision())
		acked.Store(i)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}
