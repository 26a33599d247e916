package concord_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// TestLoneNodeLeadsAtOnce: with a tick of an hour no election timeout can
// pass during the test, so a lone node that is ready led at once.
func TestLoneNodeLeadsAtOnce(t *testing.T) {
	for name, edit := range map[string]func(*concord.Config){
		"in memory, no cluster": func(*concord.Config) {},
		"data dir, named cluster": func(c *concord.Config) {
			c.DataDir = t.TempDir()
			c.InitialCluster = map[string]string{"solo": "127.0.0.1:0"}
		},
		"no cluster, peer address": func(c *concord.Config) { c.PeerAddr = "127.0.0.1:0" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := concord.DefaultConfig()
			cfg.Name = "solo"
			cfg.TickInterval = time.Hour
			edit(&cfg)
			n := openReady(t, cfg)
			if !n.IsLeader() {
				t.Fatal("a ready lone node does not lead")
			}
			l, ok := n.Leader()
			st := n.Status()
			if !ok || l.ID != st.ID || l.Name != "solo" || !l.IsLeader || st.Leader != st.ID {
				t.Fatalf("Leader() = %+v %v, status %+v", l, ok, st)
			}
			if _, err := n.Put(testCtx(t), "k", "v"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCallsWaitForReady: a call made before the node is ready waits for
// it, within its own ctx: here a member of a 3-node cluster alone never
// gets ready, and every call ends with ErrTimeout.
func TestCallsWaitForReady(t *testing.T) {
	addrs := freeAddrs(t, 3)
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "a"
	cfg.InitialCluster = map[string]string{"a": addrs[0], "b": addrs[1], "c": addrs[2]}
	n, err := concord.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	for name, f := range map[string]func() error{
		"Ready":   func() error { return n.Ready(short()) },
		"Put":     func() error { _, err := n.Put(short(), "k", "v"); return err },
		"Get":     func() error { _, err := n.Get(short(), "k"); return err },
		"Members": func() error { _, err := n.Members(short()); return err },
		"Txn":     func() error { _, err := n.Txn(short()).Commit(); return err },
	} {
		t.Run(name, func(t *testing.T) { wantErr(t, f(), concord.ErrTimeout, context.DeadlineExceeded) })
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = n.Ready(ctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, concord.ErrTimeout) {
		t.Fatalf("a canceled ctx gives %v, want context.Canceled alone", err)
	}
	if n.IsLeader() {
		t.Fatal("a lone member of a 3-node cluster leads")
	}
}

func TestCloseIdempotentThenErrClosed(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "k", "v")
	before := n.Status()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, f := range map[string]func() error{
		"Ready":              func() error { return n.Ready(ctx) },
		"Put":                func() error { _, err := n.Put(ctx, "k", "v"); return err },
		"Get":                func() error { _, err := n.Get(ctx, "k"); return err },
		"Get serializable":   func() error { _, err := n.Get(ctx, "k", concord.WithSerializable()); return err },
		"Delete":             func() error { _, err := n.Delete(ctx, "k"); return err },
		"Txn":                func() error { _, err := n.Txn(ctx).Then(concord.OpGet("k")).Commit(); return err },
		"Compact":            func() error { return n.Compact(ctx, 1) },
		"Create":             func() error { _, err := n.Create(ctx, "x", "v"); return err },
		"CompareAndSwap":     func() error { _, err := n.CompareAndSwap(ctx, "k", "v", "w"); return err },
		"CompareAndDelete":   func() error { _, err := n.CompareAndDelete(ctx, "k", "v"); return err },
		"PutSequential":      func() error { _, _, err := n.PutSequential(ctx, "q/", "v"); return err },
		"Members":            func() error { _, err := n.Members(ctx); return err },
		"TransferLeadership": func() error { return n.TransferLeadership(ctx, before.ID) },
		"Leave":              func() error { return n.Leave(ctx) },
	} {
		if err := f(); !errors.Is(err, concord.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if n.IsLeader() {
		t.Error("IsLeader after Close")
	}
	if _, ok := n.Leader(); ok {
		t.Error("Leader known after Close")
	}
	if st := n.Status(); st.Revision != before.Revision || st.ID != before.ID {
		t.Errorf("Status after Close = %+v, want the last one %+v", st, before)
	}
}

// TestCloseDuringCalls: calls in flight when Close runs end with ErrClosed
// or succeed; none hangs or panics.
func TestCloseDuringCalls(t *testing.T) {
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "solo"
	cfg.DataDir = t.TempDir()
	n := openReady(t, cfg)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for {
				var err error
				if i%2 == 0 {
					_, err = n.Put(ctx, "k", "v")
				} else {
					_, err = n.Get(ctx, "k")
				}
				if errors.Is(err, concord.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("call during Close: %v", err)
					return
				}
			}
		})
	}
	put(t, n, "k", "v")
	n.Close()
	wg.Wait()
}

func TestRestartKeepsDataAndRevision(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "data")
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "solo"
	cfg.DataDir = dir
	ctx := testCtx(t)
	n, err := concord.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := n.Put(ctx, "k", strings.Repeat("x", i)); err != nil {
			t.Fatal(err)
		}
	}
	put(t, n, "other", "o")
	if err := n.Compact(ctx, 10); err != nil {
		t.Fatal(err)
	}
	before := n.Status()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = openReady(t, cfg)
	st := n.Status()
	if st.Revision != before.Revision || st.CompactRevision != 10 || st.ID != before.ID {
		t.Fatalf("after restart %+v, before %+v", st, before)
	}
	g := get(t, n, "k")
	if kv := g.Kvs[0]; string(kv.Value) != strings.Repeat("x", 19) || kv.Version != 20 || g.Revision != before.Revision {
		t.Fatalf("k after restart: %+v", *kv)
	}
	if v := value(t, n, "k", concord.WithRev(12)); v != strings.Repeat("x", 10) {
		t.Fatalf("history after restart: %q", v)
	}
	_, err = n.Get(ctx, "k", concord.WithRev(9))
	wantErr(t, err, concord.ErrCompacted)
	if r := put(t, n, "k", "next"); r.Revision != before.Revision+1 {
		t.Fatalf("first put after restart at %d, want %d", r.Revision, before.Revision+1)
	}
}

func TestReopenRefusals(t *testing.T) {
	dir := t.TempDir()
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "a"
	cfg.DataDir = dir
	n := openReady(t, cfg)
	n.Close()
	other := cfg
	other.Name = "b"
	_, err := concord.Open(testCtx(t), other)
	wantErr(t, err, concord.ErrInvalidConfig)
	if !strings.Contains(err.Error(), `belongs to member "a"`) {
		t.Fatalf("error %q does not say whose data dir it is", err)
	}
	grown := cfg
	grown.InitialCluster = map[string]string{"a": "127.0.0.1:1", "b": "127.0.0.1:2"}
	_, err = concord.Open(testCtx(t), grown)
	wantErr(t, err, concord.ErrInvalidConfig)
	if !strings.Contains(err.Error(), "membership does not change through InitialCluster") {
		t.Fatalf("error %q", err)
	}
	// Naming only itself is the same one-node cluster.
	same := cfg
	same.InitialCluster = map[string]string{"a": "127.0.0.1:0"}
	openReady(t, same)
}

func TestStatusAndMembers(t *testing.T) {
	n := openOne(t)
	put(t, n, "k", "v")
	st := n.Status()
	if st.Name != "solo" || st.ID == 0 || st.Term == 0 || st.CommitIndex < st.AppliedIndex || st.AppliedIndex == 0 ||
		st.Revision != 2 || st.CompactRevision != 0 || st.Leader != st.ID {
		t.Fatalf("status %+v", st)
	}
	ms, err := n.Members(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].ID != st.ID || ms[0].Name != "solo" || !ms[0].IsLeader || ms[0].IsLearner || ms[0].PeerAddr == "" {
		t.Fatalf("members %+v", ms)
	}
	if err := n.TransferLeadership(testCtx(t), st.ID); err != nil {
		t.Fatalf("transfer to the leader itself: %v", err)
	}
	wantErr(t, n.TransferLeadership(testCtx(t), 12345), concord.ErrInvalidRequest)
	wantErr(t, n.Leave(testCtx(t)), concord.ErrInvalidRequest)
}

// TestLogger: Config.Logger receives raft's records, tagged with the
// member; a nil Logger is silent (nothing global to check).
func TestLogger(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	h := slog.NewTextHandler(&lockedWriter{mu: &mu, w: &buf}, &slog.HandlerOptions{Level: slog.LevelDebug})
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "logged"
	cfg.Logger = slog.New(h)
	n := openReady(t, cfg)
	n.Close()
	mu.Lock()
	defer mu.Unlock()
	if out := buf.String(); !strings.Contains(out, "member=logged raft_id=") || !strings.Contains(out, "component=raft") {
		t.Fatalf("log output lacks raft records of the member:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestReopenAtNewPeerAddrRefused: a member of a three-node cluster
// reopened on its data dir at another peer address would be cut off (its
// peers know the old one): Open refuses it with ErrInvalidConfig, naming
// both addresses, and changes nothing; reopened at its address, it catches
// up. (A one-node cluster may move: see TestReopenRefusals.)
func TestReopenAtNewPeerAddrRefused(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	f := (lead + 1) % 3
	old := c.initial[c.names[f]]
	c.close(f)
	put(t, c.nodes[lead], "while-away", "v")
	moved := c.config(f)
	moved.InitialCluster = maps.Clone(c.initial)
	moved.InitialCluster[c.names[f]] = freeAddrs(t, 1)[0]
	_, err := concord.Open(testCtx(t), moved)
	wantErr(t, err, concord.ErrInvalidConfig)
	if !strings.Contains(err.Error(), old) || !strings.Contains(err.Error(), moved.InitialCluster[c.names[f]]) {
		t.Fatalf("error %q names neither the old nor the new address", err)
	}
	n := c.open(f)
	if got := value(t, n, "while-away"); got != "v" {
		t.Fatalf("reopened at its address, the member reads %q, want v", got)
	}
}
