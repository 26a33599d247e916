// Package concordtest runs concord clusters inside a test: n nodes in
// this process on one in-memory network (transport.Network), with
// partitions, isolation, message faults, stops and restarts, so that you
// can test your own code against leader changes and lost quorums without
// ports, processes or sleeps.
//
// # Usage
//
//	func TestFailover(t *testing.T) {
//		c := concordtest.NewCluster(t, 3, concordtest.OnDisk()) // ready; closed at cleanup
//		ctx := t.Context()
//		lead, err := c.WaitLeader(ctx)
//		...
//		c.Isolate(lead)                         // the others elect a new leader
//		others := []int{(lead + 1) % 3, (lead + 2) % 3}
//		newLead, err := c.WaitLeader(ctx, others...)
//		_, err = c.Node(newLead).Put(ctx, "k", "v")
//		c.Heal()                                // the old leader catches up
//
//		err = c.Stop(1)                         // Node(1) is nil now
//		err = c.Restart(1)                      // same data dir (OnDisk), rejoins
//	}
//
// Nodes are indexed 0..n-1 and named "n1".."nN"; every method takes
// indexes. NewCluster waits until every node is ready; Restart does not
// (call Ready on the node). Nodes use concord.DefaultLocalConfig (10ms
// ticks: an election takes some 100ms to 200ms); Configure adjusts it.
// Network gives the seeded message faults (drop, delay, duplicate,
// reorder, one-way cuts); Seed seeds them.
//
// # Crashes
//
// Stop is a clean Close. A real crash (kill -9) cannot happen inside one
// process: badger locks its directory until closed. To the other nodes,
// Isolate then Stop looks like a crash: the node vanishes mid-conversation.
// What a crash does to the node's own disk is covered by concord's kill -9
// tests, which run nodes in child processes; every acknowledged write is
// fsynced on a quorum, so a clean Close and a kill lose the same: nothing
// acknowledged.
package concordtest
