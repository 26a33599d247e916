package concordtest_test

import (
	"testing"

	"github.com/concordkv/concord/concordtest"
)

// A test of your own code against a three-node cluster whose leader is cut
// off: the others elect a new one, writes go on, and after Heal the old
// leader catches up. In your code this is a func TestXxx(t *testing.T);
// an example gets no t, so this one is compiled, not run
// (TestPartitionedLeaderReplaced runs the same steps).
func Example() {
	testFailover := func(t *testing.T) {
		c := concordtest.NewCluster(t, 3) // every node ready; closed at cleanup
		ctx := t.Context()
		old, err := c.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c.Isolate(old)
		others := []int{(old + 1) % 3, (old + 2) % 3}
		lead, err := c.WaitLeader(ctx, others...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Node(lead).Put(ctx, "config/color", "blue"); err != nil {
			t.Fatal(err)
		}
		c.Heal()
		resp, err := c.Node(old).Get(ctx, "config/color") // linearizable: sees the put
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("old leader reads %v, %v", resp, err)
		}
	}
	_ = testFailover
}
