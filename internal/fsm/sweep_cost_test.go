package fsm_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/concordkv/concord/internal/fsm"
)

// TestSweepPaysForTheCostliestKey: the sweep's credit covers one event on
// a key of MaxKeySize zero bytes (a tombstone with a predecessor, the
// costliest event), so a compaction's history below the compact revision
// goes, instead of the sweep stopping at that event for good.
func TestSweepPaysForTheCostliestKey(t *testing.T) {
	nd := startNode(t, false)
	big := strings.Repeat("\x00", fsm.MaxKeySize)
	mustOK(t, nd.propose(put(big, "1")))
	mustOK(t, nd.propose(put(big, "2")))
	mustOK(t, nd.propose(del(big, "")))
	for i := range 200 {
		mustOK(t, nd.propose(put(fmt.Sprint("k", i%5), fmt.Sprint(i))))
	}
	c := nd.f.Revision()
	mustOK(t, nd.propose(compact(c)))
	for range 2000 {
		mustOK(t, nd.propose(put("z", "v")))
	}
	// Left below c: the newest put of each of k0..k4 and of nothing else.
	if n := historyBelow(t, nd, c); n > 5+1 {
		t.Fatalf("after 2000 writes, %d history events are still below the compact revision %d: the sweep is stuck", n, c)
	}
}
