package main

import "testing"

// TestDiscovery runs the example end to end: three instances register, a
// client watches them, one deregisters, another's process dies and its
// instance vanishes once its session expires.
func TestDiscovery(t *testing.T) {
	if err := run(); err != nil {
		t.Fatal(err)
	}
}
