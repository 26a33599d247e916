package concord_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// localET is the election timeout of DefaultLocalConfig.
const localET = 100 * time.Millisecond

func grant(t *testing.T, n *concord.Node, ttl time.Duration) concord.LeaseID {
	t.Helper()
	id, err := n.Grant(testCtx(t), ttl)
	if err != nil {
		t.Fatalf("Grant(%v): %v", ttl, err)
	}
	return id
}

// gone waits until none of keys exists on n and returns when that was
// first seen.
func gone(t *testing.T, n *concord.Node, d time.Duration, keys ...string) time.Time {
	t.Helper()
	eventually(t, d, fmt.Sprintf("%v to be deleted", keys), func() bool {
		for _, k := range keys {
			if len(get(t, n, k, concord.WithSerializable()).Kvs) > 0 {
				return false
			}
		}
		return true
	})
	return time.Now()
}

// keptAlive grants a lease of ttl on n, attaches the key "held" to it, and
// keeps it alive from ka until stop is called.
func keptAlive(t *testing.T, n, ka *concord.Node, ttl time.Duration) (concord.LeaseID, <-chan concord.LeaseKeepAliveResponse, context.CancelFunc) {
	t.Helper()
	id := grant(t, n, ttl)
	put(t, n, "held", "v", concord.WithLease(id))
	ctx, stop := context.WithCancel(testCtx(t))
	t.Cleanup(stop)
	ch, err := ka.KeepAlive(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return id, ch, stop
}

// TestLeaseExpiryDeletesKeys: a lease nobody keeps alive expires after its
// TTL, not before, and within TTL + 1 s; its keys go in one revision.
func TestLeaseExpiryDeletesKeys(t *testing.T) {
	n := openOne(t)
	const ttl = time.Second
	start := time.Now()
	id := grant(t, n, ttl)
	var last int64
	for _, k := range []string{"k/a", "k/b", "k/c"} {
		last = put(t, n, k, "v", concord.WithLease(id)).Revision
	}
	put(t, n, "other", "v")
	last++
	at := gone(t, n, ttl+2*time.Second, "k/a", "k/b", "k/c")
	if d := at.Sub(start); d < ttl || d > ttl+time.Second {
		t.Fatalf("keys gone after %v, want within [%v, %v]", d, ttl, ttl+time.Second)
	}
	// One revision deleted all three: just after the last write.
	if g := get(t, n, "k/", concord.WithPrefix(), concord.WithRev(last+1)); len(g.Kvs) != 0 || g.Revision != last+1 {
		t.Fatalf("at revision %d: %d keys, current revision %d", last+1, len(g.Kvs), g.Revision)
	}
	if g := get(t, n, "k/", concord.WithPrefix(), concord.WithRev(last)); len(g.Kvs) != 3 {
		t.Fatalf("at revision %d: %v, want a, b and c", last, keys(g.Kvs))
	}
	if value(t, n, "other") != "v" {
		t.Fatal("a key without the lease was deleted")
	}
	if _, err := n.TimeToLive(testCtx(t), id, false); err == nil {
		t.Fatal("TimeToLive of an expired lease succeeded")
	}
}

// TestRevokeDeletesKeysInOneRevision: Revoke, from a follower, deletes
// every key attached in one revision, and the lease is gone everywhere.
func TestRevokeDeletesKeysInOneRevision(t *testing.T) {
	c := newCluster(t, 3)
	ctx := testCtx(t)
	f := c.nodes[(c.leader()+1)%3]
	id := grant(t, f, time.Minute)
	for i := range 10 {
		put(t, c.nodes[i%3], fmt.Sprintf("k/%d", i), "v", concord.WithLease(id))
	}
	put(t, f, "k/free", "v")
	st, err := f.TimeToLive(ctx, id, true)
	if err != nil || len(st.Keys) != 10 || st.GrantedTTL != time.Minute || st.TTL <= 0 || st.TTL > time.Minute {
		t.Fatalf("TimeToLive: %+v %v", st, err)
	}
	before := get(t, f, "k/").Revision
	if err := f.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		g := get(t, n, "k/", concord.WithPrefix())
		if !slices.Equal(keys(g.Kvs), []string{"k/free"}) || g.Revision != before+1 {
			t.Fatalf("after revoke: %v at revision %d, want [k/free] at %d", keys(g.Kvs), g.Revision, before+1)
		}
	}
	wantErr(t, f.Revoke(ctx, id), concord.ErrLeaseNotFound)
	_, err = c.nodes[0].TimeToLive(ctx, id, false)
	wantErr(t, err, concord.ErrLeaseNotFound)
	_, err = c.nodes[1].KeepAliveOnce(ctx, id)
	wantErr(t, err, concord.ErrLeaseNotFound)
}

