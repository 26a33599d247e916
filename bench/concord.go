package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concordkv/concord"
)

// concordCluster is nodes concord members in this process, each with its own
// data directory (badger: raft log and state; concord always fsyncs), talking
// raft to each other over TCP on 127.0.0.1. Clients are the *concord.Node
// methods themselves: direct calls, no sockets.
type concordCluster struct {
	nodes  []*concord.Node
	drains sync.WaitGroup // keep-alive readers of the lease scenario
}

// openConcord starts nodes members from concord.DefaultConfig() (100 ms tick,
// 10-tick election timeout, 1-tick heartbeat, snapshot every 10,000 entries:
// the production profile, like etcd's defaults), with a static InitialCluster
// naming every member, no gossip and no logger, then waits for Ready on every
// node.
func openConcord(ctx context.Context, nodes int, dir string) (Cluster, error) {
	if nodes < 1 {
		return nil, fmt.Errorf("concord: nodes must be >= 1, got %d", nodes)
	}
	ports, err := freePorts(nodes)
	if err != nil {
		return nil, err
	}
	names := make([]string, nodes)
	initial := make(map[string]string, nodes)
	for i := range nodes {
		names[i] = fmt.Sprintf("concord%d", i)
		initial[names[i]] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}

	c := &concordCluster{nodes: make([]*concord.Node, nodes)}
	for i := range nodes {
		cfg := concord.DefaultConfig()
		cfg.Name = names[i]
		cfg.DataDir = filepath.Join(dir, names[i])
		cfg.PeerAddr = initial[names[i]]
		cfg.InitialCluster = initial
		n, err := concord.Open(ctx, cfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("concord: open %s: %w", names[i], err)
		}
		c.nodes[i] = n
	}
	for i, n := range c.nodes {
		if err := n.Ready(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("concord: %s ready: %w", names[i], err)
		}
	}
	return c, nil
}

func (c *concordCluster) Size() int { return len(c.nodes) }

func (c *concordCluster) Store(i int) (Store, error) {
	return concordStore{n: c.nodes[i%len(c.nodes)]}, nil
}

// Close closes the followers first (concurrently), then the leader, as the
// etcd driver does: harmless for concord, and it keeps the shutdown order
// the same for both systems.
func (c *concordCluster) Close() error {
	var followers, rest []*concord.Node
	for _, n := range c.nodes {
		switch {
		case n == nil:
		case !n.IsLeader():
			followers = append(followers, n)
		default:
			rest = append(rest, n)
		}
	}
	var mu sync.Mutex
	var errs []error
	defer c.drains.Wait() // their channels close with the nodes
	for _, group := range [][]*concord.Node{followers, rest} {
		var wg sync.WaitGroup
		for _, n := range group {
			wg.Go(func() {
				if err := n.Close(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	return errors.Join(errs...)
}

// concordStore is a client bound to one member: the Node itself. Its Close
// does nothing; the Cluster owns the node.
type concordStore struct {
	n *concord.Node
}

func (s concordStore) Put(ctx context.Context, key, val string) error {
	_, err := s.n.Put(ctx, key, val)
	return err
}

func (s concordStore) Get(ctx context.Context, key string, linearizable bool) (string, error) {
	var resp *concord.GetResponse
	var err error
	if linearizable {
		resp, err = s.n.Get(ctx, key)
	} else {
		resp, err = s.n.Get(ctx, key, concord.WithSerializable())
	}
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

func (s concordStore) CAS(ctx context.Context, key, old, new string) (bool, error) {
	_, err := s.n.CompareAndSwap(ctx, key, old, new)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, concord.ErrCompareFailed):
		return false, nil
	default:
		return false, err
	}
}

func (s concordStore) Close() error { return nil }

// KeepLeases implements LeaseCluster: Grant and KeepAlive on member i.
func (c *concordCluster) KeepLeases(ctx context.Context, i, n int, ttl time.Duration, responses *atomic.Int64) error {
	node := c.nodes[i%len(c.nodes)]
	return grantAll(ctx, n, func(gctx context.Context) error {
		id, err := node.Grant(gctx, ttl)
		if err != nil {
			return err
		}
		ch, err := node.KeepAlive(ctx, id)
		if err != nil {
			return err
		}
		drain(&c.drains, ch, responses)
		return nil
	})
}

// CommitIndex implements LeaseCluster.
func (c *concordCluster) CommitIndex() uint64 {
	var idx uint64
	for _, n := range c.nodes {
		idx = max(idx, n.Status().CommitIndex)
	}
	return idx
}
