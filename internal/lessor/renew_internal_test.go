package lessor

import (
	"testing"
	"time"
)

// TestRenewClearsAfterAnInFlightCheckpoint: a renewal that finds a
// checkpoint of its lease queued but not proposed drops it (nothing to
// clear), unless an earlier checkpoint of the lease is still being
// proposed: that one lands after the renewal, with the remaining time
// from before it, so the renewal must queue a clear and wait for it.
func TestRenewClearsAfterAnInFlightCheckpoint(t *testing.T) {
	for _, flying := range []bool{false, true} {
		p := &primary{et: time.Second, ckpt: map[int64]time.Duration{}, flying: map[int64]int{}}
		ls := &lease{id: 1, ttl: 9 * time.Second, recorded: true, idx: -1}
		p.ckpt[1] = 5 * time.Second // queued by the checkpointer's tick
		if flying {
			p.flying[1] = 1
		}
		clear := (&Lessor{}).renewLocked(p, ls, time.Now())
		rem, queued := p.ckpt[1]
		switch {
		case !flying && (clear || queued):
			t.Fatalf("nothing in flight: clear %v, queued %v (%v); want the queued checkpoint dropped", clear, queued, rem)
		case flying && (!clear || !queued || rem != 0):
			t.Fatalf("a checkpoint in flight: clear %v, queued %v (%v); want a clear queued", clear, queued, rem)
		}
		if ls.recorded {
			t.Fatal("the renewal left the lease marked checkpointed")
		}
	}
}
