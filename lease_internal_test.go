package concord

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/fsm"
)

func openLocal(t *testing.T, dir string) *Node {
	t.Helper()
	cfg := DefaultLocalConfig()
	cfg.Name = "solo"
	cfg.DataDir = dir
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

// storedLease reads lease id from n's state.
func storedLease(t *testing.T, n *Node, id LeaseID) (fsm.Lease, bool) {
	t.Helper()
	var (
		l     fsm.Lease
		found bool
	)
	err := n.view(func(txn *badger.Txn) error {
		var err error
		l, found, err = fsm.ReadLease(txn, int64(id))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, found
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSessionDoneAfterExpiry: a session whose keep-alives stop getting
// through ends when its lease expires, and its keys go.
func TestSessionDoneAfterExpiry(t *testing.T) {
	n := openLocal(t, "")
	ctx := context.Background()
	const ttl = time.Second
	s, err := NewSession(n, WithSessionTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Orphan()
	if _, err := n.Put(ctx, "mine", "v", WithLease(s.Lease())); err != nil {
		t.Fatal(err)
	}
	n.dropRenewals.Store(true)
	stopped := time.Now()
	select {
	case <-s.Done():
	case <-time.After(ttl + time.Second):
		t.Fatal("Session.Done still open a second after its TTL")
	}
	if d := time.Since(stopped); d < ttl/2 {
		t.Fatalf("Done closed %v after renewals stopped, before the lease could expire", d)
	}
	waitFor(t, time.Second, "the lease to expire", func() bool {
		_, found := storedLease(t, n, s.Lease())
		return !found
	})
	if g, err := n.Get(ctx, "mine"); err != nil || len(g.Kvs) != 0 {
		t.Fatalf("the session's key: %v %v", g, err)
	}
}

// TestCheckpointCarriedOverRestart: a lease that misses its renewals is
// checkpointed, and a restarted node (a new leader) gives it what it had
// left plus the election timeout, not its whole TTL again (etcd#9888); a
// renewal clears the checkpoint before it is answered.
func TestCheckpointCarriedOverRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "solo")
	n := openLocal(t, dir)
	ctx := context.Background()
	const ttl = 3 * time.Second
	et := n.cfg.electionTimeout()
	id, err := n.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	// Renewed, then left alone: checkpointed ttl/3 + et later.
	if _, err := n.KeepAliveOnce(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ttl, "a checkpoint", func() bool {
		l, _ := storedLease(t, n, id)
		return l.Remaining > 0
	})
	l, _ := storedLease(t, n, id)
	if l.Remaining > ttl-ttl/3-et+100*time.Millisecond || l.Remaining < ttl/2 {
		t.Fatalf("checkpointed %v left of %v", l.Remaining, ttl)
	}
	// A renewal clears it before it returns.
	if _, err := n.KeepAliveOnce(ctx, id); err != nil {
		t.Fatal(err)
	}
	if l, _ := storedLease(t, n, id); l.Remaining != 0 {
		t.Fatalf("renewed lease still checkpointed with %v left", l.Remaining)
	}
	waitFor(t, ttl, "a second checkpoint", func() bool {
		l, _ := storedLease(t, n, id)
		return l.Remaining > 0
	})
	if _, err := n.Put(ctx, "k", "v", WithLease(id)); err != nil {
		t.Fatal(err)
	}
	l, _ = storedLease(t, n, id)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	reopened := time.Now()
	n = openLocal(t, dir)
	st, err := n.TimeToLive(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL > l.Remaining+et || st.GrantedTTL != ttl {
		t.Fatalf("after restart: %v left (granted %v), want at most the checkpointed %v + %v", st.TTL, st.GrantedTTL, l.Remaining, et)
	}
	waitFor(t, ttl+et, "the lease to expire", func() bool {
		_, found := storedLease(t, n, id)
		return !found
	})
	// Given its whole TTL again, it could not expire before ttl after the
	// restart; the slack above l.Remaining+et absorbs a loaded machine.
	if d := time.Since(reopened); d >= ttl {
		t.Fatalf("expired %v after the restart, checkpointed with %v left: as if given its whole TTL", d, l.Remaining)
	}
}
