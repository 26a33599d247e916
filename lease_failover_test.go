package concord_test

import (
	"testing"
	"time"
)

// failoverSlack is what a leader change may add to a lease beyond its
// remaining TTL and the election timeout, here: the messages that carried
// its last renewal and the new leader's question, on loopback.
const failoverSlack = 100 * time.Millisecond

// TestLeaseGoneAfterLeaderCloseCarriesRemaining: a 10 s lease is kept
// alive from a follower; its keep-alives stop two seconds after a renewal
// and the leader is closed right after. The new leader carries over what
// the lease had left: it goes no earlier than that and within that plus
// the election timeout plus 1 s, not a whole TTL after the leader change
// (etcd#9888).
func TestLeaseGoneAfterLeaderCloseCarriesRemaining(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	f := c.nodes[(lead+1)%3]
	const ttl = 10 * time.Second
	id, ch, cancel := keptAlive(t, f, f, ttl)
	<-ch // the renewal of KeepAlive's start
	lastKA := time.Now()
	time.Sleep(2 * time.Second) // the next renewal is due at TTL/3
	cancel()
	for range ch {
	}
	st, err := f.TimeToLive(testCtx(t), id, false)
	if err != nil {
		t.Fatal(err)
	}
	stopped, left := time.Now(), st.TTL
	c.close(lead)
	at := gone(t, f, left+localET+3*time.Second, "held")
	d := at.Sub(stopped)
	t.Logf("gone %v after keep-alives stopped with %v left (%v after the last keep-alive's answer; bound %v)",
		d, left, at.Sub(lastKA), left+localET+time.Second)
	if d < left-50*time.Millisecond || d > left+localET+time.Second {
		t.Fatalf("gone %v after keep-alives stopped with %v left and the leader closed, want within [%v, %v]",
			d, left, left, left+localET+time.Second)
	}
}

// TestLeaderChangeDoesNotRenew: a 10 s lease renewed by KeepAliveOnce
// from a follower is not renewed by a leader change: right after the
// leader is closed, TimeToLive reports at most what it had left since the
// renewal plus the election timeout, and at least what it had left.
func TestLeaderChangeDoesNotRenew(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	f := c.nodes[(lead+1)%3]
	const ttl = 10 * time.Second
	id := grant(t, c.nodes[lead], ttl)
	var sent, answered time.Time
	for range 2 { // renewed actively, then left alone
		sent = time.Now()
		if _, err := f.KeepAliveOnce(testCtx(t), id); err != nil {
			t.Fatal(err)
		}
		answered = time.Now()
		time.Sleep(ttl / 8)
	}
	time.Sleep(2 * time.Second)
	c.close(lead)
	asked := time.Now()
	st, err := f.TimeToLive(testCtx(t), id, false)
	if err != nil {
		t.Fatal(err)
	}
	got := time.Now()
	// The renewal happened between sent and answered; TimeToLive's answer
	// between asked and got.
	lo, hi := sent.Add(ttl).Sub(got), answered.Add(ttl+localET+failoverSlack).Sub(asked)
	t.Logf("TimeToLive %v after the leader change (%v after the renewal), want within [%v, %v]",
		st.TTL, got.Sub(answered), lo, hi)
	if st.TTL < lo || st.TTL > hi {
		t.Fatalf("TimeToLive %v after the leader change, want within [%v, %v]: a leader change must neither shorten nor renew a lease", st.TTL, lo, hi)
	}
	// Still alive and renewable under the new leader.
	if r, err := f.KeepAliveOnce(testCtx(t), id); err != nil || r.TTL != ttl {
		t.Fatalf("KeepAliveOnce after the leader change: %+v %v", r, err)
	}
}
