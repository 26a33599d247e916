package concord_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// next returns the next response of wc, failing after a while.
func next(t *testing.T, wc concord.WatchChan) concord.WatchResponse {
	t.Helper()
	select {
	case r, ok := <-wc:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no watch response")
	}
	panic("unreachable")
}

// closes waits for wc to close, failing if a response other than those
// allowed arrives.
func closes(t *testing.T, wc concord.WatchChan) {
	t.Helper()
	select {
	case r, ok := <-wc:
		if ok {
			t.Fatalf("response after the end: %+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("watch channel not closed")
	}
}

// describe renders events as "PUT k=v@rev(c=create,v=version)[prev]".
func describe(evs []*concord.Event) []string {
	var out []string
	for _, e := range evs {
		s := fmt.Sprintf("%s %s", e.Type, e.Kv.Key)
		if e.Type == concord.EventTypePut {
			s += fmt.Sprintf("=%s", e.Kv.Value)
		}
		s += fmt.Sprintf("@%d", e.Kv.ModRevision)
		if e.Type == concord.EventTypePut {
			s += fmt.Sprintf("(c%d,v%d)", e.Kv.CreateRevision, e.Kv.Version)
		}
		if e.PrevKv != nil {
			s += fmt.Sprintf("[%s@%d]", e.PrevKv.Value, e.PrevKv.ModRevision)
		}
		out = append(out, s)
	}
	return out
}

func wantEvents(t *testing.T, r concord.WatchResponse, want ...string) {
	t.Helper()
	if got := describe(r.Events); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events\n got %q\nwant %q", got, want)
	}
}

// collect reads wc until it has n events (responses may hold several
// revisions, never part of one), skipping progress notifications.
func collect(t *testing.T, wc concord.WatchChan, n int) []*concord.Event {
	t.Helper()
	var out []*concord.Event
	for len(out) < n {
		r := next(t, wc)
		if r.Err() != nil {
			t.Fatalf("watch canceled: %v", r.Err())
		}
		if len(out) > 0 && len(r.Events) > 0 && out[len(out)-1].Kv.ModRevision == r.Events[0].Kv.ModRevision {
			t.Fatalf("revision %d split across responses", r.Events[0].Kv.ModRevision)
		}
		out = append(out, r.Events...)
	}
	return out
}

// wantNext reads the events of the next len(want) changes from wc.
func wantNext(t *testing.T, wc concord.WatchChan, want ...string) {
	t.Helper()
	if got := describe(collect(t, wc, len(want))); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events\n got %q\nwant %q", got, want)
	}
}

