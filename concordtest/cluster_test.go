package concordtest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// read returns key's value on node n (serializable: what n has applied),
// or "<none>".
func read(t *testing.T, n *concord.Node, key string) string {
	t.Helper()
	r, err := n.Get(testCtx(t), key, concord.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) == 0 {
		return "<none>"
	}
	return string(r.Kvs[0].Value)
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// TestPartitionedLeaderReplaced: a leader partitioned away from the
// majority cannot commit; the majority elects a new leader and goes on;
// after Heal the old leader follows and catches up.
func TestPartitionedLeaderReplaced(t *testing.T) {
	c := concordtest.NewCluster(t, 3)
	ctx := testCtx(t)
	old, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(old).Put(ctx, "k", "before"); err != nil {
		t.Fatal(err)
	}
	others := []int{(old + 1) % 3, (old + 2) % 3}
	c.Partition([]int{old}, others)

	lead, err := c.WaitLeader(ctx, others...)
	if err != nil {
		t.Fatal(err)
	}
	if lead == old {
		t.Fatalf("the partitioned node %d still leads the majority", old)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := c.Node(old).Put(short, "k", "lost"); !errors.Is(err, concord.ErrTimeout) {
		t.Fatalf("put on the partitioned old leader: %v, want ErrTimeout", err)
	}
	if _, err := c.Node(others[0]).Put(ctx, "k", "during"); err != nil {
		t.Fatal(err)
	}
	if v := read(t, c.Node(old), "k"); v != "before" {
		t.Fatalf("the partitioned node reads %q", v)
	}

	c.Heal()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
	// A linearizable read on the old leader sees the majority's write,
	// and its own applied state follows.
	r, err := c.Node(old).Get(ctx, "k")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "during" {
		t.Fatalf("old leader's linearizable read: %+v, %v", r, err)
	}
	if v := read(t, c.Node(old), "k"); v != "during" {
		t.Fatalf("old leader applied %q", v)
	}
}

// TestIsolateThenHeal: an isolated follower falls behind, then catches up.
func TestIsolateThenHeal(t *testing.T) {
	c := concordtest.NewCluster(t, 3)
	ctx := testCtx(t)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := (lead + 1) % 3
	c.Isolate(f)
	for i := range 5 {
		if _, err := c.Node(lead).Put(ctx, "k", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if v := read(t, c.Node(f), "k"); v != "<none>" {
		t.Fatalf("the isolated follower applied %q", v)
	}
	c.Heal()
	waitFor(t, ctx, "the follower to catch up", func() bool { return read(t, c.Node(f), "k") == "4" })
}

// TestRestartKeepsData: a stopped on-disk node comes back with its data,
// and catches up on what it missed.
func TestRestartKeepsData(t *testing.T) {
	c := concordtest.NewCluster(t, 3, concordtest.OnDisk())
	ctx := testCtx(t)
	if _, err := c.Node(0).Put(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "node 1 to apply a", func() bool { return read(t, c.Node(1), "a") == "1" })
	if err := c.Stop(1); err != nil {
		t.Fatal(err)
	}
	if c.Node(1) != nil || c.Nodes()[1] != nil {
		t.Fatal("a stopped node is still listed")
	}
	if err := c.Stop(1); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	resp, err := c.Node(2).Put(ctx, "b", "2") // two of three: still a quorum
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(1); err != nil {
		t.Fatal(err)
	}
	n := c.Node(1)
	if err := n.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	// Ready: caught up with what was committed when it became ready.
	if a, b := read(t, n, "a"), read(t, n, "b"); a != "1" || b != "2" {
		t.Fatalf("restarted node reads a=%q b=%q", a, b)
	}
	if rev := n.Status().Revision; rev < resp.Revision {
		t.Fatalf("restarted node at revision %d, want >= %d", rev, resp.Revision)
	}
	if err := c.Restart(1); err == nil || !strings.Contains(err.Error(), "it is running") {
		t.Fatalf("Restart of a running node: %v", err)
	}
}

// TestRestartNeedsOnDisk: an in-memory node cannot be restarted; the
// error says why.
func TestRestartNeedsOnDisk(t *testing.T) {
	c := concordtest.NewCluster(t, 1)
	if err := c.Stop(0); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(0); err == nil || !strings.Contains(err.Error(), "needs the OnDisk option") {
		t.Fatalf("Restart in memory: %v", err)
	}
}

// TestConfigure: the Configure option shapes every open of a node, the
// restarts included.
func TestConfigure(t *testing.T) {
	opened := map[int]int{}
	c := concordtest.NewCluster(t, 3, concordtest.OnDisk(), concordtest.Configure(func(i int, cfg *concord.Config) {
		opened[i]++ // NewCluster and Restart open nodes one at a time
		cfg.MaxKeySize = 8
	}))
	ctx := testCtx(t)
	if _, err := c.Node(0).Put(ctx, "123456789", "v"); !errors.Is(err, concord.ErrKeyTooLarge) {
		t.Fatalf("Configure not applied: %v", err)
	}
	if err := c.Stop(2); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(2).Put(ctx, "123456789", "v"); !errors.Is(err, concord.ErrKeyTooLarge) {
		t.Fatalf("Configure not applied on restart: %v", err)
	}
	if opened[0] != 1 || opened[1] != 1 || opened[2] != 2 {
		t.Fatalf("Configure calls by node: %v", opened)
	}
	if c.Len() != 3 || c.Name(2) != "n3" || c.Node(2).Status().Name != "n3" {
		t.Fatalf("Len %d, Name(2) %q", c.Len(), c.Name(2))
	}
}
