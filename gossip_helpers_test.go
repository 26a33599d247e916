package concord_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// gossipCluster is a set of gossip members in this process, on loopback,
// all started from the same config but for name, ports and data dir.
type gossipCluster struct {
	t      *testing.T
	root   string
	expect int
	key    []byte
	seeds  []string // gossip addresses of the first members

	mu    sync.Mutex
	nodes map[string]*concord.Node // guarded by mu; open members by name
	addrs map[string][2]string     // guarded by mu; name -> peer, gossip address
}

func newGossipCluster(t *testing.T, expect, seeds int) *gossipCluster {
	g := &gossipCluster{t: t, root: t.TempDir(), expect: expect, nodes: map[string]*concord.Node{}, addrs: map[string][2]string{}}
	for i := range seeds {
		g.seeds = append(g.seeds, g.addr(fmt.Sprintf("g%d", i+1))[1])
	}
	t.Cleanup(func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, n := range g.nodes {
			n.Close()
		}
	})
	return g
}

// addr returns name's peer and gossip addresses, fixed on first use.
func (g *gossipCluster) addr(name string) [2]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if a, ok := g.addrs[name]; ok {
		return a
	}
	free := freeAddrs(g.t, 2)
	g.addrs[name] = [2]string{free[0], free[1]}
	return g.addrs[name]
}

func (g *gossipCluster) config(name string) concord.Config {
	a := g.addr(name)
	cfg := concord.DefaultLocalConfig()
	cfg.Name = name
	cfg.DataDir = filepath.Join(g.root, name)
	cfg.PeerAddr = a[0]
	cfg.GossipAddr = a[1]
	cfg.Join = g.seeds
	cfg.BootstrapExpect = g.expect
	cfg.GossipKey = g.key
	cfg.StabilizationTime = 200 * time.Millisecond
	cfg.DeadMemberReclaim = time.Second
	if debugLog != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(debugLog, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	}
	return cfg
}

// open starts member name with cfg (see config).
func (g *gossipCluster) openWith(cfg concord.Config) *concord.Node {
	g.t.Helper()
	n, err := concord.Open(context.Background(), cfg)
	if err != nil {
		g.t.Fatalf("open %s: %v", cfg.Name, err)
	}
	g.mu.Lock()
	g.nodes[cfg.Name] = n
	g.mu.Unlock()
	return n
}

func (g *gossipCluster) open(name string) *concord.Node { return g.openWith(g.config(name)) }

func (g *gossipCluster) node(name string) *concord.Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.nodes[name]
}

// close closes member name (it stays a member; its data dir stays).
func (g *gossipCluster) close(name string) {
	g.mu.Lock()
	n := g.nodes[name]
	delete(g.nodes, name)
	g.mu.Unlock()
	if err := n.Close(); err != nil {
		g.t.Fatal(err)
	}
}

// open returns the open members.
func (g *gossipCluster) open_() []*concord.Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*concord.Node
	for _, n := range g.nodes {
		out = append(out, n)
	}
	return out
}

// roles returns, as seen by n, the sorted names of the voters and the
// learners.
func roles(ctx context.Context, n *concord.Node) (voters, learners []string, err error) {
	ms, err := n.Members(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range ms {
		if m.IsLearner {
			learners = append(learners, m.Name)
		} else {
			voters = append(voters, m.Name)
		}
	}
	slices.Sort(voters)
	slices.Sort(learners)
	return voters, learners, nil
}

// waitRoles waits until every open member is ready and sees exactly these
// voters and learners, and one leader among the voters.
func (g *gossipCluster) waitRoles(d time.Duration, voters, learners []string) {
	g.t.Helper()
	g.waitFor(d, fmt.Sprintf("voters %v learners %v", voters, learners), func(_ int, v, l []string) bool {
		return slices.Equal(v, voters) && slices.Equal(l, learners)
	})
}

// waitShape waits until every open member is ready, they all see the same
// voters and learners, as many as given, and one leader; it returns them.
func (g *gossipCluster) waitShape(d time.Duration, nv, nl int) (voters, learners []string) {
	g.t.Helper()
	g.waitFor(d, fmt.Sprintf("%d voters and %d learners", nv, nl), func(i int, v, l []string) bool {
		if i == 0 {
			voters, learners = v, l
		}
		return len(v) == nv && len(l) == nl && slices.Equal(v, voters) && slices.Equal(l, learners)
	})
	return voters, learners
}

// waitFor waits until every open member is ready, ok holds for the voters
// and learners each sees, and they agree on one leader. ok is called with
// every member's view in turn, i counting from 0 in each round.
func (g *gossipCluster) waitFor(d time.Duration, what string, ok func(i int, voters, learners []string) bool) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last string
	for {
		good := true
		leaders := map[uint64]bool{}
		for i, n := range g.open_() {
			short, c := context.WithTimeout(ctx, 200*time.Millisecond)
			v, l, err := roles(short, n)
			c()
			lead, has := n.Leader()
			if err != nil || !ok(i, v, l) || !has {
				good = false
				last = fmt.Sprintf("%s sees voters %v learners %v leader %v (%v)", n.Status().Name, v, l, has, err)
				break
			}
			leaders[lead.ID] = true
		}
		if good && len(leaders) == 1 {
			return
		}
		if ctx.Err() != nil {
			g.t.Fatalf("timed out after %v waiting for %s: %s", d, what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func names(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	slices.Sort(out)
	return out
}

// sameCluster fails unless every open member has the same voters and
// agrees on a value written through one of them.
func (g *gossipCluster) sameCluster(key string) {
	g.t.Helper()
	ctx := testCtx(g.t)
	nodes := g.open_()
	val := fmt.Sprint(time.Now().UnixNano())
	if _, err := nodes[0].Put(ctx, key, val); err != nil {
		g.t.Fatal(err)
	}
	for _, n := range nodes {
		r, err := n.Get(ctx, key)
		if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != val {
			g.t.Fatalf("%s reads %s: %+v %v", n.Status().Name, key, r, err)
		}
	}
}

// debugLog, set by GOSSIP_DEBUG_LOG=path, receives every gossip test
// member's debug log.
var debugLog = func() *os.File {
	if p := os.Getenv("GOSSIP_DEBUG_LOG"); p != "" {
		f, _ := os.Create(p)
		return f
	}
	return nil
}()