// TestWatchEvents: puts, deletes and txns reach watchers of a key, a
// prefix and a from-key range, whole revisions per response, with the
// previous state only WithPrevKV; a delete's Kv holds the key and its
// revision.
func TestWatchEvents(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	key := n.Watch(ctx, "a")
	prefix := n.Watch(ctx, "a", concord.WithPrefix(), concord.WithPrevKV())
	from := n.Watch(ctx, "b", concord.WithFromKey())
	rng := n.Watch(ctx, "a", concord.WithRange("ab"))

	r1 := put(t, n, "a", "1").Revision
	put(t, n, "b", "x")
	tx, err := n.Txn(ctx).Then(concord.OpPut("ab", "2"), concord.OpPut("a", "3"), concord.OpPut("c", "y")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	r3 := tx.Revision
	d, err := n.Delete(ctx, "a", concord.WithPrefix())
	if err != nil || d.Deleted != 2 {
		t.Fatal(d, err)
	}
	r4 := d.Revision

	evs := collect(t, key, 3)
	if !evs[0].IsCreate() || evs[1].IsCreate() || !evs[1].IsModify() {
		t.Fatalf("create flags: %v", describe(evs))
	}
	wantEvents(t, concord.WatchResponse{Events: evs},
		fmt.Sprintf("PUT a=1@%d(c%d,v1)", r1, r1),
		fmt.Sprintf("PUT a=3@%d(c%d,v2)", r3, r1),
		fmt.Sprintf("DELETE a@%d", r4))
	wantNext(t, prefix,
		fmt.Sprintf("PUT a=1@%d(c%d,v1)", r1, r1),
		fmt.Sprintf("PUT a=3@%d(c%d,v2)[1@%d]", r3, r1, r1), // key order within a revision
		fmt.Sprintf("PUT ab=2@%d(c%d,v1)", r3, r3),
		fmt.Sprintf("DELETE a@%d[3@%d]", r4, r3),
		fmt.Sprintf("DELETE ab@%d[2@%d]", r4, r3))
	wantNext(t, from,
		fmt.Sprintf("PUT b=x@%d(c%d,v1)", r1+1, r1+1),
		fmt.Sprintf("PUT c=y@%d(c%d,v1)", r3, r3))
	wantNext(t, rng,
		fmt.Sprintf("PUT a=1@%d(c%d,v1)", r1, r1),
		fmt.Sprintf("PUT a=3@%d(c%d,v2)", r3, r1),
		fmt.Sprintf("DELETE a@%d", r4))

	// Every response's header: the member, and a revision covering its
	// events.
	r := next(t, n.Watch(ctx, "a", concord.WithRev(r1)))
	if r.MemberID != n.Status().ID || r.Header.Revision < r.Events[len(r.Events)-1].Kv.ModRevision {
		t.Fatalf("response %+v", r)
	}
}

// TestWatchOptions: WithCreatedNotify, the filters and WithRev.
func TestWatchOptions(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	r1 := put(t, n, "k", "1").Revision
	created := n.Watch(ctx, "k", concord.WithCreatedNotify())
	noPuts := n.Watch(ctx, "k", concord.WithFilterPut())
	noDels := n.Watch(ctx, "k", concord.WithFilterDelete())
	put(t, n, "k", "2")
	del, err := n.Delete(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	r3 := put(t, n, "k", "3").Revision

	c := next(t, created)
	if !c.Created || len(c.Events) != 0 || c.Header.Revision != r1 || c.Err() != nil || c.IsProgressNotify() {
		t.Fatalf("created response %+v", c)
	}
	wantNext(t, created,
		fmt.Sprintf("PUT k=2@%d(c%d,v2)", r1+1, r1),
		fmt.Sprintf("DELETE k@%d", del.Revision),
		fmt.Sprintf("PUT k=3@%d(c%d,v1)", r3, r3))
	wantNext(t, noPuts, fmt.Sprintf("DELETE k@%d", del.Revision))
	wantNext(t, noDels,
		fmt.Sprintf("PUT k=2@%d(c%d,v2)", r1+1, r1),
		fmt.Sprintf("PUT k=3@%d(c%d,v1)", r3, r3))

	// From a past revision: the history, then live changes.
	past := n.Watch(ctx, "k", concord.WithRev(r1), concord.WithPrevKV())
	wantNext(t, past,
		fmt.Sprintf("PUT k=1@%d(c%d,v1)", r1, r1),
		fmt.Sprintf("PUT k=2@%d(c%d,v2)[1@%d]", r1+1, r1, r1),
		fmt.Sprintf("DELETE k@%d[2@%d]", del.Revision, r1+1),
		fmt.Sprintf("PUT k=3@%d(c%d,v1)", r3, r3))
	r4 := put(t, n, "k", "4").Revision
	wantNext(t, past, fmt.Sprintf("PUT k=4@%d(c%d,v2)[3@%d]", r4, r3, r3))

	// From a future revision: nothing until it is reached.
	future := n.Watch(ctx, "k", concord.WithRev(r4+2))
	put(t, n, "k", "5")
	r6 := put(t, n, "k", "6").Revision
	wantNext(t, future, fmt.Sprintf("PUT k=6@%d(c%d,v4)", r6, r3))
}

// TestWatchCompacted: a watch from below the compact revision gets one
// canceled response carrying it, then its channel closes; from the
// compact revision on it replays.
func TestWatchCompacted(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	var revs []int64
	for i := range 6 {
		revs = append(revs, put(t, n, "k", fmt.Sprint(i)).Revision)
	}
	if err := n.Compact(ctx, revs[3]); err != nil {
		t.Fatal(err)
	}
	wc := n.Watch(ctx, "k", concord.WithRev(revs[2]))
	r := next(t, wc)
	if !r.Canceled || r.CompactRevision != revs[3] || !errors.Is(r.Err(), concord.ErrCompacted) || len(r.Events) != 0 {
		t.Fatalf("response %+v (err %v)", r, r.Err())
	}
	closes(t, wc)
	wc = n.Watch(ctx, "k", concord.WithRev(revs[3]))
	wantNext(t, wc,
		fmt.Sprintf("PUT k=3@%d(c%d,v4)", revs[3], revs[0]),
		fmt.Sprintf("PUT k=4@%d(c%d,v5)", revs[4], revs[0]),
		fmt.Sprintf("PUT k=5@%d(c%d,v6)", revs[5], revs[0]))
}

// TestWatchBadInput: bad input and a closed node give one canceled
// response saying why.
func TestWatchBadInput(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	for _, c := range []struct {
		key  string
		opts []concord.OpOption
		want error
	}{
		{"", nil, concord.ErrEmptyKey},
		{"k", []concord.OpOption{concord.WithRev(-1)}, concord.ErrInvalidRevision},
	} {
		wc := n.Watch(ctx, c.key, c.opts...)
		r := next(t, wc)
		if !r.Canceled || !errors.Is(r.Err(), c.want) {
			t.Fatalf("Watch(%q): %+v, err %v", c.key, r, r.Err())
		}
		closes(t, wc)
	}
	// "" with a range is every key.
	all := n.Watch(ctx, "", concord.WithPrefix())
	put(t, n, "x", "1")
	if r := next(t, all); len(r.Events) != 1 {
		t.Fatalf("watch of every key: %+v", r)
	}
	n.Close()
	r := next(t, n.Watch(ctx, "k"))
	if !r.Canceled || !errors.Is(r.Err(), concord.ErrClosed) {
		t.Fatalf("Watch on a closed node: %+v", r)
	}
}

// TestWatchEnds: the channel closes when ctx ends, and when the node
// closes, with nothing after.
func TestWatchEnds(t *testing.T) {
	n := openOne(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	wc := n.Watch(ctx, "k")
	put(t, n, "k", "1")
	next(t, wc)
	cancel()
	put(t, n, "k", "2")
	closes(t, wc)

	wc = n.Watch(testCtx(t), "k")
	typed := concord.WatchTyped[string](testCtx(t), n, "k", nil)
	n.Close()
	closes(t, wc)
	if ev, ok := <-typed; ok {
		t.Fatalf("typed watch sent %+v after Close", ev)
	}
}

// TestWatchProgressNotify: a watch with nothing to deliver reports the
// revision it got to after Config.WatchProgressInterval.
func TestWatchProgressNotify(t *testing.T) {
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "solo"
	cfg.WatchProgressInterval = 20 * time.Millisecond
	n := openReady(t, cfg)
	ctx := testCtx(t)
	wc := n.Watch(ctx, "k", concord.WithProgressNotify())
	last := put(t, n, "other", "1").Revision
	for {
		r := next(t, wc)
		if !r.IsProgressNotify() || r.Err() != nil {
			t.Fatalf("response %+v", r)
		}
		if r.Header.Revision > last {
			t.Fatalf("progress at %d, ahead of the store at %d", r.Header.Revision, last)
		}
		if r.Header.Revision == last {
			break
		}
	}
	rk := put(t, n, "k", "1").Revision
	r := next(t, wc)
	for r.IsProgressNotify() && r.Header.Revision < rk {
		r = next(t, wc)
	}
	wantEvents(t, r, fmt.Sprintf("PUT k=1@%d(c%d,v1)", rk, rk))
}

type config struct {
	Color string `json:"color"`
	Size  int    `json:"size"`
}

// TestWatchTyped: values decode with the codec; one that does not arrives
// with ErrDecode and the watch goes on.
func TestWatchTyped(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	tc := concord.WatchTyped(ctx, n, "cfg/", concord.JSON[config](), concord.WithPrefix())
	r1 := put(t, n, "cfg/a", `{"color":"blue","size":3}`).Revision
	put(t, n, "cfg/b", `not json`)
	if _, err := n.Delete(ctx, "cfg/a"); err != nil {
		t.Fatal(err)
	}
	recv := func() concord.TypedEvent[config] {
		select {
		case ev := <-tc:
			return ev
		case <-time.After(20 * time.Second):
			t.Fatal("no typed event")
		}
		panic("unreachable")
	}
	if ev := recv(); ev.Err != nil || ev.Type != concord.EventTypePut || ev.Key != "cfg/a" || ev.Value != (config{"blue", 3}) || ev.Revision != r1 {
		t.Fatalf("first event %+v", ev)
	}
	if ev := recv(); !errors.Is(ev.Err, concord.ErrDecode) || ev.Key != "cfg/b" {
		t.Fatalf("undecodable event %+v", ev)
	}
	if ev := recv(); ev.Err != nil || ev.Type != concord.EventTypeDelete || ev.Key != "cfg/a" || ev.Value != (config{}) {
		t.Fatalf("delete event %+v", ev)
	}
}

// TestWatchLeaseRevoke: a revoke deletes a lease's keys in one revision,
// which a watcher gets in one response, with the keys' last state.
func TestWatchLeaseRevoke(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	id, err := n.Grant(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"svc/a", "svc/b", "svc/c"} {
		put(t, n, k, "up", concord.WithLease(id))
	}
	wc := n.Watch(ctx, "svc/", concord.WithPrefix(), concord.WithPrevKV())
	if err := n.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	r := next(t, wc)
	if len(r.Events) != 3 {
		t.Fatalf("revoke response: %v", describe(r.Events))
	}
	for _, e := range r.Events {
		if e.Type != concord.EventTypeDelete || e.Kv.ModRevision != r.Events[0].Kv.ModRevision || e.PrevKv.Lease != id {
			t.Fatalf("revoke events: %v", describe(r.Events))
		}
	}
}
