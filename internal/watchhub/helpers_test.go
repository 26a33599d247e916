package watchhub

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
)

// ev is what the test hubs deliver: enough to check order and content.
type ev struct {
	key     string
	rev     int64
	del     bool
	hasPrev bool
}

func (e ev) String() string {
	op := "put"
	if e.del {
		op = "del"
	}
	if e.hasPrev {
		op += "+prev"
	}
	return fmt.Sprintf("%s %s@%d", op, e.key, e.rev)
}

func convert(e *command.Event, prevKV bool) ev {
	return ev{
		key:     string(e.GetKv().GetKey()),
		rev:     e.GetKv().GetModRevision(),
		del:     e.GetType() == command.Event_DELETE,
		hasPrev: prevKV && e.GetPrevKv() != nil,
	}
}

// store is an in-memory stand-in for the state machine: a log of events,
// a revision and a compact revision, feeding a hub.
type store struct {
	mu      sync.Mutex
	log     []*command.Event // guarded by mu: every event, in revision then key order
	live    map[string]bool  // guarded by mu
	rev     int64            // guarded by mu
	compact int64            // guarded by mu
	hub     *Hub[ev]
}

func newStore(t *testing.T) *store {
	s := &store{rev: 1, live: map[string]bool{}}
	s.hub = New(Config[ev]{History: s.history, Revision: s.revision, Convert: convert})
	t.Cleanup(s.hub.Close)
	return s
}

func (s *store) revision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

// change is one key's change within a revision.
type change struct {
	key string
	del bool
}

// commit applies revisions (each a set of changes to distinct keys, in
// key order) as one committed batch and hands it to the hub.
func (s *store) commit(revs ...[]change) {
	s.mu.Lock()
	var evs []*command.Event
	for _, r := range revs {
		s.rev++
		for _, c := range r {
			e := &command.Event{Kv: &command.KeyValue{Key: []byte(c.key), ModRevision: s.rev}}
			if s.live[c.key] {
				e.PrevKv = &command.KeyValue{Key: []byte(c.key)}
			}
			if c.del {
				e.Type = command.Event_DELETE
			}
			s.live[c.key] = !c.del
			evs = append(evs, e)
		}
	}
	s.log = append(s.log, evs...)
	c := fsm.Commit{Revision: s.rev, CompactRevision: s.compact, Events: evs}
	s.mu.Unlock()
	s.hub.OnCommit(c)
}

func (s *store) compactTo(rev int64) {
	s.mu.Lock()
	s.compact = rev
	s.mu.Unlock()
}

func (s *store) history(from int64, key, end []byte, prevKV bool, fn func(*command.Event) error) (int64, int64, error) {
	s.mu.Lock()
	rev, compact := s.rev, s.compact
	log := s.log
	s.mu.Unlock()
	if from < compact {
		return rev, compact, fsm.ErrCompacted
	}
	for _, e := range log {
		if e.GetKv().GetModRevision() < from || !fsm.InRange(e.GetKv().GetKey(), key, end) {
			continue
		}
		c := &command.Event{Type: e.Type, Kv: e.Kv}
		if prevKV {
			c.PrevKv = e.PrevKv
		}
		if err := fn(c); err != nil {
			return rev, compact, err
		}
	}
	return rev, compact, nil
}

// want returns what a watch with o should deliver from the log, up to rev.
func (s *store) want(o Options[ev], upTo int64) []ev {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ev
	for _, e := range s.log {
		r := e.GetKv().GetModRevision()
		if r < o.Rev || r > upTo || !fsm.InRange(e.GetKv().GetKey(), o.Key, o.End) {
			continue
		}
		if (e.GetType() == command.Event_DELETE && o.FilterDelete) || (e.GetType() == command.Event_PUT && o.FilterPut) {
			continue
		}
		out = append(out, convert(e, o.PrevKV))
	}
	return out
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readN reads w until it has delivered n events, checking that delivery
// revisions never go back and cover their events.
func readN(t *testing.T, w *Watcher[ev], n int) []ev {
	t.Helper()
	var got []ev
	last := int64(-1)
	for len(got) < n {
		d, err := w.Next(testCtx(t))
		if err != nil {
			t.Fatalf("Next: %v (got %v)", err, got)
		}
		if d.Revision < last {
			t.Fatalf("delivery revision went back: %d after %d", d.Revision, last)
		}
		for _, e := range d.Events {
			if e.rev > d.Revision {
				t.Fatalf("event %v above the delivery's revision %d", e, d.Revision)
			}
		}
		last = d.Revision
		got = append(got, d.Events...)
	}
	return got
}

// expect reads from w what a watch with o should get from the log up to
// revision upTo, and compares.
func expect(t *testing.T, what string, s *store, w *Watcher[ev], o Options[ev], upTo int64) {
	t.Helper()
	want := s.want(o, upTo)
	equal(t, what, readN(t, w, len(want)), want)
}

func equal(t *testing.T, what string, got, want []ev) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s:\n got %v\nwant %v", what, got, want)
	}
}

func setVar(t *testing.T, p *int, v int) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}
