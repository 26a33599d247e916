package concord_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

// TestLinearizabilityCheckerCatchesStaleReads is the negative control of
// TestLinearizability: the same recorder, model and check must reject a
// history that is not linearizable. Serializable reads on a member cut off
// from the others, while the others write, return stale values; porcupine
// must call that history Illegal, and the same history without those reads
// Ok (so it is the stale reads it caught, not a recording bug).
func TestLinearizabilityCheckerCatchesStaleReads(t *testing.T) {
	c := concordtest.NewCluster(t, 3)
	ctx := testCtx(t)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stale, key := (lead+1)%3, linKey(0)
	rec := newRecorder()
	const reader = 2 // client ids 0, 1 write
	if _, ok := rec.put(ctx, c.Node(lead), 0, key, "v0"); !ok {
		t.Fatal("first put failed")
	}
	eventually(t, 10*time.Second, "the stale-to-be member to apply v0", func() bool {
		return value(t, c.Node(stale), key, concord.WithSerializable()) == "v0"
	})
	c.Isolate(stale)
	rec.note(nil, "isolate n%d", stale+1)

	writers := []int{lead, (lead + 2) % 3}
	var wg sync.WaitGroup
	for id, i := range writers {
		wg.Go(func() {
			prev := ""
			for k := range 10 {
				v := fmt.Sprintf("c%d-%d", id, k)
				if k%2 == 0 || prev == "" {
					prev, _ = rec.put(ctx, c.Node(i), id, key, v)
				} else {
					rec.cas(ctx, c.Node(i), id, key, prev, v)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	reads := func() {
		if _, ok := rec.get(ctx, c.Node(stale), reader, key, concord.WithSerializable()); !ok {
			t.Error("a serializable read failed")
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			reads()
		}
	}
	for range 3 { // after every write returned: surely stale
		reads()
	}
	if rec.stats.writesOK < 10 {
		t.Fatalf("only %d writes succeeded on the majority", rec.stats.writesOK)
	}

	dir := t.TempDir()
	if res := linCheck(t, rec.history, rec.notes, dir); res != porcupine.Illegal {
		t.Fatalf("porcupine says %s for stale serializable reads, want Illegal", res)
	}
	if fi, err := os.Stat(filepath.Join(dir, "history.html")); err != nil || fi.Size() == 0 {
		t.Fatalf("no visualization written: %v", err)
	}
	var fresh []porcupine.Operation
	for _, op := range rec.history {
		if op.ClientId != reader {
			fresh = append(fresh, op)
		}
	}
	if res := porcupine.CheckOperationsTimeout(linModel, fresh, linCheckTime); res != porcupine.Ok {
		t.Fatalf("porcupine says %s for the writes alone, want Ok", res)
	}
}
