package concord_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// TestClaimTakesFirstFreeKey: a claim takes the first candidate without a
// marker, creates the marker and touches the key, at one new revision; a
// claim with nothing free writes nothing; a deleted marker frees its key.
func TestClaimTakesFirstFreeKey(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	for _, k := range []string{"q/1", "q/2", "q/3"} {
		put(t, n, k, "job "+k)
	}
	put(t, n, "c/1", "someone") // q/1 is taken
	before := n.Status().Revision
	r, err := n.Claim(ctx, "q/", "c/", "me", concord.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if r.Kv == nil || string(r.Kv.Key) != "q/2" || string(r.Kv.Value) != "job q/2" || r.Kv.Version != 2 ||
		r.Kv.ModRevision != before+1 || r.Header.Revision != before+1 {
		t.Fatalf("claim: %+v kv %+v, want q/2 version 2 at %d", r, r.Kv, before+1)
	}
	if string(r.Marker.Key) != "c/2" || string(r.Marker.Value) != "me" || r.Marker.CreateRevision != before+1 {
		t.Fatalf("marker %+v", r.Marker)
	}
	if got := value(t, n, "c/2"); got != "me" {
		t.Fatalf("c/2 = %q", got)
	}
	if _, err := n.Claim(ctx, "q/", "c/", "me", concord.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	rev := n.Status().Revision
	r, err = n.Claim(ctx, "q/", "c/", "me", concord.WithPrefix())
	if err != nil || r.Kv != nil || r.Marker != nil || r.Header.Revision != rev || n.Status().Revision != rev {
		t.Fatalf("claim with nothing free: %+v %v, revision %d, want no key at %d", r, err, n.Status().Revision, rev)
	}
	if _, err := n.Delete(ctx, "c/1"); err != nil {
		t.Fatal(err)
	}
	r, err = n.Claim(ctx, "q/", "c/", "again", concord.WithPrefix())
	if err != nil || r.Kv == nil || string(r.Kv.Key) != "q/1" || r.Kv.Version != 2 {
		t.Fatalf("claim after the marker's delete: %+v %v", r, err)
	}
}

// TestClaimInTxnAndCounterOps: OpClaim and OpAdd run inside a Txn, at the
// Txn's one revision, and their responses come back through OpResponse.
func TestClaimInTxnAndCounterOps(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "jobs/a", "A")
	resp, err := n.Txn(ctx).If(concord.Compare(concord.Value("jobs/a"), "=", "A")).Then(
		concord.OpClaim("jobs/", "owners/", "w1", concord.WithPrefix()),
		concord.OpAdd("claimed", 1),
		concord.OpGet("owners/a"),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
	c, a := resp.Responses[0].Claim(), resp.Responses[1].Add()
	if !resp.Succeeded || c == nil || a == nil || resp.Responses[0].Put() != nil {
		t.Fatalf("txn: %+v", resp)
	}
	if string(c.Kv.Key) != "jobs/a" || c.Kv.ModRevision != resp.Revision || a.Value != 1 || a.Kv.ModRevision != resp.Revision {
		t.Fatalf("claim %+v, add %+v at %d", c.Kv, a.Kv, resp.Revision)
	}
	if g := resp.Responses[2].Get(); len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "w1" {
		t.Fatalf("the txn's get after its claim: %+v", g)
	}
	counter := concord.NewCounter(n, "claimed")
	if v, err := counter.Add(ctx, 41); err != nil || v != 42 {
		t.Fatalf("Add: %d, %v", v, err)
	}
	if v, err := counter.Load(ctx); err != nil || v != 42 {
		t.Fatalf("Load: %d, %v", v, err)
	}
	if v, err := concord.NewCounter(n, "never").Load(ctx); err != nil || v != 0 {
		t.Fatalf("Load of a missing key: %d, %v", v, err)
	}
}

// TestClaimBadInputChangesNothing: bad claims and adds get their error
// and the revision does not move.
func TestClaimBadInputChangesNothing(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "q/1", "job")
	put(t, n, "text", "abc")
	put(t, n, "max", "9223372036854775807")
	long := strings.Repeat("k", 1537)
	claim := func(key, marker string, opts ...concord.OpOption) func() error {
		return func() error { _, err := n.Claim(ctx, key, marker, "v", opts...); return err }
	}
	add := func(key string, delta int64) func() error {
		return func() error { _, err := concord.NewCounter(n, key).Add(ctx, delta); return err }
	}
	for name, tc := range map[string]struct {
		want error
		f    func() error
	}{
		"claim empty key":        {concord.ErrEmptyKey, claim("", "c/")},
		"claim empty marker":     {concord.ErrEmptyKey, claim("q/", "", concord.WithPrefix())},
		"claim key too large":    {concord.ErrKeyTooLarge, claim(long, "c/")},
		"claim marker too large": {concord.ErrKeyTooLarge, claim("q/", long, concord.WithPrefix())},
		"claim marker is key":    {concord.ErrInvalidRequest, claim("q/1", "q/1")},
		"claim markers in range": {concord.ErrInvalidRequest, claim("q/", "q/c/", concord.WithPrefix())},
		"claim all keys":         {concord.ErrInvalidRequest, claim("", "c/", concord.WithPrefix())},
		"claim unknown lease":    {concord.ErrLeaseNotFound, claim("q/", "c/", concord.WithPrefix(), concord.WithLease(42))},
		"claim unknown lease, nothing free": {concord.ErrLeaseNotFound,
			claim("none/", "c/", concord.WithPrefix(), concord.WithLease(42))},
		"claim ttl too short": {concord.ErrInvalidRequest, claim("q/", "c/", concord.WithPrefix(), concord.WithTTL(time.Millisecond))},
		"claim ttl in txn": {concord.ErrInvalidRequest, func() error {
			_, err := n.Txn(ctx).Then(concord.OpClaim("q/", "c/", "v", concord.WithPrefix(), concord.WithTTL(time.Minute))).Commit()
			return err
		}},
		"claim and write its marker in a txn": {concord.ErrInvalidRequest, func() error {
			_, err := n.Txn(ctx).Then(concord.OpClaim("q/", "c/", "v", concord.WithPrefix()), concord.OpPut("c/1", "x")).Commit()
			return err
		}},
		"add empty key":      {concord.ErrEmptyKey, add("", 1)},
		"add key too large":  {concord.ErrKeyTooLarge, add(long, 1)},
		"add to non-integer": {concord.ErrInvalidRequest, add("text", 1)},
		"add overflow":       {concord.ErrInvalidRequest, add("max", 1)},
		"add unknown lease": {concord.ErrLeaseNotFound, func() error {
			_, err := n.Txn(ctx).Then(concord.OpAdd("n", 1, concord.WithLease(42))).Commit()
			return err
		}},
	} {
		t.Run(name, func(t *testing.T) { unchanged(t, n, tc.want, tc.f) })
	}
	if _, err := concord.NewCounter(n, "text").Load(ctx); !errors.Is(err, concord.ErrDecode) {
		t.Fatalf("Load of a non-integer: %v, want ErrDecode", err)
	}
}

// TestClaimWithTTL: WithTTL gives the marker a lease of its own, so the
// claim lapses by itself (a visibility timeout).
func TestClaimWithTTL(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "q/1", "job")
	r, err := n.Claim(ctx, "q/", "c/", "me", concord.WithPrefix(), concord.WithTTL(time.Second))
	if err != nil || r.Marker == nil || r.Marker.Lease == concord.NoLease {
		t.Fatalf("claim: %+v %v", r, err)
	}
	eventually(t, 10*time.Second, "the marker to expire", func() bool { return value(t, n, "c/1") == "<none>" })
	r, err = n.Claim(ctx, "q/", "c/", "me", concord.WithPrefix())
	if err != nil || r.Kv == nil || r.Kv.Version != 3 {
		t.Fatalf("claim after expiry: %+v %v", r, err)
	}
}

