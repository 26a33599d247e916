package main

import "testing"

// TestQuickstart runs the example end to end: three nodes replicate, race
// on a compare-and-swap, the leader closes, writes go on, and it comes
// back and catches up.
func TestQuickstart(t *testing.T) {
	if err := run(); err != nil {
		t.Fatal(err)
	}
}
