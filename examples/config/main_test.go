package main

import "testing"

// TestConfig runs the example end to end: a config stored on one node
// reaches the others, and two concurrent Updates both apply.
func TestConfig(t *testing.T) {
	if err := run(); err != nil {
		t.Fatal(err)
	}
}
