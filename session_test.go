package concord_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

func newSession(t *testing.T, n *concord.Node, opts ...concord.SessionOption) *concord.Session {
	t.Helper()
	s, err := concord.NewSession(n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Orphan() })
	return s
}

// doneWithin fails unless s.Done closes within d.
func doneWithin(t *testing.T, s *concord.Session, d time.Duration, what string) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-s.Done():
		return
	default:
	}
	select {
	case <-s.Done():
	case <-timer.C:
		t.Fatalf("Session.Done still open %v after %s", d, what)
	}
}

// TestSessionDoneAfterRevoke: a session's Done closes within a second of
// its lease being revoked from another node, however long its TTL.
func TestSessionDoneAfterRevoke(t *testing.T) {
	c := newCluster(t, 3)
	s := newSession(t, c.nodes[0])
	if s.TTL() != concord.DefaultSessionTTL {
		t.Fatalf("TTL %v, want %v", s.TTL(), concord.DefaultSessionTTL)
	}
	put(t, c.nodes[0], "mine", "v", concord.WithLease(s.Lease()))
	select {
	case <-s.Done():
		t.Fatal("Done closed early")
	default:
	}
	if err := c.nodes[2].Revoke(testCtx(t), s.Lease()); err != nil {
		t.Fatal(err)
	}
	doneWithin(t, s, time.Second, "a revoke")
	if value(t, c.nodes[1], "mine") != "<none>" {
		t.Fatal("the session's key survived the revoke")
	}
}

// TestSessionDoneAfterQuorumLoss: a session whose node can reach no
// leader ends once its TTL has passed without a renewal.
func TestSessionDoneAfterQuorumLoss(t *testing.T) {
	c := newCluster(t, 3)
	const ttl = time.Second
	i := (c.leader() + 1) % 3
	s := newSession(t, c.nodes[i], concord.WithSessionTTL(ttl))
	for j := range c.nodes {
		if j != i {
			c.close(j)
		}
	}
	doneWithin(t, s, ttl+time.Second, "losing the quorum")
}

