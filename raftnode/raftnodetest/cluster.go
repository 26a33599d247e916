package raftnodetest

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/transport"
)

// Options shape a Cluster. The zero value is 3 in-memory peers on the
// in-memory network with fast ticks.
type Options struct {
	// Peers is the number of voters, 3 if 0. Peer i has raft id i+1.
	Peers int
	// TCP puts the peers on TCP loopback instead of the in-memory network.
	TCP bool
	// TLS, if set, returns peer i's mutual TLS config (TCP only).
	TLS func(i int) *tls.Config
	// Seed seeds the in-memory network's faults.
	Seed int64
	// OnDisk keeps each peer's data in a directory under t.TempDir(), so
	// that Crash and Restart keep it. Restart requires it.
	OnDisk bool
	// Configure, if set, adjusts each peer's config before it starts.
	Configure func(i int, cfg *raftnode.Config)
	// Logger receives the peers' logs; nil discards them.
	Logger *slog.Logger
}

// Peer is one member of a Cluster.
type Peer struct {
	ID   uint64
	Addr string
	Dir  string
	// Node and KV are nil while the peer is crashed or stopped.
	Node *raftnode.Node
	KV   *KV

	joined bool // added by AddPeer: starts with empty Peers
}

// Cluster is a set of raft peers in this process. Methods are not safe for
// concurrent use, except Node and the fault methods.
type Cluster struct {
	t     testing.TB
	opts  Options
	net   *transport.Network
	gates *gates

	mu    sync.Mutex
	peers []*Peer // guarded by mu
}

// NewCluster starts a cluster and registers its Close with t.Cleanup. It
// does not wait for a leader: see WaitLeader.
func NewCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Peers == 0 {
		opts.Peers = 3
	}
	c := &Cluster{t: t, opts: opts, gates: newGates()}
	if !opts.TCP {
		c.net = transport.NewNetwork(opts.Seed)
	}
	c.peers = make([]*Peer, opts.Peers)
	trs := make([]transport.Transport, opts.Peers)
	for i := range c.peers {
		p := &Peer{ID: uint64(i + 1)}
		if opts.OnDisk {
			p.Dir = filepath.Join(t.TempDir(), fmt.Sprintf("peer%d", i+1))
		}
		tr, err := c.newTransport(i, "127.0.0.1:0")
		if err != nil {
			t.Fatalf("raftnodetest: transport %d: %v", i, err)
		}
		p.Addr = tr.Addr()
		trs[i] = tr
		c.peers[i] = p
	}
	for i := range c.peers {
		if err := c.start(i, trs[i]); err != nil {
			t.Fatalf("raftnodetest: start peer %d: %v", i+1, err)
		}
	}
	t.Cleanup(c.Close)
	return c
}

func (c *Cluster) newTransport(i int, listen string) (transport.Transport, error) {
	var tr transport.Transport
	if c.opts.TCP {
		cfg := transport.TCPConfig{ID: uint64(i + 1), ListenAddr: listen, Logger: c.opts.Logger}
		if c.opts.TLS != nil {
			cfg.TLS = c.opts.TLS(i)
		}
		t, err := transport.NewTCP(cfg)
		if err != nil {
			return nil, err
		}
		tr = t
	} else {
		tr = c.net.Transport(uint64(i + 1))
	}
	return c.gates.wrap(uint64(i+1), tr), nil
}

// BaseConfig is the config peer i starts with, before Options.Configure.
// Initial peers bootstrap with the initial voters; a peer added by AddPeer
// has empty Peers and joins through a conf change, with every other peer in
// Join.
func (c *Cluster) BaseConfig(i int) raftnode.Config {
	c.mu.Lock()
	self := *c.peers[i]
	var peers, join []raftnode.Peer
	if !self.joined {
		for _, p := range c.peers[:c.opts.Peers] {
			peers = append(peers, raftnode.Peer{ID: p.ID, Addr: p.Addr})
		}
	} else {
		for _, p := range c.peers {
			if p.ID != self.ID {
				join = append(join, raftnode.Peer{ID: p.ID, Addr: p.Addr})
			}
		}
	}
	c.mu.Unlock()
	return raftnode.Config{
		ID:             self.ID,
		DataDir:        self.Dir,
		Peers:          peers,
		Join:           join,
		Logger:         c.opts.Logger,
		TickInterval:   10 * time.Millisecond,
		ElectionTicks:  10,
		HeartbeatTicks: 1,
	}
}

