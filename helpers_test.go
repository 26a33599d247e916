package concord_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/internal/testnet"
)

// testCtx returns a context bounding a whole test: generous, since it only
// catches hangs.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openOne opens a ready one-node in-memory cluster, closed at cleanup.
func openOne(t *testing.T) *concord.Node {
	t.Helper()
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "solo"
	return openReady(t, cfg)
}

func openReady(t *testing.T, cfg concord.Config) *concord.Node {
	t.Helper()
	ctx := testCtx(t)
	n, err := concord.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

func put(t *testing.T, n *concord.Node, key, val string, opts ...concord.OpOption) *concord.PutResponse {
	t.Helper()
	resp, err := n.Put(testCtx(t), key, val, opts...)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return resp
}

func get(t *testing.T, n *concord.Node, key string, opts ...concord.OpOption) *concord.GetResponse {
	t.Helper()
	resp, err := n.Get(testCtx(t), key, opts...)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return resp
}

// keys returns the keys of kvs; values(kvs) their values.
func keys(kvs []*concord.KeyValue) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

func values(kvs []*concord.KeyValue) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, string(kv.Value))
	}
	return out
}

// value returns key's value, or "<none>".
func value(t *testing.T, n *concord.Node, key string, opts ...concord.OpOption) string {
	t.Helper()
	r := get(t, n, key, opts...)
	if len(r.Kvs) == 0 {
		return "<none>"
	}
	return string(r.Kvs[0].Value)
}

// wantErr fails unless err is each of targets.
func wantErr(t *testing.T, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("error %q is not %q", err, target)
		}
	}
}

// unchanged runs f, which must fail with want, and checks that the store's
// revision did not move.
func unchanged(t *testing.T, n *concord.Node, want error, f func() error) {
	t.Helper()
	before := n.Status().Revision
	wantErr(t, f(), want)
	// A refused write never reaches raft; a barrier makes sure nothing in
	// flight could still apply.
	if _, err := n.Get(testCtx(t), "barrier"); err != nil {
		t.Fatal(err)
	}
	if after := n.Status().Revision; after != before {
		t.Fatalf("revision moved from %d to %d", before, after)
	}
}

// eventually polls cond every few milliseconds until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}

// freeAddrs returns n loopback addresses outside the ephemeral range
// (see internal/testnet).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	out, err := testnet.FreeAddrs(n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cluster is a static cluster of nodes on loopback TCP in this process.
type cluster struct {
	t       *testing.T
	initial map[string]string
	names   []string
	dirs    []string
	nodes   []*concord.Node
	edit    func(*concord.Config) // applied to every config, if set
}

// newCluster opens size nodes ("n1".."nN") with data dirs, and waits until
// all are ready.
func newCluster(t *testing.T, size int) *cluster {
	t.Helper()
	return newClusterWith(t, size, nil)
}

// newClusterWith is newCluster with edit applied to every node's config.
func newClusterWith(t *testing.T, size int, edit func(*concord.Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, initial: map[string]string{}, edit: edit}
	root := t.TempDir()
	for i, addr := range freeAddrs(t, size) {
		name := fmt.Sprintf("n%d", i+1)
		c.names = append(c.names, name)
		c.dirs = append(c.dirs, filepath.Join(root, name))
		c.initial[name] = addr
	}
	c.nodes = make([]*concord.Node, size)
	for i := range c.nodes {
		c.open(i)
	}
	for i := range c.nodes {
		if err := c.nodes[i].Ready(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n != nil {
				n.Close()
			}
		}
	})
	return c
}

func (c *cluster) config(i int) concord.Config {
	cfg := concord.DefaultLocalConfig()
	cfg.Name = c.names[i]
	cfg.DataDir = c.dirs[i]
	cfg.InitialCluster = c.initial
	if c.edit != nil {
		c.edit(&cfg)
	}
	return cfg
}

// open (re)opens node i on its data dir.
func (c *cluster) open(i int) *concord.Node {
	c.t.Helper()
	n, err := concord.Open(testCtx(c.t), c.config(i))
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[i] = n
	return n
}

// close closes node i.
func (c *cluster) close(i int) {
	c.t.Helper()
	if err := c.nodes[i].Close(); err != nil {
		c.t.Fatal(err)
	}
	c.nodes[i] = nil
}

// leader waits until some open node leads and returns its index.
func (c *cluster) leader() int {
	c.t.Helper()
	lead := -1
	eventually(c.t, 20*time.Second, "a leader", func() bool {
		for i, n := range c.nodes {
			if n != nil && n.IsLeader() {
				lead = i
				return true
			}
		}
		return false
	})
	return lead
}
