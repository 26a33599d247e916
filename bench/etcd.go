package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// etcdCluster is nodes embedded etcd v3.7.3 members in this process, each
// with its own data directory (WAL + bbolt, default fsync), talking raft to
// each other over HTTP on 127.0.0.1. Clients are in-process v3clients: direct
// function calls into the member's gRPC service implementation, no sockets.
type etcdCluster struct {
	members []*embed.Etcd
	drains  sync.WaitGroup // keep-alive readers and client closers of the lease scenario
}

func openEtcd(ctx context.Context, nodes int, dir string) (Cluster, error) {
	if nodes < 1 {
		return nil, fmt.Errorf("etcd: nodes must be >= 1, got %d", nodes)
	}
	ports, err := freePorts(2 * nodes)
	if err != nil {
		return nil, err
	}
	loopback := func(port int) url.URL {
		return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)}
	}
	names := make([]string, nodes)
	initial := make([]string, nodes)
	for i := range nodes {
		names[i] = fmt.Sprintf("etcd%d", i)
		peer := loopback(ports[2*i])
		initial[i] = names[i] + "=" + peer.String()
	}
	token := fmt.Sprintf("bench-%d", time.Now().UnixNano())

	cfgs := make([]*embed.Config, nodes)
	for i := range nodes {
		cfg := embed.NewConfig()
		cfg.Name = names[i]
		cfg.Dir = filepath.Join(dir, names[i])
		peer, client := loopback(ports[2*i]), loopback(ports[2*i+1])
		cfg.ListenPeerUrls = []url.URL{peer}
		cfg.AdvertisePeerUrls = []url.URL{peer}
		cfg.ListenClientUrls = []url.URL{client}
		cfg.AdvertiseClientUrls = []url.URL{client}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = token
		cfg.ClusterState = embed.ClusterStateFlagNew
		// Quiet: a no-op zap logger; LogLevel only matters if etcd ever
		// builds its own logger despite the builder.
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		// Everything else stays at etcd's defaults: fsync on (UnsafeNoFsync
		// false), 100 ms heartbeat, 1 s election timeout, snapshot every
		// 10,000 entries, 2 GiB quota, no auto-compaction.
		cfgs[i] = cfg
	}

	c := &etcdCluster{members: make([]*embed.Etcd, nodes)}
	// Start the members concurrently: a member of a new multi-member cluster
	// only becomes ready once a quorum is up.
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Go(func() {
			c.members[i], errs[i] = embed.StartEtcd(cfgs[i])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, fmt.Errorf("etcd: start: %w", err)
	}
	for _, m := range c.members {
		select {
		case <-m.Server.ReadyNotify():
		case err := <-m.Err():
			c.Close()
			return nil, fmt.Errorf("etcd: %s failed before ready: %w", m.Config().Name, err)
		case <-ctx.Done():
			c.Close()
			return nil, fmt.Errorf("etcd: waiting for ready: %w", ctx.Err())
		}
	}
	return c, nil
}

func (c *etcdCluster) Size() int { return len(c.members) }

func (c *etcdCluster) Store(i int) (Store, error) {
	m := c.members[i%len(c.members)]
	return &etcdStore{cli: v3client.New(m.Server)}, nil
}

func (c *etcdCluster) Close() error {
	// A stopping leader first tries to hand leadership over, which takes up
	// to the request timeout when the others are stopping too. So stop the
	// followers first (concurrently), then the rest: a leader with no
	// connected peer left skips the hand-over.
	var followers, rest []*embed.Etcd
	for _, m := range c.members {
		switch {
		case m == nil:
		case m.Server.Leader() != m.Server.MemberID():
			followers = append(followers, m)
		default:
			rest = append(rest, m)
		}
	}
	for _, group := range [][]*embed.Etcd{followers, rest} {
		var wg sync.WaitGroup
		for _, m := range group {
			wg.Go(m.Close)
		}
		wg.Wait()
	}
	c.drains.Wait()
	return nil
}

type etcdStore struct {
	cli *clientv3.Client
}

func (s *etcdStore) Put(ctx context.Context, key, val string) error {
	_, err := s.cli.Put(ctx, key, val)
	return err
}

func (s *etcdStore) Get(ctx context.Context, key string, linearizable bool) (string, error) {
	var resp *clientv3.GetResponse
	var err error
	if linearizable {
		resp, err = s.cli.Get(ctx, key)
	} else {
		resp, err = s.cli.Get(ctx, key, clientv3.WithSerializable())
	}
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

func (s *etcdStore) CAS(ctx context.Context, key, old, new string) (bool, error) {
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(key), "=", old)).
		Then(clientv3.OpPut(key, new)).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

func (s *etcdStore) Close() error { return s.cli.Close() }

// KeepLeases implements LeaseCluster: clientv3 Grant and KeepAlive on
// member i, through one client that closes when ctx ends.
func (c *etcdCluster) KeepLeases(ctx context.Context, i, n int, ttl time.Duration, responses *atomic.Int64) error {
	cli := v3client.New(c.members[i%len(c.members)].Server)
	c.drains.Go(func() {
		<-ctx.Done()
		cli.Close()
	})
	secs := int64(ttl / time.Second)
	return grantAll(ctx, n, func(gctx context.Context) error {
		g, err := cli.Grant(gctx, secs)
		if err != nil {
			return err
		}
		ch, err := cli.KeepAlive(ctx, g.ID)
		if err != nil {
			return err
		}
		drain(&c.drains, ch, responses)
		return nil
	})
}

// CommitIndex implements LeaseCluster.
func (c *etcdCluster) CommitIndex() uint64 {
	var idx uint64
	for _, m := range c.members {
		idx = max(idx, m.Server.CommittedIndex())
	}
	return idx
}
