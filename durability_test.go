package concord_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/internal/killtest"
)

// TestKillDurability kills a process running concord nodes with SIGKILL at
// random moments and checks, after each kill, that every Put the process
// acknowledged survived on every node and that the store's revision never
// went backwards across restarts.
//
// The process is a re-exec of this test binary running TestKillChild: it
// opens one node ("lone") or three nodes of one static cluster on loopback
// TCP ("three"), each on its own data dir, and Puts unique keys
// "k/<round>/<n>" = same from several goroutines, printing
// "ACK <key> <revision>" only after Put returned success. The parent kills
// it after a random number of acks, reopens the same data dirs in-process
// with the same configs, verifies, closes them, and runs the next round on
// the same dirs.
var (
	killRounds = flag.Int("kill.rounds", 20, "kill/restart rounds of each TestKillDurability case")
	killSeed   = flag.Uint64("kill.seed", 0, "seed of TestKillDurability's kill moments; 0 picks one at random")
)

// The child's environment: its mode ("lone" or "three"), the data dir, the
// round (which makes keys unique across rounds) and, for "three", the peer
// addresses, fixed by the parent so that every restart reuses them.
const (
	envKillChild = "CONCORD_KILL_CHILD"
	envKillDir   = "CONCORD_KILL_DIR"
	envKillRound = "CONCORD_KILL_ROUND"
	envKillAddrs = "CONCORD_KILL_ADDRS"
)

// killPutters is how many goroutines of the child Put at once.
const killPutters = 4

// killConfigs returns the configs of mode's nodes on their data dirs under
// dir; the child and the parent's verification use the same ones.
func killConfigs(mode, dir string, addrs []string) []concord.Config {
	if mode == "lone" {
		cfg := concord.DefaultLocalConfig()
		cfg.Name = "solo"
		cfg.DataDir = filepath.Join(dir, "solo")
		return []concord.Config{cfg}
	}
	initial := map[string]string{}
	for i, a := range addrs {
		initial[fmt.Sprintf("n%d", i+1)] = a
	}
	var cfgs []concord.Config
	for i := range addrs {
		cfg := concord.DefaultLocalConfig()
		cfg.Name = fmt.Sprintf("n%d", i+1)
		cfg.DataDir = filepath.Join(dir, cfg.Name)
		cfg.InitialCluster = initial
		cfgs = append(cfgs, cfg)
	}
	return cfgs
}

// openKillNodes opens every config; on an error it closes those opened.
func openKillNodes(ctx context.Context, cfgs []concord.Config) ([]*concord.Node, error) {
	var nodes []*concord.Node
	for _, cfg := range cfgs {
		n, err := concord.Open(ctx, cfg)
		if err != nil {
			for _, n := range nodes {
				n.Close()
			}
			return nil, fmt.Errorf("open %s: %w", cfg.Name, err)
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// TestKillChild is TestKillDurability's child process; run normally it
// does nothing. It Puts until it is killed.
func TestKillChild(t *testing.T) {
	mode := os.Getenv(envKillChild)
	if mode == "" {
		return
	}
	dir, round := os.Getenv(envKillDir), os.Getenv(envKillRound)
	var addrs []string
	if a := os.Getenv(envKillAddrs); a != "" {
		addrs = strings.Split(a, ",")
	}
	// The parent kills us within seconds; this bound only ends an orphan.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes, err := openKillNodes(ctx, killConfigs(mode, dir, addrs))
	if err != nil {
		t.Fatal(err)
	}
	var outMu sync.Mutex
	emit := func(line string) {
		outMu.Lock()
		defer outMu.Unlock()
		// One unbuffered write per line: a line is in the pipe before the
		// next step, and never torn (it is shorter than PIPE_BUF).
		if _, err := os.Stdout.WriteString(line + "\n"); err != nil {
			os.Exit(3) // the parent is gone
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := range killPutters {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("k/%s/%d", round, next.Add(1))
				n := nodes[(g+i)%len(nodes)] // followers forward to the leader
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				resp, err := n.Put(pctx, key, key)
				pcancel()
				if err != nil {
					fmt.Fprintf(os.Stderr, "put %s: %v\n", key, err)
					continue
				}
				emit(fmt.Sprintf("ACK %s %d", key, resp.Revision))
			}
		})
	}
	wg.Wait()
	for _, n := range nodes {
		n.Close()
	}
	t.Fatal("kill child ran for a minute without being killed")
}

// killState is what the parent learned over all rounds of one case.
type killState struct {
	acked   map[string]bool // every key a child acknowledged
	maxRev  int64           // the highest revision a child acknowledged
	lastRev int64           // the highest revision a node had at the last verification
	acks    int
}

func TestKillDurability(t *testing.T) {
	if os.Getenv(envKillChild) != "" {
		t.Skip("in the kill child")
	}
	seed := *killSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rounds := *killRounds
	t.Logf("seed %d (-kill.seed), %d rounds per case (-kill.rounds)", seed, rounds)
	for ci, mode := range []string{"lone", "three"} {
		t.Run(mode, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(ci)))
			dir := t.TempDir()
			var addrs []string
			if mode == "three" {
				addrs = freeAddrs(t, 3)
			}
			st := &killState{acked: map[string]bool{}}
			start := time.Now()
			for r := range rounds {
				runKillChild(t, mode, dir, addrs, r, rng, st)
				verifyKill(t, mode, dir, addrs, r, st)
			}
			t.Logf("%d rounds, %d acks, revision %d, in %v",
				rounds, st.acks, st.lastRev, time.Since(start).Round(time.Millisecond))
		})
	}
}

