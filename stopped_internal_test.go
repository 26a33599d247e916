package concord

import (
	"context"
	"testing"
	"time"
)

// TestWatchersEndWhenNodeStopsOnItsOwn: when the raft peer stops without
// Close (removed, a storage error, raft halting), Election.Observe,
// Informer, Var and Registry.Watch end instead of retrying for as long as
// their ctx lasts. (Observe retried before.)
func TestWatchersEndWhenNodeStopsOnItsOwn(t *testing.T) {
	cfg := DefaultLocalConfig()
	cfg.Name = "solo"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(n)
	if err != nil {
		t.Fatal(err)
	}
	e := NewElection[string](s, "el")
	if err := e.Campaign(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	obs := e.Observe(ctx)
	if l := <-obs; l.Value != "v" {
		t.Fatalf("first observation %+v", l)
	}
	inf, err := NewInformer(ctx, n, "cfg/", JSON[string]())
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVar[string](ctx, n, "var")
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry[string](n, "svc").Watch(ctx)
	<-reg        // the first set
	n.rn.Crash() // the raft peer stops; the Node is not closed
	deadline := time.After(10 * time.Second)
	drain := func(what string, done func() bool) {
		for !done() {
			select {
			case <-deadline:
				t.Fatalf("%s still open 10s after the node stopped", what)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	closed := func(c <-chan struct{}) func() bool {
		return func() bool {
			select {
			case <-c:
				return true
			default:
				return false
			}
		}
	}
	drain("Observe's channel", func() bool { _, ok := tryRecv(obs); return !ok })
	drain("the Informer", closed(inf.Done()))
	drain("Var.Changes", func() bool { _, ok := tryRecv(v.Changes()); return !ok })
	drain("Registry.Watch", func() bool { _, ok := tryRecv(reg); return !ok })
}

// tryRecv receives from c without blocking; ok is false once c is closed
// (and true, with the zero value, when nothing is ready).
func tryRecv[T any](c <-chan T) (T, bool) {
	select {
	case x, ok := <-c:
		return x, ok
	default:
		var zero T
		return zero, true
	}
}