// TestLeaseBadInputs: each is refused with a clear error and changes
// neither the revision nor the leases.
func TestLeaseBadInputs(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	id := grant(t, n, time.Minute)
	leases := func() []concord.LeaseID {
		ls, err := n.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []concord.LeaseID
		for _, l := range ls {
			ids = append(ids, l.ID)
		}
		return ids
	}
	want := leases()
	if !slices.Equal(want, []concord.LeaseID{id}) {
		t.Fatalf("Leases: %v, want [%d]", want, id)
	}
	for name, tc := range map[string]struct {
		want error
		f    func() error
	}{
		"grant zero":        {concord.ErrInvalidRequest, func() error { _, err := n.Grant(ctx, 0); return err }},
		"grant negative":    {concord.ErrInvalidRequest, func() error { _, err := n.Grant(ctx, -time.Second); return err }},
		"grant under floor": {concord.ErrInvalidRequest, func() error { _, err := n.Grant(ctx, localET-1); return err }},
		"put unknown lease": {concord.ErrLeaseNotFound, func() error { _, err := n.Put(ctx, "k", "v", concord.WithLease(id+1)); return err }},
		"put negative lease": {concord.ErrLeaseNotFound, func() error {
			_, err := n.Put(ctx, "k", "v", concord.WithLease(-3))
			return err
		}},
		"txn unknown lease": {concord.ErrLeaseNotFound, func() error {
			_, err := n.Txn(ctx).Then(concord.OpPut("k", "v"), concord.OpPut("k2", "v", concord.WithLease(id+1))).Commit()
			return err
		}},
		"create unknown lease": {concord.ErrLeaseNotFound, func() error {
			_, err := n.Create(ctx, "k", "v", concord.WithLease(id+1))
			return err
		}},
		"revoke unknown":  {concord.ErrLeaseNotFound, func() error { return n.Revoke(ctx, id+1) }},
		"revoke zero":     {concord.ErrLeaseNotFound, func() error { return n.Revoke(ctx, concord.NoLease) }},
		"keep alive once": {concord.ErrLeaseNotFound, func() error { _, err := n.KeepAliveOnce(ctx, id+1); return err }},
		"keep alive":      {concord.ErrLeaseNotFound, func() error { _, err := n.KeepAlive(ctx, id+1); return err }},
		"time to live":    {concord.ErrLeaseNotFound, func() error { _, err := n.TimeToLive(ctx, id+1, true); return err }},
		"ttl zero":        {concord.ErrInvalidRequest, func() error { _, err := n.Put(ctx, "k", "v", concord.WithTTL(0)); return err }},
		"ttl under floor": {concord.ErrInvalidRequest, func() error { _, err := n.Put(ctx, "k", "v", concord.WithTTL(time.Millisecond)); return err }},
		"ttl with lease": {concord.ErrInvalidRequest, func() error {
			_, err := n.Put(ctx, "k", "v", concord.WithTTL(time.Second), concord.WithLease(id))
			return err
		}},
		"ttl in a txn": {concord.ErrInvalidRequest, func() error {
			_, err := n.Txn(ctx).Then(concord.OpPut("k", "v", concord.WithTTL(time.Second))).Commit()
			return err
		}},
		"ttl on a bad put":  {concord.ErrEmptyKey, func() error { _, err := n.Put(ctx, "", "v", concord.WithTTL(time.Second)); return err }},
		"session bad ttl":   {concord.ErrInvalidRequest, func() error { _, err := concord.NewSession(n, concord.WithSessionTTL(0)); return err }},
		"session bad lease": {concord.ErrLeaseNotFound, func() error { _, err := concord.NewSession(n, concord.WithSessionLease(id+1)); return err }},
	} {
		t.Run(name, func(t *testing.T) {
			unchanged(t, n, tc.want, tc.f)
			if got := leases(); !slices.Equal(got, want) {
				t.Fatalf("leases %v, want %v", got, want)
			}
		})
	}
}

// TestKeepAliveFromFollower: keep-alives from a follower keep a 1 s lease
// alive for 10 s, one response about every TTL/3, and write no raft entry
// while they are on time.
func TestKeepAliveFromFollower(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	f := c.nodes[(lead+1)%3]
	const ttl = time.Second
	id, ch, cancel := keptAlive(t, f, f, ttl)
	commit := c.nodes[lead].Status().CommitIndex
	deadline := time.After(10 * ttl)
	responses := 0
wait:
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatal("KeepAlive channel closed")
			}
			if r.ID != id || r.TTL != ttl {
				t.Fatalf("response %+v", r)
			}
			responses++
		case <-deadline:
			break wait
		}
	}
	if value(t, c.nodes[lead], "held") != "v" {
		t.Fatal("the key of a kept-alive lease is gone")
	}
	// One renewal every TTL/3: about 30 in 10 s.
	if responses < 20 || responses > 40 {
		t.Fatalf("%d responses in 10 s, want about 30", responses)
	}
	// Keep-alives renew in memory: on time, they cost no entry (the bench
	// measures 0/s); one late enough to be checkpointed costs two, which a
	// loaded machine may cause. One per keep-alive would be 30 or more.
	if d := c.nodes[lead].Status().CommitIndex - commit; d > 10 {
		t.Fatalf("keep-alives wrote %d raft entries", d)
	} else {
		t.Logf("%d responses, %d raft entries", responses, d)
	}
	cancel()
	for range ch {
	}
}

