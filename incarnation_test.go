package concord_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// recorded waits until every open member of c has recorded the
// incarnation of member i as node i reports it.
func (c *cluster) recorded(i int) {
	c.t.Helper()
	want := c.nodes[i].Status().Incarnation
	if want == 0 {
		c.t.Fatalf("%s: Status.Incarnation is 0", c.names[i])
	}
	eventually(c.t, 20*time.Second, fmt.Sprintf("%s's incarnation recorded everywhere", c.names[i]), func() bool {
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			m, ok := memberNamed(c.t, n, c.names[i])
			if !ok || m.Incarnation != want {
				return false
			}
		}
		return true
	})
}

func memberNamed(t *testing.T, n *concord.Node, name string) (concord.Member, bool) {
	t.Helper()
	ms, err := n.Members(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name == name {
			return m, true
		}
	}
	return concord.Member{}, false
}

// TestWipedMemberRejoinsAsLearner: a member whose data is lost (its data
// dir wiped, or kept in memory) comes back under its name with new data.
// It is taken out and added back as a learner, catches up (from the log
// or from a snapshot), and is a voter again with its new incarnation
// recorded, holding everything written before.
func TestWipedMemberRejoinsAsLearner(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*concord.Config)
	}{
		{"log", nil},
		{"snapshot", func(c *concord.Config) { c.SnapshotEntries, c.SnapshotCatchUpEntries = 40, 10 }},
		{"memory", func(c *concord.Config) {
			if c.Name == "n3" {
				c.DataDir = ""
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClusterWith(t, 3, tc.edit)
			for i := range 3 {
				c.recorded(i)
			}
			for i := range 100 {
				put(t, c.nodes[i%3], fmt.Sprintf("k%03d", i), "v")
			}
			old := c.nodes[2].Status().Incarnation
			c.close(2)
			if err := os.RemoveAll(c.dirs[2]); err != nil {
				t.Fatal(err)
			}
			n3 := c.open(2)
			if inc := n3.Status().Incarnation; inc == old || inc == 0 {
				t.Fatalf("wiped member's incarnation %x, before %x: want a new one", inc, old)
			}
			lead := c.nodes[c.leader()]
			learner := false
			eventually(t, 30*time.Second, "n3 back as a voter with its new incarnation", func() bool {
				m, ok := memberNamed(t, lead, "n3")
				learner = learner || m.IsLearner
				return ok && !m.IsLearner && !m.Rejoining && m.Incarnation == n3.Status().Incarnation
			})
			if !learner {
				t.Fatal("n3 came back with new data but was never seen as a learner")
			}
			if err := n3.Err(); err != nil {
				t.Fatalf("rejoined member stopped: %v", err)
			}
			for i := range 100 {
				if got := value(t, n3, fmt.Sprintf("k%03d", i), concord.WithSerializable()); got != "v" {
					t.Fatalf("k%03d on the rejoined member = %q", i, got)
				}
			}
			put(t, n3, "after", "rejoin")
		})
	}
}

// TestWipedMemberCannotUndoCommit: the write "e" is committed on n1 and
// n3 while n2 is down. n1 goes down, n3's data is wiped, and n2 and n3
// start. As voters they would elect n2, whose log lacks "e" (n3 no longer
// remembers it), and "e" would be lost. n2 refuses n3's new incarnation,
// so no leader is elected until n1 is back, and "e" survives.
func TestWipedMemberCannotUndoCommit(t *testing.T) {
	c := newCluster(t, 3)
	for i := range 3 {
		c.recorded(i)
	}
	c.close(1)
	put(t, c.nodes[0], "e", "committed")
	c.close(0)
	c.close(2)
	if err := os.RemoveAll(c.dirs[2]); err != nil {
		t.Fatal(err)
	}
	c.open(2)
	c.open(1)
	// Without the guard n2 and n3 elect a leader within a few election
	// timeouts (100 ms each here); watch for 30 of them.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, i := range []int{1, 2} {
			if l := c.nodes[i].Status().Leader; l != 0 {
				t.Fatalf("%s sees leader %x with n1 down and n3 wiped: a wiped member voted", c.names[i], l)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.open(0)
	for _, n := range c.nodes {
		if err := n.Ready(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range c.nodes {
		if got := value(t, n, "e"); got != "committed" {
			t.Fatalf("%s: e = %q after the wiped member rejoined, want the committed write", c.names[i], got)
		}
	}
	c.recorded(2)
	eventually(t, 30*time.Second, "n3 a voter again", func() bool {
		m, ok := memberNamed(t, c.nodes[0], "n3")
		return ok && !m.IsLearner && !m.Rejoining
	})
}
