package concord_test

import (
	"testing"
	"time"
)

// TestGossipBootstrapExpect: three members with BootstrapExpect 3 and the
// same seeds form one cluster of three voters.
func TestGossipBootstrapExpect(t *testing.T) {
	g := newGossipCluster(t, 3, 3)
	for _, name := range names("g", 1, 3) {
		g.open(name)
	}
	g.waitRoles(30*time.Second, names("g", 1, 3), nil)
	g.sameCluster("k")
}
