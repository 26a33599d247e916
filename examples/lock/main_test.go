package main

import "testing"

// TestLockExample runs the example end to end: workers share the ledger
// under the lock, and a stalled holder's late write is fenced off.
func TestLockExample(t *testing.T) {
	if err := run(); err != nil {
		t.Fatal(err)
	}
}