// runKillChild runs one child on dir and kills it after a random number of
// acks; it records what the child acknowledged.
func runKillChild(t *testing.T, mode, dir string, addrs []string, round int, rng *rand.Rand, st *killState) {
	st.acks += killtest.Run(t, killtest.Child{
		Name: fmt.Sprintf("round %d", round),
		Test: "TestKillChild",
		Env: []string{
			envKillChild + "=" + mode,
			envKillDir + "=" + dir,
			envKillRound + "=" + strconv.Itoa(round),
			envKillAddrs + "=" + strings.Join(addrs, ","),
		},
		KillAfter: 1 + rng.IntN(200),
		Handle: func(line string) (bool, bool) {
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "ACK" {
				return false, false
			}
			rev, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil || rev <= 0 {
				t.Errorf("round %d: bad ack %q", round, line)
				return false, true
			}
			if rev <= st.lastRev {
				t.Errorf("round %d: %s acknowledged at revision %d, below the %d seen after the last restart", round, f[1], rev, st.lastRev)
			}
			st.acked[f[1]] = true
			st.maxRev = max(st.maxRev, rev)
			return true, true
		},
	})
}

// verifyKill reopens mode's data dirs in this process with the children's
// configs, waits until every node is ready, and checks the acked keys and
// the revisions on every node.
func verifyKill(t *testing.T, mode, dir string, addrs []string, round int, st *killState) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := openKillNodes(ctx, killConfigs(mode, dir, addrs))
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	defer func() {
		for _, n := range nodes {
			if err := n.Close(); err != nil {
				t.Errorf("round %d: close: %v", round, err)
			}
		}
	}()
	for _, n := range nodes {
		if err := n.Ready(ctx); err != nil {
			t.Fatalf("round %d: %s: %v", round, n.Status().Name, err)
		}
	}
	highest := int64(0)
	for _, n := range nodes {
		name := n.Status().Name
		// Ready means everything committed before is applied here, and
		// every ack was committed.
		if rev := n.Status().Revision; rev < st.maxRev || rev < st.lastRev {
			t.Errorf("round %d: %s at revision %d after restart; highest ack %d, revision after the last restart %d",
				round, name, rev, st.maxRev, st.lastRev)
		}
		resp, err := n.Get(ctx, "k/", concord.WithPrefix())
		if err != nil {
			t.Fatalf("round %d: %s: Get: %v", round, name, err)
		}
		if resp.Revision < st.maxRev || resp.Revision < st.lastRev {
			t.Errorf("round %d: %s read at revision %d; highest ack %d, revision after the last restart %d",
				round, name, resp.Revision, st.maxRev, st.lastRev)
		}
		present := map[string]bool{}
		for _, kv := range resp.Kvs {
			if string(kv.Value) != string(kv.Key) {
				t.Errorf("round %d: %s: %q = %q", round, name, kv.Key, kv.Value)
			}
			present[string(kv.Key)] = true
		}
		var lost []string
		for k := range st.acked {
			if !present[k] {
				lost = append(lost, k)
			}
		}
		if len(lost) > 0 {
			t.Errorf("round %d: %s: %d of %d acknowledged Puts lost, e.g. %q",
				round, name, len(lost), len(st.acked), lost[:min(10, len(lost))])
		}
		highest = max(highest, resp.Revision)
	}
	if t.Failed() {
		t.FailNow()
	}
	st.lastRev = highest
}
