package concord_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

func waitClosed(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestInformer: an Informer starts from the prefix's current state and
// follows it: puts, deletes, values that do not decode, change
// notifications and waiting for a revision; it stops with Close, its ctx
// or the node.
func TestInformer(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "svc/a", `{"color":"blue","size":1}`)
	put(t, n, "svc/b", `{"color":"red","size":2}`)
	put(t, n, "other", `{}`)
	inf, err := concord.NewInformer(ctx, n, "svc/", concord.JSON[config]())
	if err != nil {
		t.Fatal(err)
	}
	snap, rev := inf.Snapshot()
	want := map[string]config{"svc/a": {"blue", 1}, "svc/b": {"red", 2}}
	if !maps.Equal(snap, want) || rev != n.Status().Revision {
		t.Fatalf("initial snapshot %v at %d", snap, rev)
	}

	changed := inf.Changed()
	r := put(t, n, "svc/c", `{"color":"green","size":3}`).Revision
	waitClosed(t, changed, "a change notification")
	if err := inf.WaitRevision(ctx, r); err != nil {
		t.Fatal(err)
	}
	if v, ok := inf.Get("svc/c"); !ok || v != (config{"green", 3}) {
		t.Fatalf("Get(svc/c) = %v, %v", v, ok)
	}
	if err := inf.WaitRevision(ctx, -1); !errors.Is(err, concord.ErrInvalidRevision) {
		t.Fatalf("WaitRevision(-1): %v, want ErrInvalidRevision", err)
	}

	put(t, n, "svc/b", `broken`)
	d, err := n.Delete(ctx, "svc/a")
	if err != nil {
		t.Fatal(err)
	}
	if err := inf.WaitRevision(ctx, d.Revision); err != nil {
		t.Fatal(err)
	}
	snap, rev = inf.Snapshot()
	if want := map[string]config{"svc/c": {"green", 3}}; !maps.Equal(snap, want) || rev != d.Revision {
		t.Fatalf("snapshot %v at %d", snap, rev)
	}
	if bad := inf.Invalid(); len(bad) != 1 || !errors.Is(bad["svc/b"], concord.ErrDecode) {
		t.Fatalf("Invalid() = %v", bad)
	}
	r = put(t, n, "svc/b", `{"color":"red","size":4}`).Revision
	if err := inf.WaitRevision(ctx, r); err != nil {
		t.Fatal(err)
	}
	if bad := inf.Invalid(); len(bad) != 0 {
		t.Fatalf("Invalid() after a fix = %v", bad)
	}

	// A write outside the prefix is reached by a progress notification.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	r = put(t, n, "other", `{}`).Revision
	if err := inf.WaitRevision(short, r); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitRevision for a write elsewhere, before any progress: %v", err)
	}

	inf.Close()
	waitClosed(t, inf.Done(), "Done after Close")
	if !errors.Is(inf.Err(), concord.ErrClosed) {
		t.Fatalf("Err after Close: %v", inf.Err())
	}
	if err := inf.WaitRevision(ctx, r+10); !errors.Is(err, concord.ErrClosed) {
		t.Fatalf("WaitRevision after Close: %v", err)
	}
	if v, ok := inf.Get("svc/c"); !ok || v.Size != 3 {
		t.Fatal("the copy is no longer readable after Close")
	}

	// Its ctx ends it; so does the node's Close.
	cctx, cancelInf := context.WithCancel(ctx)
	inf, err = concord.NewInformer(cctx, n, "svc/", concord.JSON[config]())
	if err != nil {
		t.Fatal(err)
	}
	cancelInf()
	waitClosed(t, inf.Done(), "Done after ctx ends")
	if !errors.Is(inf.Err(), context.Canceled) {
		t.Fatalf("Err after ctx ends: %v", inf.Err())
	}
	inf, err = concord.NewInformer[config](ctx, n, "svc/", nil)
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	waitClosed(t, inf.Done(), "Done after the node closes")
	if !errors.Is(inf.Err(), concord.ErrClosed) {
		t.Fatalf("Err after the node closes: %v", inf.Err())
	}
	if _, err := concord.NewInformer(ctx, n, "svc/", concord.JSON[config]()); !errors.Is(err, concord.ErrClosed) {
		t.Fatalf("NewInformer on a closed node: %v", err)
	}
}
