package concord_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// electCampaign starts e.Campaign(ctx, val) and returns its result
// channel once its key exists (so campaigners started one after the other
// queue in that order).
func electCampaign[T any](t *testing.T, ctx context.Context, e *concord.Election[T], val T) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- e.Campaign(ctx, val) }()
	eventually(t, 10*time.Second, "the campaign key", func() bool { return e.Key() != "" })
	return errc
}

// electResult waits for a Campaign result.
func electResult(t *testing.T, errc <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: Campaign still blocked after 20s", what)
		return nil
	}
}

// electBlocked fails if errc delivers now.
func electBlocked(t *testing.T, errc <-chan error, what string) {
	t.Helper()
	select {
	case err := <-errc:
		t.Fatalf("%s: Campaign returned %v, want it blocked", what, err)
	default:
	}
}

// electLeader returns the current leader, failing on error.
func electLeader[T any](t *testing.T, e *concord.Election[T]) concord.Leader[T] {
	t.Helper()
	l, err := e.Leader(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestElectionCampaignOrder: campaigners lead one at a time in the order
// they campaigned; each new leader's token is above the last; Leader
// reports the leader's value and IsLeader only the leader.
func TestElectionCampaignOrder(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	var es []*concord.Election[int]
	var errcs []<-chan error
	for i := range 3 {
		e := concord.NewElection[int](newSession(t, n), "elect/order")
		es = append(es, e)
		errcs = append(errcs, electCampaign(t, ctx, e, i))
	}
	if err := electResult(t, errcs[0], "first"); err != nil {
		t.Fatal(err)
	}
	var last int64
	for i, e := range es {
		if i > 0 {
			if err := electResult(t, errcs[i], fmt.Sprint("campaigner ", i)); err != nil {
				t.Fatal(err)
			}
		}
		for j := i + 1; j < len(es); j++ {
			electBlocked(t, errcs[j], fmt.Sprintf("campaigner %d while %d leads", j, i))
		}
		l := electLeader(t, e)
		if l.Value != i || l.Key != e.Key() || l.Token != e.Token() || l.Token <= last {
			t.Fatalf("leader %+v, want value %d key %s token > %d", l, i, e.Key(), last)
		}
		last = l.Token
		for j, other := range es {
			if other.IsLeader() != (i == j) {
				t.Fatalf("while %d leads, campaigner %d IsLeader %v", i, j, other.IsLeader())
			}
		}
		if err := e.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		if e.IsLeader() {
			t.Fatal("IsLeader after Resign")
		}
	}
	if _, err := es[0].Leader(ctx); !errors.Is(err, concord.ErrNoLeader) {
		t.Fatalf("Leader with no campaigner: %v, want ErrNoLeader", err)
	}
}

// TestElectionProclaim: the leader's Proclaim changes the value Leader
// reports; a campaigner that does not lead, or whose key is gone, gets
// ErrNotLeader and writes nothing.
func TestElectionProclaim(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	a := concord.NewElection[string](newSession(t, n), "elect/proclaim")
	b := concord.NewElection[string](newSession(t, n), "elect/proclaim")
	if err := b.Proclaim(ctx, "b"); !errors.Is(err, concord.ErrNotLeader) {
		t.Fatalf("Proclaim before Campaign: %v, want ErrNotLeader", err)
	}
	if err := a.Campaign(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	token := electLeader(t, a).Token
	if err := a.Proclaim(ctx, "a2"); err != nil {
		t.Fatal(err)
	}
	if l := electLeader(t, b); l.Value != "a2" || l.Token != token {
		t.Fatalf("after Proclaim: %+v, want a2 with token %d", l, token)
	}
	errc := electCampaign(t, ctx, b, "b")
	if err := b.Proclaim(ctx, "b2"); !errors.Is(err, concord.ErrNotLeader) {
		t.Fatalf("Proclaim while waiting: %v, want ErrNotLeader", err)
	}
	// Someone else deletes a's key: b takes over, and a's Proclaim must
	// neither succeed nor touch b's key.
	if _, err := n.Delete(ctx, a.Key()); err != nil {
		t.Fatal(err)
	}
	if err := electResult(t, errc, "b"); err != nil {
		t.Fatal(err)
	}
	if err := a.Proclaim(ctx, "a3"); !errors.Is(err, concord.ErrNotLeader) {
		t.Fatalf("Proclaim after losing the key: %v, want ErrNotLeader", err)
	}
	if a.IsLeader() {
		t.Fatal("IsLeader after a refused Proclaim")
	}
	if l := electLeader(t, a); l.Value != "b" || l.Key != b.Key() || l.Token <= token {
		t.Fatalf("leader %+v, want b's", l)
	}
	if got := get(t, n, "elect/proclaim/", concord.WithPrefix()).Count; got != 1 {
		t.Fatalf("%d campaign keys, want 1 (b's)", got)
	}
}

// TestElectionFailedCampaignLeavesNothing: a Campaign cancelled while it
// waits, or failing because its session ended (revoked, or orphaned with
// its lease still alive), returns the error and removes its key
// (etcd#21128), so it never becomes leader later.
func TestElectionFailedCampaignLeavesNothing(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	lead := concord.NewElection[string](newSession(t, n), "elect/fail")
	if err := lead.Campaign(ctx, "lead"); err != nil {
		t.Fatal(err)
	}
	wantOnlyLeader := func(what string) {
		t.Helper()
		if r := get(t, n, "elect/fail/", concord.WithPrefix()); r.Count != 1 || string(r.Kvs[0].Key) != lead.Key() {
			t.Fatalf("after %s: keys %v, want only the leader's", what, keys(r.Kvs))
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	e := concord.NewElection[string](newSession(t, n), "elect/fail")
	errc := electCampaign(t, cctx, e, "cancelled")
	cancel()
	if err := electResult(t, errc, "cancelled"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Campaign: %v, want context.Canceled", err)
	}
	wantOnlyLeader("a cancelled Campaign")

	s := newSession(t, n)
	e = concord.NewElection[string](s, "elect/fail")
	errc = electCampaign(t, ctx, e, "orphaned")
	s.Orphan() // Done closes, the lease lives on for its TTL
	if err := electResult(t, errc, "orphaned"); !errors.Is(err, concord.ErrSessionExpired) {
		t.Fatalf("Campaign on an orphaned session: %v, want ErrSessionExpired", err)
	}
	wantOnlyLeader("an orphaned session's Campaign")
	if err := e.Campaign(ctx, "again"); !errors.Is(err, concord.ErrSessionExpired) {
		t.Fatalf("Campaign on an ended session: %v, want ErrSessionExpired", err)
	}
	wantOnlyLeader("a Campaign on an ended session")

	s = newSession(t, n)
	e = concord.NewElection[string](s, "elect/fail")
	errc = electCampaign(t, ctx, e, "revoked")
	if err := n.Revoke(ctx, s.Lease()); err != nil {
		t.Fatal(err)
	}
	if err := electResult(t, errc, "revoked"); !errors.Is(err, concord.ErrSessionExpired) {
		t.Fatalf("Campaign whose lease was revoked: %v, want ErrSessionExpired", err)
	}
	wantOnlyLeader("a revoked session's Campaign")

	e = concord.NewElection[string](newSession(t, n), "elect/fail")
	errc = electCampaign(t, ctx, e, "resigned")
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := electResult(t, errc, "resigned"); !errors.Is(err, concord.ErrNotLeader) {
		t.Fatalf("Campaign resigned while waiting: %v, want ErrNotLeader", err)
	}
	wantOnlyLeader("a Resign while campaigning")
}

// electIntCodec stores ints as decimal text: a codec other than JSON.
type electIntCodec struct{}

func (electIntCodec) Encode(v int) ([]byte, error) { return []byte("n=" + strconv.Itoa(v)), nil }
func (electIntCodec) Decode(b []byte) (int, error) {
	s, ok := strings.CutPrefix(string(b), "n=")
	if !ok {
		return 0, fmt.Errorf("no n= prefix in %q", b)
	}
	return strconv.Atoi(s)
}

// TestElectionCodec: values go through the election's codec; a value
// that does not decode gives ErrDecode, one that does not encode
// ErrInvalidRequest with nothing written; so does every Campaign with a
// codec of another type.
func TestElectionCodec(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	e := concord.NewElection[int](newSession(t, n), "elect/codec", concord.WithElectionCodec[int](electIntCodec{}))
	if err := e.Campaign(ctx, 42); err != nil {
		t.Fatal(err)
	}
	if got := value(t, n, e.Key()); got != "n=42" {
		t.Fatalf("stored %q, want n=42", got)
	}
	if l := electLeader(t, e); l.Value != 42 {
		t.Fatalf("leader value %d, want 42", l.Value)
	}
	put(t, n, e.Key(), "garbage", concord.WithIgnoreLease())
	if _, err := e.Leader(ctx); !errors.Is(err, concord.ErrDecode) {
		t.Fatalf("Leader with a bad value: %v, want ErrDecode", err)
	}
	f := concord.NewElection[float64](newSession(t, n), "elect/codec-bad")
	unchanged(t, n, concord.ErrInvalidRequest, func() error { return f.Campaign(ctx, math.NaN()) })
	if f.Key() != "" {
		t.Fatalf("a refused Campaign left key %q", f.Key())
	}
	w := concord.NewElection[string](newSession(t, n), "elect/codec-wrong", concord.WithElectionCodec[int](electIntCodec{}))
	unchanged(t, n, concord.ErrInvalidRequest, func() error { return w.Campaign(ctx, "x") })
	if w.Key() != "" {
		t.Fatalf("a Campaign with a wrong codec left key %q", w.Key())
	}
	// Leader fails alike with a wrong codec, whether someone leads (e, of
	// "elect/codec") or not: not with ErrNoLeader or ErrDecode.
	led := concord.NewElection[string](newSession(t, n), "elect/codec", concord.WithElectionCodec[int](electIntCodec{}))
	for _, w := range []*concord.Election[string]{w, led} {
		_, err := w.Leader(ctx)
		wantErr(t, err, concord.ErrInvalidRequest)
		if errors.Is(err, concord.ErrNoLeader) || errors.Is(err, concord.ErrDecode) {
			t.Fatalf("Leader with a wrong codec: %v, want ErrInvalidRequest alone", err)
		}
		// Observe has nothing to decode with: its channel closes at once.
		if l, open := <-w.Observe(ctx); open {
			t.Fatalf("Observe with a wrong codec delivered %+v", l)
		}
	}
}
