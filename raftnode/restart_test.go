package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
	"github.com/concordkv/concord/transport"
)

// TestRestartRecovers: restarting every peer from its data dir recovers the
// hard state, the log and the applied index: no entry is applied twice and
// none is skipped, after a clean Stop or a Crash.
func TestRestartRecovers(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := "stop"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) { testRestartRecovers(t, crash) })
	}
}

func testRestartRecovers(t *testing.T, crash bool) {
	const perRound = 300
	c := raftnodetest.NewCluster(t, raftnodetest.Options{OnDisk: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	model := map[string]string{}
	proposePuts(ctx, t, c, model, 0, perRound)

	type before struct {
		applied, term, commit uint64
		chain                 []byte
	}
	var was [3]before
	for i := range 3 {
		n := c.Node(i)
		chain, count := readState(ctx, t, n)
		if count != perRound {
			t.Fatalf("peer %d: %d commands applied before the restart, want %d", i+1, count, perRound)
		}
		st := n.Status()
		was[i] = before{applied: n.AppliedIndex(), term: st.Term, commit: st.Commit, chain: chain}
	}
	for i := range 3 {
		if crash {
			c.Crash(i)
		} else {
			c.Stop(i)
		}
	}
	for i := range 3 {
		if err := c.Restart(i); err != nil {
			t.Fatalf("restart peer %d: %v", i+1, err)
		}
		got := c.Node(i).AppliedIndex()
		// A crash may lose applied state that was not flushed (it needs no
		// sync: the log replays it), never more.
		if got > was[i].applied || (!crash && got != was[i].applied) {
			t.Fatalf("peer %d restarts at applied index %d, was %d", i+1, got, was[i].applied)
		}
		chain, _, err := raftnodetest.State(c.Node(i).DB())
		if err != nil {
			t.Fatal(err)
		}
		if !crash && string(chain) != string(was[i].chain) {
			t.Fatalf("peer %d restarts with state %x, had %x", i+1, chain, was[i].chain)
		}
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	proposePuts(ctx, t, c, model, perRound, 2*perRound)

	checkSameState(ctx, t, c, []int{0, 1, 2}, model)
	for i := range 3 {
		n := c.Node(i)
		_, count := readState(ctx, t, n)
		if count != 2*perRound {
			t.Fatalf("peer %d: %d commands applied, %d acknowledged", i+1, count, 2*perRound)
		}
		st := n.Status()
		if st.Term < was[i].term || st.Commit < was[i].commit {
			t.Fatalf("peer %d: term %d commit %d after the restart, %d %d before", i+1, st.Term, st.Commit, was[i].term, was[i].commit)
		}
		// The KV was created at the restart: it saw the entries replayed
		// after the durable applied index, once, and the new ones; their
		// indexes go on from where the log was, not from a log started anew.
		seq, idx := c.Peer(i).KV.Applied()
		seen := map[string]bool{}
		for j, cmd := range seq {
			if seen[string(cmd)] {
				t.Fatalf("peer %d applied %q twice", i+1, cmd)
			}
			seen[string(cmd)] = true
			if idx[j] <= was[i].applied && !crash {
				t.Fatalf("peer %d applied entry %d again after a clean restart at %d", i+1, idx[j], was[i].applied)
			}
		}
		if len(seq) < perRound {
			t.Fatalf("peer %d applied %d commands since the restart, want at least the %d new ones", i+1, len(seq), perRound)
		}
		if first := idx[len(idx)-perRound]; first <= was[i].commit {
			t.Fatalf("peer %d: the new commands were applied from index %d, not after the old commit index %d", i+1, first, was[i].commit)
		}
	}
}

// proposePuts proposes key%03d = r%d for i in [from, to), spread over every
// running peer and a few goroutines each, and records them in model. Every
// proposal must be acknowledged.
func proposePuts(ctx context.Context, t testing.TB, c *raftnodetest.Cluster, model map[string]string, from, to int) {
	t.Helper()
	const perPeer = 4
	var peers []*raftnode.Node
	for i := range c.Len() {
		if n := c.Node(i); n != nil {
			peers = append(peers, n)
		}
	}
	workers := len(peers) * perPeer
	var mu sync.Mutex
	var wg sync.WaitGroup
	errC := make(chan error, workers)
	for w := range workers {
		n := peers[w%len(peers)]
		wg.Go(func() {
			for i := from + w; i < to; i += workers {
				k, v := fmt.Sprintf("key%03d", i), fmt.Sprintf("r%d", i)
				if _, err := n.Propose(ctx, raftnodetest.PutCmd(k, v)); err != nil {
					errC <- fmt.Errorf("put %s on peer %d: %w", k, n.ID(), err)
					return
				}
				mu.Lock()
				model[k] = v
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errC)
	for err := range errC {
		t.Fatal(err)
	}
}

// TestRestartAfterJointChange: every peer restarts cleanly right after a
// joint reconfiguration. The applied index on disk may be past the hard
// state's commit index (a commit-only hard state is not written), and the
// conf state is loaded as of the applied index: raft must not hand the
// applied conf changes again, or the LeaveJoint, applied twice, halts the
// peer ("can't leave a non-joint config").
func TestRestartAfterJointChange(t *testing.T) {
	c := raftnodetest.NewCluster(t, raftnodetest.Options{OnDisk: true, Peers: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	li, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(li).Propose(ctx, raftnodetest.PutCmd("k", "v")); err != nil {
		t.Fatal(err)
	}
	var demote []uint64
	for i := range c.Len() {
		if i != li && len(demote) < 2 {
			demote = append(demote, uint64(i+1))
		}
	}
	if err := c.Node(li).Reconfigure(ctx, nil, demote, nil); err != nil {
		t.Fatal(err)
	}
	for i := range c.Len() {
		waitStatus(ctx, t, c.Node(i), func(st raftnode.Status) bool {
			return !st.Joint && len(st.Voters) == 2 && !slices.Contains(st.Voters, demote[0])
		})
	}
	for i := range c.Len() {
		c.Stop(i)
	}
	for i := range c.Len() {
		if err := c.Restart(i); err != nil {
			t.Fatalf("restart peer %d: %v", i+1, err)
		}
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range c.Len() {
		if _, err := c.Node(i).Propose(ctx, raftnodetest.PutCmd("k", fmt.Sprint(i))); err != nil {
			t.Fatalf("propose on peer %d after the restart: %v", i+1, err)
		}
		if st := c.Node(i).Status(); st.Joint || len(st.Voters) != 2 {
			t.Fatalf("peer %d after the restart: %+v", i+1, st)
		}
	}
}

// TestInMemoryLeavesNothingOnDisk: with DataDir "" a cluster works,
// snapshots included (spooled to the OS temp dir while installed), and
// leaves no file behind.
func TestInMemoryLeavesNothingOnDisk(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // os.TempDir: the default SnapshotDir in memory mode
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cwdBefore := listFiles(t, cwd)

	restores := make([]atomic.Int64, 3)
	c, ctx, lead := leadCluster(t, raftnodetest.Options{Configure: countRestores(restores, 200, 50)})
	f := (lead + 1) % 3
	model := map[string]string{}
	putKeys(ctx, t, c.Node(lead), model, 0, 50, "a")
	c.Isolate(f)
	p := c.Node(lead)
	for i := 50; p.AppliedIndex() < 700; i++ {
		putKeys(ctx, t, p, model, i, i+1, "b")
	}
	c.Heal()
	waitUntil(ctx, t, "the isolated peer to catch up", func() bool {
		return c.Node(f).AppliedIndex() >= p.AppliedIndex()
	})
	if restores[f].Load() == 0 {
		t.Fatalf("peer %d caught up without a snapshot", f+1)
	}
	checkSameState(ctx, t, c, []int{0, 1, 2}, model)
	c.Close()

	if left := listFiles(t, tmp); len(left) > 0 {
		t.Errorf("files left in the temp dir: %v", left)
	}
	if after := listFiles(t, cwd); fmt.Sprint(after) != fmt.Sprint(cwdBefore) {
		t.Errorf("working directory changed from %v to %v", cwdBefore, after)
	}
}

// listFiles returns the paths of the files under dir, sorted.
func listFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStartRejectsInvalidConfig: Start refuses a bad config with
// ErrInvalidConfig, before it creates anything.
func TestStartRejectsInvalidConfig(t *testing.T) {
	net := transport.NewNetwork(1)
	defer net.Close()
	dir := filepath.Join(t.TempDir(), "data")
	good := func() raftnode.Config {
		return raftnode.Config{
			ID: 1, DataDir: dir,
			Peers:     []raftnode.Peer{{ID: 1, Addr: "mem://1"}, {ID: 2, Addr: "mem://2"}},
			Transport: net.Transport(1), Applier: &raftnodetest.KV{},
		}
	}
	for _, tc := range []struct {
		name   string
		adjust func(*raftnode.Config)
	}{
		{"zero ID", func(c *raftnode.Config) { c.ID = 0 }},
		{"no Transport", func(c *raftnode.Config) { c.Transport = nil }},
		{"no Applier", func(c *raftnode.Config) { c.Applier = nil }},
		{"Peers without self", func(c *raftnode.Config) { c.ID = 3 }},
		{"duplicate peer", func(c *raftnode.Config) { c.Peers = append(c.Peers, raftnode.Peer{ID: 2, Addr: "mem://2"}) }},
		{"peer id 0", func(c *raftnode.Config) { c.Peers = append(c.Peers, raftnode.Peer{Addr: "mem://0"}) }},
		{"catch-up above snapshot", func(c *raftnode.Config) { c.SnapshotEntries, c.SnapshotCatchUpEntries = 100, 100 }},
		{"election within heartbeat", func(c *raftnode.Config) { c.ElectionTicks, c.HeartbeatTicks = 2, 2 }},
		{"tick below 1ms", func(c *raftnode.Config) { c.TickInterval = time.Microsecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.adjust(&cfg)
			n, err := raftnode.Start(cfg)
			if n != nil {
				n.Stop()
			}
			if !errors.Is(err, raftnode.ErrInvalidConfig) {
				t.Fatalf("Start = %v, want ErrInvalidConfig", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Start created the data dir before refusing the config (%v)", err)
			}
		})
	}
	// The good config itself starts.
	n, err := raftnode.Start(good())
	if err != nil {
		t.Fatalf("Start with a valid config: %v", err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
}
