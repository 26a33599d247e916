package main

import "testing"

// TestQueueExample runs the example end to end: the crashed worker's two
// jobs are redelivered, and every job is done exactly once.
func TestQueueExample(t *testing.T) {
	if err := run(); err != nil {
		t.Fatal(err)
	}
}
