package concord_test

import (
	"context"
	"testing"
	"time"

	"github.com/concordkv/concord"
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
