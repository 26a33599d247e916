package concord_test

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/transport"
)

// TestClusterIDKeepsClustersApart: cluster B has the same member names
// as cluster A, and its n3 entry is A's n3's address (an address that
// changed hands). B's n1 and n2 form a quorum, move to a later term than
// A's and write, while their leader sends to "n3". A's n3 refuses the
// connections (another cluster id), so A goes on undisturbed: the same
// term (raft on A's n3 would follow B's leader's later term, and A would
// have to elect again), A's data on n3 and none of B's. The check
// stays silent for an honest cluster: A's and B's members agree on
// their own ids.
func TestClusterIDKeepsClustersApart(t *testing.T) {
	ctx := testCtx(t)
	addrs := freeAddrs(t, 5)
	initialA := map[string]string{"n1": addrs[0], "n2": addrs[1], "n3": addrs[2]}
	initialB := maps.Clone(initialA)
	initialB["n1"], initialB["n2"] = addrs[3], addrs[4]
	open := func(initial map[string]string, tick time.Duration, names ...string) []*concord.Node {
		var ns []*concord.Node
		for _, name := range names {
			cfg := concord.DefaultLocalConfig()
			cfg.Name = name
			cfg.DataDir = t.TempDir()
			cfg.InitialCluster = initial
			cfg.TickInterval = tick
			n, err := concord.Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { n.Close() })
			ns = append(ns, n)
		}
		for _, n := range ns {
			if err := n.Ready(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return ns
	}
	// A's election timeout is 2 s, so that nothing but B makes it elect
	// again during the test.
	a := open(initialA, 200*time.Millisecond, "n1", "n2", "n3")
	put(t, a[0], "x", "A")
	term := a[2].Status().Term
	b := open(initialB, 10*time.Millisecond, "n1", "n2")
	idA, idB := a[2].Status().ClusterID, b[0].Status().ClusterID
	if idA == 0 || idB == 0 || idA == idB {
		t.Fatalf("cluster ids: A %x, B %x: want two distinct, non-zero ids", idA, idB)
	}
	for i, n := range append(a, b...) {
		if id := n.Status().ClusterID; id != idA && id != idB || (i < 3) != (id == idA) {
			t.Fatalf("member %d of %d has cluster id %x (A %x, B %x)", i+1, len(a)+len(b), id, idA, idB)
		}
	}
	for range 2 {
		var lead, next *concord.Node
		eventually(t, 10*time.Second, "a leader in B", func() bool {
			lead, next = b[0], b[1]
			if !lead.IsLeader() {
				lead, next = next, lead
			}
			return lead.IsLeader()
		})
		if err := lead.TransferLeadership(ctx, next.Status().ID); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 300; i++ {
		if _, err := b[i%2].Put(ctx, fmt.Sprintf("b%d", i), "B"); err != nil {
			t.Fatal(err)
		}
	}
	if bt := b[0].Status().Term; bt <= term {
		t.Fatalf("B is in term %d, A in %d: the test needs B later", bt, term)
	}
	r := put(t, a[0], "x", "A2")
	eventually(t, 10*time.Second, "A's n3 to apply A's write", func() bool {
		return get(t, a[2], "x", concord.WithSerializable()).Revision >= r.Revision
	})
	if v := value(t, a[2], "x"); v != "A2" {
		t.Fatalf("A's n3 reads x=%q, want A2", v)
	}
	if g := get(t, a[2], "b", concord.WithPrefix(), concord.WithSerializable()); len(g.Kvs) != 0 {
		t.Fatalf("A's n3 holds %d of B's keys", len(g.Kvs))
	}
	for i, n := range a {
		if got := n.Status().Term; got != term {
			t.Fatalf("A's n%d is in term %d, A was in %d before B started: B's messages reached A", i+1, got, term)
		}
	}
}

// TestClusterIDSurvivesRestart: every member of a static cluster derives
// the same id, a lone node has none, and a member reopened on its data
// dir keeps the id it was created with, whatever the addresses of the
// others in InitialCluster say on later starts (they are read only for
// addresses).
func TestClusterIDSurvivesRestart(t *testing.T) {
	c := newCluster(t, 3)
	id := c.nodes[0].Status().ClusterID
	for i, n := range c.nodes {
		if got := n.Status().ClusterID; got == 0 || got != id {
			t.Fatalf("n%d has cluster id %x, n1 %x", i+1, got, id)
		}
	}
	if got := openOne(t).Status().ClusterID; got != 0 {
		t.Fatalf("a lone node has cluster id %x, want 0", got)
	}
	c.close(2)
	moved := maps.Clone(c.initial)
	moved["n1"] = freeAddrs(t, 1)[0] // another address for n1 in n3's config
	cfg := c.config(2)
	cfg.InitialCluster = moved
	n, err := concord.Open(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if got := n.Status().ClusterID; got != id {
		t.Fatalf("reopened n3 has cluster id %x, want %x", got, id)
	}
}

// TestClusterIDMismatchExplained: two members started with different
// InitialCluster maps derive different cluster ids, refuse each other and
// never form a cluster; Ready's timeout says why.
func TestClusterIDMismatchExplained(t *testing.T) {
	addrs := freeAddrs(t, 3)
	initials := []map[string]string{
		{"n1": addrs[0], "n2": addrs[1]},
		{"n1": addrs[0], "n2": addrs[1], "n3": addrs[2]}, // n2 was told of a third member
	}
	var nodes []*concord.Node
	for i, initial := range initials {
		cfg := concord.DefaultLocalConfig()
		cfg.Name = fmt.Sprintf("n%d", i+1)
		cfg.InitialCluster = initial
		n, err := concord.Open(testCtx(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Second)
	defer cancel()
	err := nodes[0].Ready(ctx)
	wantErr(t, err, concord.ErrTimeout, transport.ErrWrongCluster)
	t.Log(err)
}

// TestClusterIDFollowsCorrectedConfig: a member first started with a
// wrong InitialCluster (a typo in another member's port) is refused by
// the others and never ready; reopened on the same DataDir with the
// right map, it derives the right id and joins. Its id is fixed only once
// it has been in its cluster.
func TestClusterIDFollowsCorrectedConfig(t *testing.T) {
	addrs := freeAddrs(t, 4)
	good := map[string]string{"n1": addrs[0], "n2": addrs[1], "n3": addrs[2]}
	typo := maps.Clone(good)
	typo["n1"] = addrs[3]
	root := t.TempDir()
	open := func(name string, initial map[string]string) *concord.Node {
		cfg := concord.DefaultLocalConfig()
		cfg.Name = name
		cfg.DataDir = filepath.Join(root, name)
		cfg.InitialCluster = initial
		n, err := concord.Open(testCtx(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	n1, n2 := open("n1", good), open("n2", good)
	for _, n := range []*concord.Node{n1, n2} {
		if err := n.Ready(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	n3 := open("n3", typo)
	ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Second)
	defer cancel()
	wantErr(t, n3.Ready(ctx), concord.ErrTimeout, transport.ErrWrongCluster)
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	n3 = open("n3", good)
	if err := n3.Ready(testCtx(t)); err != nil {
		t.Fatalf("reopened with the right InitialCluster: %v", err)
	}
	if got, want := n3.Status().ClusterID, n1.Status().ClusterID; got != want {
		t.Fatalf("n3's cluster id %x, n1's %x", got, want)
	}
}
