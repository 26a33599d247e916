package concordtest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/transport"
)

// readyTimeout bounds NewCluster's wait for every node to be ready.
const readyTimeout = 30 * time.Second

// Option shapes a Cluster.
type Option func(*options)

type options struct {
	onDisk    bool
	seed      int64
	configure func(i int, cfg *concord.Config)
}

// OnDisk keeps each node's data in a directory under t.TempDir(), so that
// Restart can reopen it. Without it nodes are in memory.
func OnDisk() Option { return func(o *options) { o.onDisk = true } }

// Seed seeds the network's random faults (Network().SetDropRate, SetDelay,
// ...). Default 0.
func Seed(seed int64) Option { return func(o *options) { o.seed = seed } }

// Configure lets f adjust node i's config, concord.DefaultLocalConfig()
// at first, before every Open of it (the first and each Restart). The
// harness then sets Name, DataDir, Transport and InitialCluster itself.
func Configure(f func(i int, cfg *concord.Config)) Option {
	return func(o *options) { o.configure = f }
}

// Cluster is a static concord cluster whose nodes run in this process, on
// one in-memory transport.Network. Its methods are safe for concurrent use.
type Cluster struct {
	t       testing.TB
	opts    options
	net     *transport.Network
	names   []string
	dirs    []string // "" for in-memory nodes
	initial map[string]string

	life sync.Mutex // held by Stop, Restart and close, one node change at a time

	mu     sync.Mutex
	nodes  []*concord.Node // guarded by mu; nil while stopped
	closed bool            // guarded by mu
}

// NewCluster opens n nodes named "n1".."nN" (node i is "n<i+1>", with raft
// id concord.MemberID of its name) with concord.DefaultLocalConfig, waits
// until every one is ready, and closes them all at t's cleanup. It fails
// t if the cluster does not come up.
func NewCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("concordtest: NewCluster needs at least one node, got %d", n)
	}
	c := &Cluster{t: t, initial: map[string]string{}, nodes: make([]*concord.Node, n)}
	for _, o := range opts {
		o(&c.opts)
	}
	c.net = transport.NewNetwork(c.opts.seed)
	root := ""
	if c.opts.onDisk {
		root = t.TempDir()
	}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		dir := ""
		if root != "" {
			dir = filepath.Join(root, name)
		}
		c.names = append(c.names, name)
		c.dirs = append(c.dirs, dir)
		c.initial[name] = c.net.Transport(concord.MemberID(name)).Addr()
	}
	t.Cleanup(c.close) // after t.TempDir's: runs before the dirs go
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for i := range n {
		if err := c.open(ctx, i); err != nil {
			t.Fatalf("concordtest: %v", err)
		}
	}
	for i, node := range c.Nodes() {
		if err := node.Ready(ctx); err != nil {
			t.Fatalf("concordtest: node %d (%s): %v", i, c.names[i], err)
		}
	}
	return c
}

// open opens node i on its transport endpoint and data dir.
func (c *Cluster) open(ctx context.Context, i int) error {
	cfg := concord.DefaultLocalConfig()
	if c.opts.configure != nil {
		c.opts.configure(i, &cfg)
	}
	cfg.Name = c.names[i]
	cfg.DataDir = c.dirs[i]
	cfg.Transport = c.net.Transport(concord.MemberID(cfg.Name))
	cfg.InitialCluster = c.initial
	n, err := concord.Open(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open node %d (%s): %w", i, cfg.Name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		n.Close()
		return errors.New("concordtest: cluster closed")
	}
	c.nodes[i] = n
	return nil
}

// Len returns the number of nodes, stopped ones included.
func (c *Cluster) Len() int { return len(c.names) }

// Node returns node i (0-based), or nil while it is stopped.
func (c *Cluster) Node(i int) *concord.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Nodes returns every node by index, nil for stopped ones.
func (c *Cluster) Nodes() []*concord.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*concord.Node(nil), c.nodes...)
}

// Name returns node i's member name, "n<i+1>".
func (c *Cluster) Name(i int) string { return c.names[i] }

// Network returns the nodes' network, for its seeded faults: message
// drops, delays, duplicates, reordering, one-way cuts (see
// transport.Network). Partition, Isolate and Heal take node indexes
// instead of raft ids; they act on this network.
func (c *Cluster) Network() *transport.Network { return c.net }

