package watchhub

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var seeds = flag.Int("watchhub.seeds", 4, "seeds of TestWatchersGetExactHistory")

// TestWatchersGetExactHistory: watchers of random ranges, filters and start
// revisions, some reading slowly, tiny queues, a ring and compactions: each
// gets exactly the events of its range from its start, in order, whole
// revisions, progress never ahead of events; a compacted one gets the
// resync error and resumes from the compact revision.
func TestWatchersGetExactHistory(t *testing.T) {
	for i := range *seeds {
		seed := uint64(time.Now().UnixNano()) + uint64(i)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d", seed)
			runRandomWatchers(t, seed)
		})
	}
}

func runRandomWatchers(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	setVar(t, &QueueLen, 1+rng.IntN(8))
	setVar(t, &RingLen, rng.IntN(4))
	setVar(t, &MaxEvents, 1+rng.IntN(5))
	s := newStore(t)
	keys := []string{"a", "ab", "b", "ba", "c"}
	ranges := [][2]string{{"a", ""}, {"a", "b"}, {"b", "\x00"}, {"", "\x00"}, {"ab", "c"}}

	var final atomic.Int64 // the last revision, once the writer is done
	var wg sync.WaitGroup
	const watchers = 12
	for range watchers {
		r := ranges[rng.IntN(len(ranges))]
		o := Options[ev]{
			Key: []byte(r[0]), End: []byte(r[1]),
			PrevKV: rng.IntN(2) == 0, FilterPut: rng.IntN(6) == 0, FilterDelete: rng.IntN(6) == 0,
			Progress: time.Millisecond,
		}
		if rng.IntN(3) > 0 {
			o.Rev = 1 + rng.Int64N(s.revision()+3)
		}
		slow := rng.IntN(3) == 0
		direct := rng.IntN(2) == 0
		rseed := rng.Uint64()
		wg.Go(func() { readRandomly(t, s, o, slow, direct, rseed, &final) })
		// Start watchers while writes go on.
		for range 20 {
			s.commit(randomRev(rng, keys))
		}
	}
	for i := range 1500 {
		var revs [][]change
		for range 1 + rng.IntN(3) {
			revs = append(revs, randomRev(rng, keys))
		}
		s.commit(revs...)
		if i%200 == 199 {
			s.compactTo(s.revision() - rng.Int64N(100))
		}
		if rng.IntN(10) == 0 {
			runtime.Gosched()
		}
	}
	final.Store(s.revision())
	wg.Wait()
}

func randomRev(rng *rand.Rand, keys []string) []change {
	var out []change
	for _, k := range keys {
		if rng.IntN(3) == 0 {
			out = append(out, change{key: k, del: rng.IntN(3) == 0})
		}
	}
	if len(out) == 0 {
		out = append(out, change{key: keys[rng.IntN(len(keys))]})
	}
	return out
}

// readRandomly reads a watch until it reports the final revision, checking
// each stretch between (re)starts against the store's log.
func readRandomly(t *testing.T, s *store, o Options[ev], slow, direct bool, seed uint64, final *atomic.Int64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	ctx := testCtx(t)
	for {
		w, next, stop, err := open(ctx, s, o, direct)
		if err != nil {
			t.Error(err)
			return
		}
		var got []ev
		last := w.Created()
		o.Rev = max(o.Rev, last+1) // Rev 0: from the revision after Created
		for {
			d, err := next()
			var ce *CompactedError
			if errors.As(err, &ce) {
				stop()
				if ce.Next >= ce.CompactRevision || ce.Next < o.Rev {
					t.Errorf("watch %+v: compacted error %+v", o, ce)
					return
				}
				check(t, s, o, got, ce.Next-1)
				o.Rev = ce.CompactRevision // resume where the history starts
				break
			}
			if err != nil {
				stop()
				t.Errorf("watch %+v: %v", o, err)
				return
			}
			if d.Revision < last {
				t.Errorf("watch %+v: delivery revision %d after %d", o, d.Revision, last)
			}
			for _, e := range d.Events {
				if e.rev <= last || e.rev > d.Revision {
					t.Errorf("watch %+v: event %v in a delivery up to %d, after one up to %d", o, e, d.Revision, last)
				}
			}
			if len(d.Events) > 0 && d.Progress {
				t.Errorf("progress with events")
			}
			got = append(got, d.Events...)
			last = d.Revision
			if f := final.Load(); f != 0 && last >= f {
				stop()
				check(t, s, o, got, last)
				return
			}
			if slow && rng.IntN(4) == 0 {
				time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
			}
		}
	}
}

func check(t *testing.T, s *store, o Options[ev], got []ev, upTo int64) {
	t.Helper()
	want := s.want(o, upTo)
	if !slices.Equal(got, want) {
		t.Errorf("watch %+v up to %d:\n got %v\nwant %v", o, upTo, got, want)
	}
}

// open starts a watch read through next. With direct, it is read as the
// root package reads it: a goroutine forwards Next's deliveries into a
// channel that Direct also sends to when the reader waits.
func open(ctx context.Context, s *store, o Options[ev], direct bool) (w *Watcher[ev], next func() (Delivery[ev], error), stop func(), err error) {
	if !direct {
		w, err := s.hub.Watch(o)
		if err != nil {
			return nil, nil, nil, err
		}
		return w, func() (Delivery[ev], error) { return w.Next(ctx) }, w.Close, nil
	}
	type item struct {
		d   Delivery[ev]
		err error
	}
	out := make(chan item)
	o.Direct = func(d Delivery[ev]) bool {
		select {
		case out <- item{d: d}:
			return true
		default:
			return false
		}
	}
	if w, err = s.hub.Watch(o); err != nil {
		return nil, nil, nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			d, err := w.Next(pctx)
			select {
			case out <- item{d, err}:
			case <-pctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	next = func() (Delivery[ev], error) {
		it := <-out
		return it.d, it.err
	}
	stop = func() {
		cancel()
		<-done
		w.Close()
	}
	return w, next, stop, nil
}
