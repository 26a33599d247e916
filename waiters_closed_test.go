package concord_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// TestWaitersOnClosedNode: a Lock, Campaign or Dequeue waiting on a node
// that closes returns an error that is ErrClosed, the caller's cue to stop
// (a waiter that noticed its session's end first also says
// ErrSessionExpired).
func TestWaitersOnClosedNode(t *testing.T) {
	n := openOne(t)
	holder := concord.NewMutex(lockSession(t, n), "closed/lock")
	if err := holder.Lock(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	leader := concord.NewElection[string](lockSession(t, n), "closed/elect")
	if err := leader.Campaign(testCtx(t), "first"); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	errs := map[string]chan error{}
	start := func(name string, f func(context.Context) error) {
		errc := make(chan error, 1)
		errs[name] = errc
		go func() { errc <- f(ctx) }()
	}
	start("Lock", concord.NewMutex(lockSession(t, n), "closed/lock").Lock)
	e := concord.NewElection[string](lockSession(t, n), "closed/elect")
	start("Campaign", func(ctx context.Context) error { return e.Campaign(ctx, "second") })
	q := concord.NewQueue[string](lockSession(t, n), "closed/queue")
	start("Dequeue", func(ctx context.Context) error {
		_, err := q.Dequeue(ctx)
		return err
	})
	// All three wait: the lock and the election have two keys each.
	eventually(t, 10*time.Second, "waiters queued", func() bool {
		return lockWaiters(t, n, "closed/lock") == 2 && lockWaiters(t, n, "closed/elect") == 2
	})
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for name, errc := range errs {
		select {
		case err := <-errc:
			if !errors.Is(err, concord.ErrClosed) {
				t.Errorf("%s on a closed node: %v, want ErrClosed", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s still waits after its node closed", name)
		}
	}
}