// Partition splits the cluster: nodes (by index) talk only within their
// group; nodes in no group are cut off from all. It replaces an earlier
// partition; isolations stay until Heal.
func (c *Cluster) Partition(groups ...[]int) {
	ids := make([][]uint64, len(groups))
	for g, grp := range groups {
		for _, i := range grp {
			ids[g] = append(ids[g], c.id(i))
		}
	}
	c.net.Partition(ids...)
}

// Isolate cuts node i off from all others until Heal. It lasts across
// Stop and Restart.
func (c *Cluster) Isolate(i int) { c.net.Isolate(c.id(i)) }

// Heal removes every partition, isolation and cut; the network's rates
// and delays stay.
func (c *Cluster) Heal() { c.net.Heal() }

func (c *Cluster) id(i int) uint64 { return concord.MemberID(c.names[i]) }

// Stop closes node i (concord.Node.Close: a clean shutdown; every write
// it acknowledged is already durable on a quorum). Node(i) is nil until
// Restart. The other nodes see it fall silent; to make it vanish
// mid-conversation, as after a crash, Isolate it first. Stopping a
// stopped node does nothing.
func (c *Cluster) Stop(i int) error {
	c.life.Lock()
	defer c.life.Unlock()
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return nil
	}
	if err := n.Close(); err != nil {
		return fmt.Errorf("concordtest: stop node %d (%s): %w", i, c.names[i], err)
	}
	return nil
}

// Restart reopens stopped node i on its data dir, with its name and
// address: it rejoins the cluster and catches up. It needs OnDisk (an
// in-memory node keeps nothing to restart from) and returns without
// waiting for the node to be ready (see concord.Node.Ready). Faults on
// its raft id, such as Isolate, still apply.
func (c *Cluster) Restart(i int) error {
	if !c.opts.onDisk {
		return fmt.Errorf("concordtest: Restart of node %d needs the OnDisk option: an in-memory node keeps nothing to restart from", i)
	}
	c.life.Lock()
	defer c.life.Unlock()
	if c.Node(i) != nil {
		return fmt.Errorf("concordtest: Restart of node %d (%s): it is running; Stop it first", i, c.names[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := c.open(ctx, i); err != nil {
		return fmt.Errorf("concordtest: restart: %w", err)
	}
	return nil
}

// WaitLeader waits until the running nodes among the indexes given (all
// nodes if none) agree on one leader, itself one of them that knows it
// leads, and returns the leader's index. While a partition cuts some
// nodes off, name the others: a cut-off node knows no leader. It fails
// when ctx ends first.
func (c *Cluster) WaitLeader(ctx context.Context, among ...int) (int, error) {
	if len(among) == 0 {
		for i := range c.names {
			among = append(among, i)
		}
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if i, ok := c.agreedLeader(among); ok {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("concordtest: no leader agreed on by nodes %v: %w", among, ctx.Err())
		case <-tick.C:
		}
	}
}

func (c *Cluster) agreedLeader(among []int) (int, bool) {
	lead, running := -1, 0
	for _, i := range among {
		n := c.Node(i)
		if n == nil {
			continue
		}
		running++
		m, ok := n.Leader()
		if !ok {
			return -1, false
		}
		l := c.index(m.ID)
		if l < 0 || (lead >= 0 && l != lead) {
			return -1, false
		}
		lead = l
	}
	if running == 0 {
		return -1, false
	}
	for _, i := range among {
		if i == lead {
			n := c.Node(lead)
			return lead, n != nil && n.IsLeader()
		}
	}
	return -1, false // a leader outside the nodes named
}

// index returns the index of the node with raft id id, or -1.
func (c *Cluster) index(id uint64) int {
	for i := range c.names {
		if c.id(i) == id {
			return i
		}
	}
	return -1
}

// close stops every node, then the network; failures fail t.
func (c *Cluster) close() {
	c.life.Lock()
	c.mu.Lock()
	c.closed = true
	nodes := c.nodes
	c.nodes = make([]*concord.Node, len(nodes))
	c.mu.Unlock()
	c.life.Unlock()
	for i, n := range nodes {
		if n == nil {
			continue
		}
		if err := n.Close(); err != nil {
			c.t.Errorf("concordtest: close node %d (%s): %v", i, c.names[i], err)
		}
	}
	c.net.Close()
}
