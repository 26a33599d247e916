package concord_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

type registryEndpoint struct {
	Addr string `json:"addr"`
}

// registryWaitSet reads w until it sends want, or fails after d.
func registryWaitSet(t *testing.T, w <-chan map[string]registryEndpoint, d time.Duration, want map[string]registryEndpoint) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	var last map[string]registryEndpoint
	for {
		select {
		case got, ok := <-w:
			if !ok {
				t.Fatalf("Watch closed; last set %v, want %v", last, want)
			}
			if maps.Equal(got, want) {
				return
			}
			last = got
		case <-timer.C:
			t.Fatalf("Watch did not send %v within %v; last set %v", want, d, last)
		}
	}
}

func registryInstances(t *testing.T, r *concord.Registry[registryEndpoint]) map[string]registryEndpoint {
	t.Helper()
	got, err := r.Instances(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRegistryInstanceGoneWhenSessionRevoked: an instance vanishes, for
// readers and watchers on other nodes, once its session's lease is
// revoked from yet another node; the dead session can register nothing.
func TestRegistryInstanceGoneWhenSessionRevoked(t *testing.T) {
	c := newCluster(t, 3)
	ctx := testCtx(t)
	r0 := concord.NewRegistry[registryEndpoint](c.nodes[0], "svc/api")
	r1 := concord.NewRegistry[registryEndpoint](c.nodes[1], "svc/api")
	r2 := concord.NewRegistry[registryEndpoint](c.nodes[2], "svc/api")
	sa, sb := newSession(t, c.nodes[0]), newSession(t, c.nodes[1])
	if err := r0.Register(ctx, sa, "a", registryEndpoint{"10.0.0.1:80"}); err != nil {
		t.Fatal(err)
	}
	if err := r1.Register(ctx, sb, "b", registryEndpoint{"10.0.0.2:80"}); err != nil {
		t.Fatal(err)
	}
	both := map[string]registryEndpoint{"a": {"10.0.0.1:80"}, "b": {"10.0.0.2:80"}}
	w := r2.Watch(ctx)
	registryWaitSet(t, w, 5*time.Second, both)
	if got := registryInstances(t, r2); !maps.Equal(got, both) {
		t.Fatalf("Instances on n3 = %v, want %v", got, both)
	}

	if err := c.nodes[2].Revoke(ctx, sa.Lease()); err != nil {
		t.Fatal(err)
	}
	onlyB := map[string]registryEndpoint{"b": {"10.0.0.2:80"}}
	if got := registryInstances(t, r1); !maps.Equal(got, onlyB) {
		t.Fatalf("Instances on n2 after the revoke = %v, want %v", got, onlyB)
	}
	registryWaitSet(t, w, 5*time.Second, onlyB)

	doneWithin(t, sa, 2*time.Second, "the revoke")
	unchanged(t, c.nodes[0], concord.ErrSessionExpired, func() error {
		return r0.Register(ctx, sa, "a", registryEndpoint{"10.0.0.1:80"})
	})
}

// TestRegistryInstanceGoneWhenProcessDies: the node that registered an
// instance closes without deregistering (its process died): the instance
// is gone for the others once the session's TTL has passed.
func TestRegistryInstanceGoneWhenProcessDies(t *testing.T) {
	c := newCluster(t, 3)
	ctx := testCtx(t)
	const ttl = time.Second
	victim := (c.leader() + 1) % 3 // keep the leader: no failover to wait for
	other := (victim + 1) % 3
	s := newSession(t, c.nodes[victim], concord.WithSessionTTL(ttl))
	rv := concord.NewRegistry[registryEndpoint](c.nodes[victim], "svc")
	if err := rv.Register(ctx, s, "dying", registryEndpoint{"10.0.0.9:80"}); err != nil {
		t.Fatal(err)
	}
	ro := concord.NewRegistry[registryEndpoint](c.nodes[other], "svc")
	w := ro.Watch(ctx)
	registryWaitSet(t, w, 5*time.Second, map[string]registryEndpoint{"dying": {"10.0.0.9:80"}})

	start := time.Now()
	c.close(victim)
	registryWaitSet(t, w, ttl+3*time.Second, map[string]registryEndpoint{})
	t.Logf("instance gone %v after its node closed (session TTL %v)", time.Since(start).Round(time.Millisecond), ttl)
	if got := registryInstances(t, ro); len(got) != 0 {
		t.Fatalf("Instances after the process died = %v", got)
	}
}

// TestRegistryWatchMatchesInstances: each set Watch sends is the state at
// one revision; after every step of registrations, updates, deregistrations
// and session ends, the set it sends equals what Instances reads.
func TestRegistryWatchMatchesInstances(t *testing.T) {
	c := newCluster(t, 3)
	ctx := testCtx(t)
	regs := make([]*concord.Registry[registryEndpoint], 3)
	for i, n := range c.nodes {
		regs[i] = concord.NewRegistry[registryEndpoint](n, "svc")
	}
	s0, s1 := newSession(t, c.nodes[0]), newSession(t, c.nodes[1])
	if err := regs[0].Register(ctx, s0, "first", registryEndpoint{"a:1"}); err != nil {
		t.Fatal(err)
	}
	snaps := regs[2].WatchSnapshots(ctx)
	plain := regs[2].Watch(ctx)
	lastRev := int64(0)
	// check waits for a snapshot at or past the current revision and
	// compares it with Instances.
	check := func(step string) {
		t.Helper()
		want := registryInstances(t, regs[1])
		rev := c.nodes[1].Status().Revision
		timer := time.NewTimer(5 * time.Second)
		defer timer.Stop()
		for {
			select {
			case s := <-snaps:
				if s.Revision < lastRev {
					t.Fatalf("%s: snapshot revision went from %d to %d", step, lastRev, s.Revision)
				}
				lastRev = s.Revision
				if s.Revision < rev {
					continue
				}
				if !maps.Equal(s.Instances, want) {
					t.Fatalf("%s: Watch sent %v at revision %d, Instances read %v", step, s.Instances, s.Revision, want)
				}
				registryWaitSet(t, plain, 5*time.Second, want)
				return
			case <-timer.C:
				t.Fatalf("%s: no snapshot at revision %d", step, rev)
			}
		}
	}
	check("start")
	if err := regs[1].Register(ctx, s1, "second", registryEndpoint{"b:1"}); err != nil {
		t.Fatal(err)
	}
	check("register on n2")
	if err := regs[0].Register(ctx, s0, "first", registryEndpoint{"a:2"}); err != nil {
		t.Fatal(err)
	}
	check("new value")
	if err := regs[2].Deregister(ctx, s1, "first"); err != nil {
		t.Fatal(err)
	}
	if got := registryInstances(t, regs[2]); len(got) != 2 {
		t.Fatalf("Deregister by another session removed an instance: %v", got)
	}
	if err := regs[2].Deregister(ctx, s0, "first"); err != nil {
		t.Fatal(err)
	}
	check("deregister")
	// A service nested under this one is not part of it.
	nested := concord.NewRegistry[registryEndpoint](c.nodes[0], "svc/v2")
	if err := nested.Register(ctx, s0, "deep", registryEndpoint{"c:1"}); err != nil {
		t.Fatal(err)
	}
	check("nested service")
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	check("session closed")
	if got := registryInstances(t, regs[0]); len(got) != 0 {
		t.Fatalf("instances left at the end: %v", got)
	}
}

// TestRegistryDecodeErrors: a value the codec cannot decode is left out of
// the sets and reported, with the instance's name, by Instances' error and
// by WatchSnapshots.
func TestRegistryDecodeErrors(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	r := concord.NewRegistry[registryEndpoint](n, "svc")
	s := newSession(t, n)
	if err := r.Register(ctx, s, "good", registryEndpoint{"a:1"}); err != nil {
		t.Fatal(err)
	}
	put(t, n, "svc/bad", "\x00gob?", concord.WithLease(s.Lease()))
	got, err := r.Instances(ctx)
	wantErr(t, err, concord.ErrDecode)
	if !strings.Contains(err.Error(), `"bad"`) {
		t.Fatalf("the error does not name the instance: %v", err)
	}
	if want := map[string]registryEndpoint{"good": {"a:1"}}; !maps.Equal(got, want) {
		t.Fatalf("Instances with a bad value = %v, want %v", got, want)
	}
	snap := <-r.WatchSnapshots(ctx)
	if len(snap.Instances) != 1 || len(snap.Invalid) != 1 || !errors.Is(snap.Invalid["bad"], concord.ErrDecode) {
		t.Fatalf("snapshot %+v", snap)
	}
}

// TestRegistryBadInput: bad names, a codec of another type and a dead
// session get clear errors and write nothing.
func TestRegistryBadInput(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	s := newSession(t, n)
	r := concord.NewRegistry[registryEndpoint](n, "svc")
	v := registryEndpoint{"a:1"}
	unchanged(t, n, concord.ErrEmptyKey, func() error { return r.Register(ctx, s, "", v) })
	unchanged(t, n, concord.ErrInvalidRequest, func() error { return r.Register(ctx, s, "a/b", v) })
	empty := concord.NewRegistry[registryEndpoint](n, "")
	unchanged(t, n, concord.ErrEmptyKey, func() error { return empty.Register(ctx, s, "a", v) })
	wrong := concord.NewRegistry[registryEndpoint](n, "svc", concord.WithRegistryCodec(concord.JSON[string]()))
	unchanged(t, n, concord.ErrInvalidRequest, func() error { return wrong.Register(ctx, s, "a", v) })
	if _, err := wrong.Instances(ctx); !errors.Is(err, concord.ErrInvalidRequest) {
		t.Fatalf("Instances with a wrong codec: %v", err)
	}
	if _, ok := <-wrong.Watch(ctx); ok {
		t.Fatal("Watch of an invalid registry sent a set")
	}
	s.Orphan() // Done closes; the lease lives on until its TTL
	unchanged(t, n, concord.ErrSessionExpired, func() error { return r.Register(ctx, s, "a", v) })
	if err := r.Register(ctx, s, "a", v); errors.Is(err, concord.ErrClosed) {
		t.Fatalf("Register on an ended session of an open node: %v, want no ErrClosed", err)
	}

	// A codec given explicitly is used.
	typed := concord.NewRegistry[registryEndpoint](n, "svc2", concord.WithRegistryCodec(concord.JSON[registryEndpoint]()))
	s2 := newSession(t, n)
	if err := typed.Register(ctx, s2, "a", v); err != nil {
		t.Fatal(err)
	}
	if got := value(t, n, "svc2/a"); got != `{"addr":"a:1"}` {
		t.Fatalf("stored %s", got)
	}
}

// TestRegistryWatchEndsWithCtx: Watch's channel closes when its ctx ends.
func TestRegistryWatchEndsWithCtx(t *testing.T) {
	n := openOne(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	w := concord.NewRegistry[registryEndpoint](n, "svc").Watch(ctx)
	if got := <-w; len(got) != 0 {
		t.Fatalf("first set %v", got)
	}
	cancel()
	registryClosed := make(chan struct{})
	go func() {
		for range w {
		}
		close(registryClosed)
	}()
	waitClosed(t, registryClosed, "Watch to close after its ctx ended")
}

// TestRegistryRegisterOnClosedNode: on a closed node Register fails with
// ErrClosed (beside ErrSessionExpired: the session ended with the node),
// as the other primitives do.
func TestRegistryRegisterOnClosedNode(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	s := newSession(t, n)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	err := concord.NewRegistry[registryEndpoint](n, "svc").Register(ctx, s, "a", registryEndpoint{"a:1"})
	if !errors.Is(err, concord.ErrClosed) || !errors.Is(err, concord.ErrSessionExpired) {
		t.Fatalf("Register on a closed node: %v, want ErrClosed and ErrSessionExpired", err)
	}
}