// TestSessionCloseRevokes: Close revokes the lease before it returns, so
// the session's keys are gone for every reader.
func TestSessionCloseRevokes(t *testing.T) {
	c := newCluster(t, 3)
	s := newSession(t, c.nodes[1])
	put(t, c.nodes[1], "mine", "v", concord.WithLease(s.Lease()))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	doneWithin(t, s, 0, "Close")
	if value(t, c.nodes[2], "mine") != "<none>" {
		t.Fatal("the session's key survived Close")
	}
	_, err := c.nodes[0].TimeToLive(testCtx(t), s.Lease(), false)
	wantErr(t, err, concord.ErrLeaseNotFound)
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestSessionOrphanAndContext: Orphan, or the end of the session's
// context, stop the keep-alives without revoking: Done closes at once and
// the lease lives on until it expires.
func TestSessionOrphanAndContext(t *testing.T) {
	n := openOne(t)
	const ttl = time.Second
	s := newSession(t, n, concord.WithSessionTTL(ttl))
	s.Orphan()
	doneWithin(t, s, 0, "Orphan")
	if _, err := n.TimeToLive(testCtx(t), s.Lease(), false); err != nil {
		t.Fatalf("lease revoked by Orphan: %v", err)
	}

	ctx, cancel := context.WithCancel(testCtx(t))
	id := grant(t, n, ttl)
	s2 := newSession(t, n, concord.WithSessionLease(id), concord.WithSessionContext(ctx))
	if s2.Lease() != id || s2.TTL() != ttl {
		t.Fatalf("session of lease %d with TTL %v, want %d and %v", s2.Lease(), s2.TTL(), id, ttl)
	}
	cancel()
	doneWithin(t, s2, time.Second, "its context ended")
	if _, err := n.TimeToLive(testCtx(t), id, false); err != nil {
		t.Fatalf("lease revoked by the end of the context: %v", err)
	}
	put(t, n, "k", "v", concord.WithLease(id))
	gone(t, n, ttl+time.Second, "k")
}

// TestSessionDoneAfterPartition: a node cut off from the others longer
// than its session's TTL sees the session end within TTL + 1 s, whether it
// was a follower or the leader, and the others expire the lease within
// what it had left + election timeout + 1 s; a shorter cut leaves the
// session alive.
func TestSessionDoneAfterPartition(t *testing.T) {
	for _, leader := range []bool{false, true} {
		t.Run(fmt.Sprintf("leader=%v", leader), func(t *testing.T) {
			c := concordtest.NewCluster(t, 3)
			ctx := testCtx(t)
			lead, err := c.WaitLeader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			i := (lead + 1) % 3
			if leader {
				i = lead
			}
			others := []int{(i + 1) % 3, (i + 2) % 3}
			const ttl = time.Second
			s := newSession(t, c.Node(i), concord.WithSessionTTL(ttl))
			put(t, c.Node(i), "mine", "v", concord.WithLease(s.Lease()))
			st, err := c.Node(others[0]).TimeToLive(ctx, s.Lease(), false)
			if err != nil {
				t.Fatal(err)
			}
			cut := time.Now()
			c.Isolate(i)
			doneWithin(t, s, ttl+time.Second, "a partition longer than the TTL")
			if d := time.Since(cut); d > ttl+time.Second {
				t.Fatalf("Done closed %v after the partition", d)
			}
			if _, err := c.WaitLeader(ctx, others...); err != nil {
				t.Fatal(err)
			}
			at := gone(t, c.Node(others[0]), st.TTL+localET+2*time.Second, "mine")
			if d := at.Sub(cut); d > st.TTL+localET+time.Second {
				t.Fatalf("the majority expired the lease %v after the partition, %v left", d, st.TTL)
			}
			c.Heal()
		})
	}
	t.Run("short", func(t *testing.T) {
		c := concordtest.NewCluster(t, 3)
		lead, err := c.WaitLeader(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		i := (lead + 1) % 3
		const ttl = 2 * time.Second
		s := newSession(t, c.Node(i), concord.WithSessionTTL(ttl))
		c.Isolate(i)
		time.Sleep(ttl / 4) // the partition's length is the scenario
		c.Heal()
		time.Sleep(2 * ttl)
		select {
		case <-s.Done():
			t.Fatal("a partition shorter than the TTL ended the session")
		default:
		}
		if _, err := c.Node(lead).TimeToLive(testCtx(t), s.Lease(), false); err != nil {
			t.Fatalf("lease lost to a short partition: %v", err)
		}
	})
}

// TestSessionDoneBeforeLeaseExpires: a session whose node is cut off from
// the leader ends (Done) before the majority expires its lease and
// deletes its keys, so a holder is told before another can take over. The
// production tick (100 ms) makes the gap a keep-alive that gives up only
// on its next tick would leave wide.
func TestSessionDoneBeforeLeaseExpires(t *testing.T) {
	c := concordtest.NewCluster(t, 3, concordtest.Configure(func(_ int, cfg *concord.Config) {
		cfg.TickInterval = 100 * time.Millisecond
	}))
	ctx := testCtx(t)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := (lead + 1) % 3
	s := newSession(t, c.Node(i), concord.WithSessionTTL(2*time.Second))
	put(t, c.Node(i), "held", "v", concord.WithLease(s.Lease()))
	wc := c.Node(lead).Watch(ctx, "held", concord.WithFilterPut(), concord.WithCreatedNotify())
	if r := <-wc; !r.Created {
		t.Fatalf("first watch response %+v, want Created", r)
	}
	deleted := make(chan time.Time, 1)
	go func() {
		for r := range wc {
			if len(r.Events) > 0 {
				deleted <- time.Now()
				return
			}
		}
	}()
	c.Isolate(i)
	var doneAt time.Time
	select {
	case <-s.Done():
		doneAt = time.Now()
	case <-ctx.Done():
		t.Fatal("Done never closed")
	}
	select {
	case at := <-deleted:
		if at.Before(doneAt) {
			t.Fatalf("the leader deleted the session's key %v before Done closed", doneAt.Sub(at))
		}
	case <-ctx.Done():
		t.Fatal("the majority never expired the lease")
	}
}

// TestSessionDoneThroughSnapshot: a cut-off node whose session's lease is
// revoked meanwhile learns of it from a snapshot once it is back, and the
// session ends at once.
func TestSessionDoneThroughSnapshot(t *testing.T) {
	c := concordtest.NewCluster(t, 3, concordtest.Configure(func(_ int, cfg *concord.Config) {
		cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 20, 10
	}))
	ctx := testCtx(t)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := (lead + 1) % 3
	s := newSession(t, c.Node(i)) // 60 s: only the revoke can end it here
	c.Isolate(i)
	others := []int{(i + 1) % 3, (i + 2) % 3}
	newLead, err := c.WaitLeader(ctx, others...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Node(newLead).Revoke(ctx, s.Lease()); err != nil {
		t.Fatal(err)
	}
	for k := range 100 { // the log moves on: node i will need a snapshot
		put(t, c.Node(newLead), fmt.Sprintf("fill/%d", k), "v")
	}
	select {
	case <-s.Done():
		t.Fatal("Done closed while cut off, before its TTL")
	default:
	}
	c.Heal()
	doneWithin(t, s, 5*time.Second, "catching up after a revoke")
}
