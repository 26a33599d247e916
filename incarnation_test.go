package concord_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// recordedCluster is newClusterWith, waiting until every member's
// incarnation is recorded everywhere.
func recordedCluster(t *testing.T, size int, edit func(*concord.Config)) *cluster {
	t.Helper()
	c := newClusterWith(t, size, edit)
	for i := range size {
		c.recorded(i)
	}
	return c
}

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
			c := recordedCluster(t, 3, tc.edit)
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
	c := recordedCluster(t, 3, nil)
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

// settled waits until every open member sees every member as a voter, none
// marked to rejoin, each with the incarnation it reports, and checks that
// no open node stopped.
func (c *cluster) settled(d time.Duration) {
	c.t.Helper()
	eventually(c.t, d, "every member a voter with its incarnation recorded", func() bool {
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(testCtx(c.t), 2*time.Second)
			ms, err := n.Members(ctx)
			cancel()
			if err != nil || len(ms) != len(c.names) {
				return false
			}
			for _, m := range ms {
				for i, name := range c.names {
					if name == m.Name && c.nodes[i] != nil && (m.IsLearner || m.Rejoining || m.Incarnation != c.nodes[i].Status().Incarnation) {
						return false
					}
				}
			}
		}
		return true
	})
	for i, n := range c.nodes {
		if n != nil && n.Err() != nil {
			c.t.Fatalf("%s stopped: %v", c.names[i], n.Err())
		}
	}
}

// writeAll puts count keys under prefix through the members in turn.
func (c *cluster) writeAll(prefix string, count int) {
	c.t.Helper()
	var open []*concord.Node
	for _, n := range c.nodes {
		if n != nil {
			open = append(open, n)
		}
	}
	for i := range count {
		put(c.t, open[i%len(open)], fmt.Sprintf("%s%04d", prefix, i), "v")
	}
}

// readAll checks that every open member holds the count keys of prefix.
func (c *cluster) readAll(prefix string, count int) {
	c.t.Helper()
	for j, n := range c.nodes {
		if n == nil {
			continue
		}
		for i := range count {
			if got := value(c.t, n, fmt.Sprintf("%s%04d", prefix, i)); got != "v" {
				c.t.Fatalf("%s: %s%04d = %q", c.names[j], prefix, i, got)
			}
		}
	}
}

func (c *cluster) wipe(i int) {
	c.t.Helper()
	c.close(i)
	if err := os.RemoveAll(c.dirs[i]); err != nil {
		c.t.Fatal(err)
	}
}

// TestWipedMemberAddedBackUnderLoad covers what a helper's review found
// halting the wiped member ("tocommit out of range": the leader still
// counted entries it lost): writes right after the wiped member is back,
// two members of five wiped at once, a learner wiped again once caught
// up, and a member wiped before its incarnation was recorded anywhere.
func TestWipedMemberAddedBackUnderLoad(t *testing.T) {
	t.Run("write-at-once", func(t *testing.T) {
		c := recordedCluster(t, 3, nil)
		c.writeAll("a", 100)
		f := (c.leader() + 1) % 3
		c.wipe(f)
		c.open(f)
		c.writeAll("b", 20)
		c.settled(30 * time.Second)
		c.readAll("a", 100)
		c.readAll("b", 20)
	})
	t.Run("two-of-five", func(t *testing.T) {
		c := recordedCluster(t, 5, nil)
		c.writeAll("a", 100)
		c.wipe(3)
		c.wipe(4)
		c.open(3)
		c.open(4)
		c.writeAll("b", 20)
		c.settled(60 * time.Second)
		c.readAll("a", 100)
		c.readAll("b", 20)
	})
	t.Run("learner-wiped-again", func(t *testing.T) {
		c := recordedCluster(t, 3, nil)
		c.writeAll("a", 200)
		c.wipe(2)
		c.open(2)
		lead := c.nodes[c.leader()]
		eventually(t, 30*time.Second, "n3 a caught-up learner", func() bool {
			m, ok := memberNamed(t, lead, "n3")
			return ok && m.IsLearner && m.Lag == 0
		})
		c.wipe(2)
		c.open(2)
		c.writeAll("b", 50)
		c.settled(30 * time.Second)
		c.readAll("a", 200)
		c.readAll("b", 50)
	})
	t.Run("before-recorded", func(t *testing.T) {
		c := newCluster(t, 3)
		c.wipe(2)
		c.open(2)
		c.writeAll("a", 20)
		c.settled(30 * time.Second)
		c.readAll("a", 20)
	})
}