func (c *Cluster) start(i int, tr transport.Transport) error {
	cfg := c.BaseConfig(i)
	kv := &KV{}
	cfg.Transport, cfg.Applier = tr, kv
	if c.opts.Configure != nil {
		c.opts.Configure(i, &cfg)
	}
	n, err := raftnode.Start(cfg)
	if err != nil {
		tr.Close()
		return err
	}
	c.mu.Lock()
	c.peers[i].Node, c.peers[i].KV = n, kv
	c.mu.Unlock()
	return nil
}

// AddPeer starts a new, empty peer with the next id (Len()+1) and its own
// transport, data dir (OnDisk) and KV. It starts with empty Peers, so it only
// waits to be added by a conf change (Node.AddLearner or AddVoter on a
// member, with the new peer's Addr). It returns the new peer's index.
func (c *Cluster) AddPeer() (int, error) {
	c.mu.Lock()
	i := len(c.peers)
	p := &Peer{ID: uint64(i + 1), joined: true}
	c.mu.Unlock()
	if c.opts.OnDisk {
		p.Dir = filepath.Join(c.t.TempDir(), fmt.Sprintf("peer%d", i+1))
	}
	tr, err := c.newTransport(i, "127.0.0.1:0")
	if err != nil {
		return -1, err
	}
	p.Addr = tr.Addr()
	c.mu.Lock()
	c.peers = append(c.peers, p)
	c.mu.Unlock()
	if err := c.start(i, tr); err != nil {
		return -1, err
	}
	return i, nil
}

// Len is the number of peers.
func (c *Cluster) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.peers)
}

// Peer returns peer i (0-based).
func (c *Cluster) Peer(i int) *Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := *c.peers[i]
	return &p
}

// Node returns peer i's running node, or nil while it is down.
func (c *Cluster) Node(i int) *raftnode.Node { return c.Peer(i).Node }

// Network returns the in-memory network (nil on TCP), for its seeded
// drop, delay, duplicate and reorder faults.
func (c *Cluster) Network() *transport.Network { return c.net }

// Crash stops peer i abruptly (raftnode.Node.Crash): it keeps its data dir.
func (c *Cluster) Crash(i int) {
	c.mu.Lock()
	n := c.peers[i].Node
	c.peers[i].Node, c.peers[i].KV = nil, nil
	c.mu.Unlock()
	if n != nil {
		n.Crash()
	}
}

// Stop stops peer i cleanly.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	n := c.peers[i].Node
	c.peers[i].Node, c.peers[i].KV = nil, nil
	c.mu.Unlock()
	if n != nil {
		if err := n.Stop(); err != nil {
			c.t.Errorf("raftnodetest: stop peer %d: %v", i+1, err)
		}
	}
}

// Restart starts a crashed or stopped peer again on its data dir and
// address.
func (c *Cluster) Restart(i int) error {
	if !c.opts.OnDisk {
		return fmt.Errorf("raftnodetest: Restart needs Options.OnDisk: an in-memory peer has nothing to restart from")
	}
	if c.Node(i) != nil {
		return fmt.Errorf("raftnodetest: peer %d is running", i+1)
	}
	tr, err := c.newTransport(i, c.peers[i].Addr)
	if err != nil {
		return err
	}
	return c.start(i, tr)
}

// Partition splits the peers (0-based indexes) into groups that only talk
// within themselves; peers in no group are cut off from all.
func (c *Cluster) Partition(groups ...[]int) {
	ids := make([][]uint64, len(groups))
	for g, grp := range groups {
		for _, i := range grp {
			ids[g] = append(ids[g], uint64(i+1))
		}
	}
	c.gates.partition(ids)
}

// Isolate cuts peer i off from everyone.
func (c *Cluster) Isolate(i int) { c.gates.isolate(uint64(i + 1)) }

// Delivered counts the messages (snapshots included) that the cluster's
// peers received from raft id from, as their transports handed them over.
func (c *Cluster) Delivered(from uint64) int { return c.gates.deliveredFrom(from) }

// Heal removes every partition.
func (c *Cluster) Heal() { c.gates.heal() }

// WaitLeader waits until every running peer agrees on one running leader
// and returns its index.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if i, ok := c.agreedLeader(); ok {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("raftnodetest: no agreed leader: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func (c *Cluster) agreedLeader() (int, bool) {
	var lead uint64
	for i := range c.peers {
		n := c.Node(i)
		if n == nil {
			continue
		}
		l := n.Leader()
		if l == 0 || (lead != 0 && l != lead) {
			return -1, false
		}
		lead = l
	}
	if lead == 0 {
		return -1, false
	}
	i := int(lead - 1)
	if n := c.Node(i); n == nil || !n.IsLeader() {
		return -1, false
	}
	return i, true
}

// Close stops every running peer and the network. Idempotent.
func (c *Cluster) Close() {
	for i := range c.peers {
		c.Stop(i)
	}
	if c.net != nil {
		c.net.Close()
	}
}