// TestClaimWatchedAsTwoPuts: a watch from before a claim sees it as two
// put events at one revision, the marker's and the claimed key's.
func TestClaimWatchedAsTwoPuts(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	start := put(t, n, "w/q/1", "job").Revision
	r, err := n.Claim(ctx, "w/q/", "w/c/", "me", concord.WithPrefix())
	if err != nil || r.Kv == nil {
		t.Fatalf("claim: %+v %v", r, err)
	}
	wc := n.Watch(ctx, "w/", concord.WithPrefix(), concord.WithRev(start+1), concord.WithPrevKV())
	var got []string
	for len(got) < 2 {
		resp, ok := <-wc
		if !ok || resp.Err() != nil {
			t.Fatalf("watch ended: %v", resp.Err())
		}
		for _, ev := range resp.Events {
			s := fmt.Sprintf("%v %s=%s m=%d v=%d", ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision, ev.Kv.Version)
			if ev.PrevKv != nil {
				s += fmt.Sprintf(" prev v=%d", ev.PrevKv.Version)
			}
			got = append(got, s)
		}
	}
	want := []string{
		fmt.Sprintf("PUT w/c/1=me m=%d v=1", r.Header.Revision),
		fmt.Sprintf("PUT w/q/1=job m=%d v=2 prev v=1", r.Header.Revision),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}
