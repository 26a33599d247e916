package concord_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

type varConfig struct {
	Level string `json:"level"`
	Limit int    `json:"limit"`
}

func varNew[T any](t *testing.T, n *concord.Node, key string, opts ...concord.VarOption) *concord.Var[T] {
	t.Helper()
	v, err := concord.NewVar[T](testCtx(t), n, key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// varRecv reads one value from c, or fails after d.
func varRecv[T any](t *testing.T, c <-chan T, d time.Duration) T {
	t.Helper()
	select {
	case v, ok := <-c:
		if !ok {
			t.Fatal("Changes closed")
		}
		return v
	case <-time.After(d):
		t.Fatalf("no value on Changes within %v", d)
	}
	panic("unreachable")
}

// TestVarFollowsRemoteStore: a Var on one node reflects Stores made on
// another within a deadline, and its Load never goes back, in revision or
// in value.
func TestVarFollowsRemoteStore(t *testing.T) {
	c := newCluster(t, 3)
	ctx := testCtx(t)
	writer := varNew[int](t, c.nodes[0], "cfg/n")
	reader := varNew[int](t, c.nodes[2], "cfg/n")
	if val, rev := reader.Load(); val != 0 || rev != 0 {
		t.Fatalf("Load of a missing key = %d, %d", val, rev)
	}
	const stores = 40
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var backwards error
	wg.Go(func() {
		lastVal, lastRev := 0, int64(0)
		for {
			val, rev := reader.Load()
			if rev < lastRev || val < lastVal || (rev == lastRev) != (val == lastVal) {
				backwards = errors.New("went back")
				t.Errorf("Load went from %d@%d to %d@%d", lastVal, lastRev, val, rev)
				return
			}
			lastVal, lastRev = val, rev
			select {
			case <-stop:
				return
			default:
			}
		}
	})
	var lastRev int64
	for i := 1; i <= stores; i++ {
		if err := writer.Store(ctx, i); err != nil {
			t.Fatal(err)
		}
		if val, rev := writer.Load(); val != i || rev <= lastRev {
			t.Fatalf("writer's Load after Store(%d) = %d@%d (last revision %d)", i, val, rev, lastRev)
		} else {
			lastRev = rev
		}
	}
	eventually(t, 5*time.Second, "the reader to see the last Store", func() bool {
		val, rev := reader.Load()
		return val == stores && rev == lastRev
	})
	close(stop)
	wg.Wait()
	if backwards != nil {
		t.Fatal(backwards)
	}
}

// TestVarChangesLatestWins: a reader that does not read Changes never
// holds the Var back, and when it reads it gets the latest value, then
// each later one; a delete brings the default.
func TestVarChangesLatestWins(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	def := varConfig{Level: "info", Limit: 10}
	v := varNew[varConfig](t, n, "cfg", concord.WithVarDefault(def))
	if got, rev := v.Load(); got != def || rev != 0 {
		t.Fatalf("Load of a missing key with a default = %v@%d", got, rev)
	}
	var last *concord.PutResponse
	for i := 1; i <= 100; i++ {
		last = put(t, n, "cfg", `{"level":"debug","limit":`+varItoa(i)+`}`)
	}
	eventually(t, 5*time.Second, "Load to reach the last put with Changes unread", func() bool {
		_, rev := v.Load()
		return rev == last.Revision
	})
	if got := varRecv(t, v.Changes(), time.Second); got.Limit != 100 {
		t.Fatalf("first value read from Changes = %v, want the latest (limit 100)", got)
	}
	select {
	case got := <-v.Changes():
		t.Fatalf("a second value %v without a change", got)
	default:
	}
	if err := v.Store(ctx, varConfig{"warn", 7}); err != nil {
		t.Fatal(err)
	}
	if got := varRecv(t, v.Changes(), 5*time.Second); got != (varConfig{"warn", 7}) {
		t.Fatalf("Changes after Store = %v", got)
	}
	d, err := n.Delete(ctx, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	if got := varRecv(t, v.Changes(), 5*time.Second); got != def {
		t.Fatalf("Changes after a delete = %v, want the default", got)
	}
	if got, rev := v.Load(); got != def || rev != d.Revision {
		t.Fatalf("Load after a delete = %v@%d, want the default at %d", got, rev, d.Revision)
	}
}

// TestVarUpdateIsAtomic: concurrent Updates from Vars on three nodes
// lose no increment.
func TestVarUpdateIsAtomic(t *testing.T) {
	c := newCluster(t, 3)
	ctx := testCtx(t)
	const each = 15
	var mu sync.Mutex
	var results []int
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		v := varNew[int](t, n, "counter")
		wg.Go(func() {
			for range each {
				got, err := v.Update(ctx, func(x int) (int, error) { return x + 1, nil })
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				results = append(results, got)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(results)
	for i, r := range results {
		if r != i+1 {
			t.Fatalf("Update results %v: want each of 1..%d once", results, 3*each)
		}
	}
	if got := value(t, c.nodes[1], "counter"); got != varItoa(3*each) {
		t.Fatalf("counter = %s, want %d", got, 3*each)
	}
	// An error from fn writes nothing.
	boom := errors.New("boom")
	v := varNew[int](t, c.nodes[0], "counter")
	unchanged(t, c.nodes[0], boom, func() error {
		_, err := v.Update(ctx, func(int) (int, error) { return 0, boom })
		return err
	})
}

// TestVarDecodeErrors: a value the codec cannot decode fails NewVar, and
// later is kept out of the Var (Load keeps the last good value) and
// reported by Invalid; a codec or default of another type is refused.
func TestVarDecodeErrors(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "bad", "not json")
	if _, err := concord.NewVar[varConfig](ctx, n, "bad"); !errors.Is(err, concord.ErrDecode) {
		t.Fatalf("NewVar on a value that does not decode: %v", err)
	}
	if _, err := concord.NewVar[varConfig](ctx, n, "x", concord.WithVarCodec(concord.JSON[string]())); !errors.Is(err, concord.ErrInvalidRequest) {
		t.Fatalf("NewVar with a codec of another type: %v", err)
	}
	if _, err := concord.NewVar[varConfig](ctx, n, "x", concord.WithVarDefault(3)); !errors.Is(err, concord.ErrInvalidRequest) {
		t.Fatalf("NewVar with a default of another type: %v", err)
	}
	if _, err := concord.NewVar[varConfig](ctx, n, ""); !errors.Is(err, concord.ErrEmptyKey) {
		t.Fatalf("NewVar with an empty key: %v", err)
	}

	good := put(t, n, "cfg", `{"level":"info","limit":1}`)
	v := varNew[varConfig](t, n, "cfg", concord.WithVarCodec(concord.JSON[varConfig]()))
	bad := put(t, n, "cfg", "not json")
	eventually(t, 5*time.Second, "Invalid to report the bad value", func() bool {
		return errors.Is(v.Invalid(), concord.ErrDecode)
	})
	if got, rev := v.Load(); got != (varConfig{"info", 1}) || rev != good.Revision {
		t.Fatalf("Load after a bad value = %v@%d, want the last good one at %d", got, rev, good.Revision)
	}
	select {
	case got := <-v.Changes():
		t.Fatalf("Changes sent %v for a value that does not decode", got)
	default:
	}
	unchanged(t, n, concord.ErrDecode, func() error {
		_, err := v.Update(ctx, func(c varConfig) (varConfig, error) { c.Limit++; return c, nil })
		return err
	})
	if value(t, n, "cfg") != "not json" || bad.Revision == 0 {
		t.Fatal("Update overwrote a value it could not decode")
	}
	if err := v.Store(ctx, varConfig{"info", 2}); err != nil {
		t.Fatal(err)
	}
	if v.Invalid() != nil {
		t.Fatalf("Invalid after a good Store: %v", v.Invalid())
	}
}

// TestVarStops: Close, the end of its ctx and the node's Close stop a Var:
// Done and Changes close, Err says why, Load keeps the last value.
func TestVarStops(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	v := varNew[int](t, n, "k")
	if err := v.Store(ctx, 5); err != nil {
		t.Fatal(err)
	}
	v.Close()
	v.Close()
	waitClosed(t, v.Done(), "Done after Close")
	if !errors.Is(v.Err(), concord.ErrClosed) {
		t.Fatalf("Err after Close: %v", v.Err())
	}
	if got := <-v.Changes(); got != 5 { // the change not read yet
		t.Fatalf("Changes held %d", got)
	}
	if _, ok := <-v.Changes(); ok {
		t.Fatal("Changes open after Close")
	}
	if got, _ := v.Load(); got != 5 {
		t.Fatalf("Load after Close = %d", got)
	}
	unchanged(t, n, concord.ErrClosed, func() error { return v.Store(ctx, 6) })

	cctx, cancel := context.WithCancel(ctx)
	v, err := concord.NewVar[int](cctx, n, "k")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	waitClosed(t, v.Done(), "Done after ctx ends")
	if !errors.Is(v.Err(), context.Canceled) {
		t.Fatalf("Err after ctx ends: %v", v.Err())
	}

	v = varNew[int](t, n, "k")
	n.Close()
	waitClosed(t, v.Done(), "Done after the node closes")
	if !errors.Is(v.Err(), concord.ErrClosed) {
		t.Fatalf("Err after the node closes: %v", v.Err())
	}
	if _, err := concord.NewVar[int](ctx, n, "k"); !errors.Is(err, concord.ErrClosed) {
		t.Fatalf("NewVar on a closed node: %v", err)
	}
}

func varItoa(i int) string { return strconv.Itoa(i) }