// TestLeaseSurvivesLeaderClose: while a follower keeps a lease alive, the
// leader is closed; the lease survives the leader change.
func TestLeaseSurvivesLeaderClose(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	f := c.nodes[(lead+1)%3]
	const ttl = time.Second
	id, ch, _ := keptAlive(t, f, f, ttl)
	<-ch
	<-ch // renewed once after the first answer
	go func() {
		for range ch {
		}
	}()
	c.close(lead)
	newLead := c.leader()
	// Let three TTLs pass under the new leader: that is the test.
	time.Sleep(3 * ttl)
	if value(t, c.nodes[newLead], "held") != "v" {
		t.Fatal("the lease did not survive the leader change")
	}
	st, err := f.TimeToLive(testCtx(t), id, false)
	if err != nil || st.TTL <= 0 {
		t.Fatalf("TimeToLive: %+v %v", st, err)
	}
}

// TestLeaseGoneAfterKeepAlivesStop: once keep-alives stop, the lease goes
// no earlier than what it had left and within that plus the election
// timeout plus 1 s, with or without a leader change.
func TestLeaseGoneAfterKeepAlivesStop(t *testing.T) {
	for _, change := range []bool{false, true} {
		t.Run(fmt.Sprintf("leaderChange=%v", change), func(t *testing.T) {
			c := newCluster(t, 3)
			lead := c.leader()
			fi := (lead + 1) % 3
			if change {
				fi = (lead + 2) % 3 // survives, while the other follower keeps alive
			}
			f := c.nodes[fi]
			ka := c.nodes[(lead+1)%3]
			const ttl = time.Second
			id, ch, cancel := keptAlive(t, f, ka, ttl)
			for range 4 {
				<-ch
			}
			cancel()
			for range ch {
			}
			st, err := f.TimeToLive(testCtx(t), id, false)
			if err != nil {
				t.Fatal(err)
			}
			stopped, left := time.Now(), st.TTL
			if change {
				c.close(lead)
			}
			at := gone(t, f, left+localET+2*time.Second, "held")
			if d := at.Sub(stopped); d < left-50*time.Millisecond || d > left+localET+time.Second {
				t.Fatalf("gone %v after keep-alives stopped with %v left, want within [%v, %v]",
					d, left, left, left+localET+time.Second)
			} else {
				t.Logf("gone %v after keep-alives stopped with %v left", d, left)
			}
		})
	}
}

// TestPutWithTTL: WithTTL gives the key a lease of its own: it goes ttl
// after its last put with a TTL; Create, CompareAndSwap and PutSequential
// take it too.
func TestPutWithTTL(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	const ttl = time.Second
	start := time.Now()
	put(t, n, "t", "1", concord.WithTTL(ttl))
	kv := get(t, n, "t").Kvs[0]
	if kv.Lease == concord.NoLease {
		t.Fatal("a put WithTTL has no lease")
	}
	if st, err := n.TimeToLive(ctx, kv.Lease, true); err != nil || st.GrantedTTL != ttl || len(st.Keys) != 1 {
		t.Fatalf("its lease: %+v %v", st, err)
	}
	if _, err := n.Create(ctx, "c", "1", concord.WithTTL(ttl)); err != nil {
		t.Fatal(err)
	}
	seq, _, err := n.PutSequential(ctx, "q/", "1", concord.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	// A second put with a TTL before the first expires moves the key to a
	// new lease: it outlives the first.
	time.Sleep(ttl/2 - time.Since(start)) // time passing is the scenario
	again := time.Now()
	if _, err := n.CompareAndSwap(ctx, "t", "1", "2", concord.WithTTL(ttl)); err != nil {
		t.Fatal(err)
	}
	gone(t, n, 2*ttl, "c", seq)
	if value(t, n, "t") != "2" {
		t.Fatalf("the re-put key went with its first lease, %v after it", time.Since(start))
	}
	at := gone(t, n, 2*ttl, "t")
	if d := at.Sub(again); d < ttl || d > ttl+time.Second {
		t.Fatalf("re-put key gone %v after its last put, want within [%v, %v]", d, ttl, ttl+time.Second)
	}
}
