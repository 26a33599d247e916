package watchhub

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
	"github.com/concordkv/concord/internal/leaktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

func put(keys ...string) []change {
	var out []change
	for _, k := range keys {
		out = append(out, change{key: k})
	}
	return out
}

func del(keys ...string) []change {
	var out []change
	for _, k := range keys {
		out = append(out, change{key: k, del: true})
	}
	return out
}

func watch(t *testing.T, s *store, o Options[ev]) *Watcher[ev] {
	t.Helper()
	w, err := s.hub.Watch(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// TestDeliversRangesAndFilters: synced watchers of a key, a prefix and a
// from-key range, with filters and previous values, get exactly their
// events in revision order.
func TestDeliversRangesAndFilters(t *testing.T) {
	s := newStore(t)
	opts := []Options[ev]{
		{Key: []byte("a")},
		{Key: []byte("a"), End: []byte("b")},
		{Key: []byte("b"), End: []byte{0}},
		{Key: []byte("a"), End: []byte("b"), FilterPut: true},
		{Key: []byte("a"), End: []byte("b"), FilterDelete: true, PrevKV: true},
		{Key: []byte(""), End: []byte{0}, PrevKV: true},
	}
	var ws []*Watcher[ev]
	for i := range opts {
		opts[i].Rev = 2
		ws = append(ws, watch(t, s, opts[i]))
	}
	s.commit(put("a"))
	s.commit(put("a", "ab", "b"), del("a"))
	s.commit(put("c"), put("a", "ac"))
	s.commit(del("a", "ab", "ac"))
	for i, w := range ws {
		expect(t, "watch", s, w, opts[i], s.revision())
	}
}

// TestRevisionsAreWhole: however small MaxEvents, a delivery never splits
// a revision, from the queue or from the history.
func TestRevisionsAreWhole(t *testing.T) {
	setVar(t, &MaxEvents, 2)
	s := newStore(t)
	o := Options[ev]{Key: []byte("k"), End: []byte("l")}
	synced := watch(t, s, o)
	s.commit(put("k1", "k2", "k3"), put("k1"), put("k2", "k4"))
	s.commit(put("k1", "k2", "k3", "k4", "k5"))
	o.Rev = 2
	fromHistory := watch(t, s, o)
	for _, w := range []*Watcher[ev]{synced, fromHistory} {
		var got []ev
		for len(got) < 11 {
			d, err := w.Next(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > 0 && got[len(got)-1].rev == d.Events[0].rev {
				t.Fatalf("revision %d split across deliveries", d.Events[0].rev)
			}
			got = append(got, d.Events...)
		}
		equal(t, "events", got, s.want(o, s.revision()))
	}
}

// TestSlowWatcherCatchesUp: a watcher that does not read falls out of the
// registry without holding the dispatcher up; once it reads it gets every
// event, from its queue and then the history, and rejoins.
func TestSlowWatcherCatchesUp(t *testing.T) {
	setVar(t, &QueueLen, 4)
	s := newStore(t)
	o := Options[ev]{Key: []byte("k"), End: []byte("l"), PrevKV: true}
	slow, fast := watch(t, s, o), watch(t, s, o)
	o.Rev = 2
	var fastGot []ev
	for i := range 300 {
		s.commit(put("k"+string(rune('a'+i%7))), put("x"))
		// The fast one keeps up.
		fastGot = append(fastGot, readN(t, fast, 1)...)
	}
	equal(t, "fast watcher", fastGot, s.want(o, s.revision()))
	if !unsynced(slow) {
		t.Fatal("the slow watcher is still synced")
	}
	expect(t, "slow watcher", s, slow, o, s.revision())
	if unsynced(slow) {
		t.Fatal("the slow watcher did not rejoin")
	}
	s.commit(put("kz"))
	o.Rev = s.revision()
	expect(t, "after rejoining", s, slow, o, s.revision())
}

func unsynced(w *Watcher[ev]) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.unsynced
}

// TestSlowWatcherCompacted: a watcher that fell behind and whose history
// was compacted meanwhile gets what was queued, then a CompactedError:
// never a partial replay.
func TestSlowWatcherCompacted(t *testing.T) {
	setVar(t, &QueueLen, 4)
	s := newStore(t)
	o := Options[ev]{Key: []byte("k")}
	slow := watch(t, s, o)
	for range 20 {
		s.commit(put("k"))
	}
	s.compactTo(s.revision())
	var got []ev
	for {
		d, err := slow.Next(testCtx(t))
		var ce *CompactedError
		if errors.As(err, &ce) {
			if !errors.Is(err, fsm.ErrCompacted) || ce.CompactRevision != s.revision() || ce.Next >= ce.CompactRevision {
				t.Fatalf("compacted error %+v", ce)
			}
			o.Rev = 2
			equal(t, "delivered before the error", got, s.want(o, ce.Next-1))
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.Events...)
	}
	if _, err := slow.Next(testCtx(t)); !errors.Is(err, fsm.ErrCompacted) {
		t.Fatalf("Next after the error: %v", err)
	}
}

// TestWatchFromRevision: a watch from a past revision replays the history;
// below the compact revision it ends at once; from the future it waits.
func TestWatchFromRevision(t *testing.T) {
	s := newStore(t)
	for range 10 {
		s.commit(put("k"))
	}
	s.compactTo(5)
	from4 := watch(t, s, Options[ev]{Key: []byte("k"), Rev: 4})
	if _, err := from4.Next(testCtx(t)); !errors.As(err, new(*CompactedError)) {
		t.Fatalf("watch from 4, compacted at 5: %v", err)
	}
	o := Options[ev]{Key: []byte("k"), Rev: 5}
	from5 := watch(t, s, o)
	if from5.Created() != 4 {
		t.Fatalf("Created() = %d, want 4", from5.Created())
	}
	expect(t, "from 5", s, from5, o, s.revision())
	o.Rev = s.revision() + 3
	future := watch(t, s, o)
	for range 5 {
		s.commit(put("k"))
	}
	expect(t, "from the future", s, future, o, s.revision())
}

// TestProgress: with nothing to deliver, a watcher reports the revision it
// got to, after the interval.
func TestProgress(t *testing.T) {
	s := newStore(t)
	w := watch(t, s, Options[ev]{Key: []byte("k"), Progress: 5 * time.Millisecond})
	s.commit(put("other"))
	s.commit(put("other"))
	for {
		d, err := w.Next(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if !d.Progress || len(d.Events) != 0 {
			t.Fatalf("delivery %+v", d)
		}
		if d.Revision == s.revision() {
			break
		}
	}
	s.commit(put("k"))
	d, err := w.Next(testCtx(t))
	if err != nil || d.Progress || len(d.Events) != 1 || d.Revision != s.revision() {
		t.Fatalf("after progress: %+v %v", d, err)
	}
}

// TestRestoreResyncs: after a snapshot restore, whose changes were never
// reported, watchers read them from the history.
func TestRestoreResyncs(t *testing.T) {
	s := newStore(t)
	o := Options[ev]{Key: []byte("k"), End: []byte("l"), Rev: 2}
	w := watch(t, s, o)
	s.commit(put("k1"))
	readN(t, w, 1)
	o.Rev = 3
	// The restored state: the log grows without OnCommit.
	s.mu.Lock()
	for range 3 {
		s.rev++
		s.log = append(s.log, &command.Event{Kv: &command.KeyValue{Key: []byte("k2"), ModRevision: s.rev}})
	}
	c := fsm.Commit{Revision: s.rev, Restored: true}
	s.mu.Unlock()
	s.hub.OnCommit(c)
	s.commit(put("k3"))
	expect(t, "after restore", s, w, o, s.revision())
}

// TestClose: Close ends a waiting Next and refuses new watches; a closed
// watcher leaves the registry.
func TestClose(t *testing.T) {
	s := newStore(t)
	w := watch(t, s, Options[ev]{Key: []byte("k")})
	w2 := watch(t, s, Options[ev]{Key: []byte("k"), End: []byte("l")})
	w2.Close()
	s.hub.mu.Lock()
	n := len(s.hub.keys) + len(s.hub.ranges)
	s.hub.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d groups in the registry, want 1", n)
	}
	errc := make(chan error)
	go func() {
		_, err := w.Next(context.Background())
		errc <- err
	}()
	s.hub.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	if _, err := s.hub.Watch(Options[ev]{Key: []byte("k")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch after Close: %v", err)
	}
	s.commit(put("k")) // dropped, does not block
}
