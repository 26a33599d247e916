package main

import "testing"

// TestQuickstart runs the example end to end: three peers replicate, the
// leader stops, writes go on, and it comes back and catches up.
func TestQuickstart(t *testing.T) {
	if err := run(); err != nil {
		t.Fatal(err)
	}
}
