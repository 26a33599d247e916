package concord_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/internal/testca"
)

// TestClusterReplicates: writes on any member are visible to linearizable
// reads on every member at once.
func TestClusterReplicates(t *testing.T) {
	c := newCluster(t, 3)
	ctx := testCtx(t)
	for i, n := range c.nodes {
		r, err := n.Put(ctx, fmt.Sprintf("k%d", i), c.names[i])
		if err != nil {
			t.Fatal(err)
		}
		// Every member reads it right away, leader or not.
		for j, m := range c.nodes {
			g, err := m.Get(ctx, fmt.Sprintf("k%d", i))
			if err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != c.names[i] || g.Revision < r.Revision {
				t.Fatalf("n%d reads k%d: %+v %v", j+1, i, g, err)
			}
		}
	}
	lead := c.leader()
	leadID := c.nodes[lead].Status().ID
	for i, n := range c.nodes {
		ms, err := n.Members(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range ms {
			names = append(names, m.Name)
			if m.PeerAddr != c.initial[m.Name] || m.IsLearner {
				t.Fatalf("member %+v", m)
			}
		}
		if !slices.Equal(names, []string{"n1", "n2", "n3"}) {
			t.Fatalf("n%d sees members %v", i+1, names)
		}
		eventually(t, 10*time.Second, "every member to know the leader", func() bool {
			l, ok := n.Leader()
			return ok && l.ID == leadID && l.Name == c.names[lead] && l.PeerAddr == c.initial[c.names[lead]]
		})
	}
	// Revisions agree across members.
	revs := map[int64]bool{}
	for _, n := range c.nodes {
		revs[get(t, n, "k0").Revision] = true
	}
	if len(revs) != 1 {
		t.Fatalf("members disagree on the revision: %v", revs)
	}
}

// TestClusterSurvivesLeaderClose: the leader closes, the others elect a
// new one and take writes; the old leader reopens its data dir and
// catches up.
func TestClusterSurvivesLeaderClose(t *testing.T) {
	c := newCluster(t, 3)
	ctx := testCtx(t)
	put(t, c.nodes[0], "before", "1")
	old := c.leader()
	c.close(old)
	lead := c.leader()
	if lead == old {
		t.Fatal("closed node still leads")
	}
	var last *concord.PutResponse
	for i := range 20 {
		var err error
		last, err = c.nodes[(old+1)%3].Put(ctx, "counter", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
	}
	n := c.open(old)
	if err := n.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	// Ready means caught up to what was committed when it became ready:
	// even a serializable read sees the writes made while it was away.
	if v := value(t, n, "counter", concord.WithSerializable()); v != "19" {
		t.Fatalf("reopened member reads counter = %q", v)
	}
	if st := n.Status(); st.Revision < last.Revision {
		t.Fatalf("reopened member at revision %d, last write %d", st.Revision, last.Revision)
	}
	if v := value(t, n, "before"); v != "1" {
		t.Fatalf("before = %q", v)
	}
	// It takes writes again.
	put(t, n, "after", "1")
}

// TestClusterNoQuorum: without a quorum, writes and linearizable reads end
// with ErrTimeout at their deadline; serializable reads still work.
func TestClusterNoQuorum(t *testing.T) {
	c := newCluster(t, 3)
	put(t, c.nodes[2], "k", "v")
	c.close(0)
	c.close(1)
	n := c.nodes[2]
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	before := n.Status().Revision
	_, err := n.Put(short(), "k", "w")
	wantErr(t, err, concord.ErrTimeout, context.DeadlineExceeded)
	_, err = n.Get(short(), "k")
	wantErr(t, err, concord.ErrTimeout, context.DeadlineExceeded)
	if v := value(t, n, "k", concord.WithSerializable()); v != "v" {
		t.Fatalf("serializable read = %q", v)
	}
	if after := n.Status().Revision; after != before {
		t.Fatalf("revision moved without a quorum: %d -> %d", before, after)
	}
	// The quorum comes back: the abandoned put may apply, a new one does.
	c.open(0)
	if _, err := n.Put(testCtx(t), "k", "x"); err != nil {
		t.Fatal(err)
	}
}

func TestClusterTransferLeadership(t *testing.T) {
	c := newCluster(t, 3)
	ctx := testCtx(t)
	lead := c.leader()
	to, third := (lead+1)%3, (lead+2)%3
	// Asked on the leader.
	if err := c.nodes[lead].TransferLeadership(ctx, c.nodes[to].Status().ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the target to lead", c.nodes[to].IsLeader)
	put(t, c.nodes[lead], "k", "v")
	// Asked on the member taking over.
	if err := c.nodes[third].TransferLeadership(ctx, c.nodes[third].Status().ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the target to lead", c.nodes[third].IsLeader)
	// Asked on a third member (once it knows who leads).
	thirdID := c.nodes[third].Status().ID
	eventually(t, 10*time.Second, "the news to spread", func() bool { return c.nodes[to].Status().Leader == thirdID })
	wantErr(t, c.nodes[to].TransferLeadership(ctx, c.nodes[lead].Status().ID), concord.ErrNotLeader)
	put(t, c.nodes[to], "k", "w")
}

// TestClusterCASRace: members race to swap one key; exactly one wins.
func TestClusterCASRace(t *testing.T) {
	c := newCluster(t, 3)
	put(t, c.nodes[0], "lock", "free")
	ctx := testCtx(t)
	var mu sync.Mutex
	var winners []string
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		for g := range 4 {
			wg.Go(func() {
				who := fmt.Sprintf("n%d/%d", i+1, g)
				_, err := n.CompareAndSwap(ctx, "lock", "free", who)
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, who)
					mu.Unlock()
				case !errors.Is(err, concord.ErrCompareFailed):
					t.Errorf("%s: %v", who, err)
				}
			})
		}
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("winners %v, want exactly one", winners)
	}
	for _, n := range c.nodes {
		if v := value(t, n, "lock"); v != winners[0] {
			t.Fatalf("lock = %q, winner %q", v, winners[0])
		}
	}
}

// TestPutSequentialConcurrent: sequential keys made concurrently on every
// member are unique and sort in creation order.
func TestPutSequentialConcurrent(t *testing.T) {
	c := newCluster(t, 3)
	ctx := testCtx(t)
	const perWorker = 5
	var mu sync.Mutex
	made := map[string]int64{}
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		for w := range 4 {
			wg.Go(func() {
				for j := range perWorker {
					k, r, err := n.PutSequential(ctx, "jobs/", fmt.Sprintf("n%d-%d-%d", i+1, w, j))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if _, dup := made[k]; dup {
						t.Errorf("key %q made twice", k)
					}
					made[k] = r.Revision
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	g := get(t, c.nodes[0], "jobs/", concord.WithPrefix())
	if len(g.Kvs) != 3*4*perWorker || len(made) != len(g.Kvs) {
		t.Fatalf("%d keys stored, %d made", len(g.Kvs), len(made))
	}
	for i, kv := range g.Kvs {
		if made[string(kv.Key)] != kv.CreateRevision {
			t.Fatalf("%s: created at %d, put said %d", kv.Key, kv.CreateRevision, made[string(kv.Key)])
		}
		if i > 0 && kv.CreateRevision <= g.Kvs[i-1].CreateRevision {
			t.Fatalf("key order is not creation order: %s@%d after %s@%d", kv.Key, kv.CreateRevision, g.Kvs[i-1].Key, g.Kvs[i-1].CreateRevision)
		}
	}
}

// TestClusterLeave: a member leaves for good; the others go on as two,
// and its data dir cannot be reopened.
func TestClusterLeave(t *testing.T) {
	c := newCluster(t, 3)
	ctx := testCtx(t)
	put(t, c.nodes[0], "k", "v")
	lead := c.leader()
	if err := c.nodes[lead].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	left := c.nodes[lead]
	c.nodes[lead] = nil
	if _, err := left.Get(ctx, "k"); !errors.Is(err, concord.ErrClosed) {
		t.Fatalf("Get after Leave: %v", err)
	}
	rest := c.nodes[(lead+1)%3]
	eventually(t, 10*time.Second, "two members", func() bool {
		ms, err := rest.Members(ctx)
		return err == nil && len(ms) == 2
	})
	put(t, rest, "k", "w")
	_, err := concord.Open(ctx, c.config(lead))
	wantErr(t, err, concord.ErrInvalidConfig)
}

// TestClusterPeerTLS: members with certificates from one CA form a
// cluster over mutual TLS.
func TestClusterPeerTLS(t *testing.T) {
	ca, err := testca.New("concord-test")
	if err != nil {
		t.Fatal(err)
	}
	addrs := freeAddrs(t, 3)
	initial := map[string]string{"t1": addrs[0], "t2": addrs[1], "t3": addrs[2]}
	var nodes []*concord.Node
	for _, name := range []string{"t1", "t2", "t3"} {
		cfg := concord.DefaultLocalConfig()
		cfg.Name = name
		cfg.InitialCluster = initial
		if cfg.PeerTLS, err = ca.PeerTLS(name); err != nil {
			t.Fatal(err)
		}
		n, err := concord.Open(testCtx(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	put(t, nodes[0], "k", "over tls")
	if v := value(t, nodes[2], "k"); v != "over tls" {
		t.Fatalf("k = %q", v)
	}
}
