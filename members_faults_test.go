package concord_test

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/concordkv/concord"
)

// TestLeaveInFlightWritesGetErrClosed: calls in flight when Leave's
// removal stops the node return ErrClosed, as from Close, not the
// ErrRemoved of a member removed by others.
func TestLeaveInFlightWritesGetErrClosed(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	leader := c.nodes[lead]
	ctx := testCtx(t)
	var mu sync.Mutex
	var bad []error
	started := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				_, err := leader.Put(ctx, fmt.Sprintf("w%d/%d", w, i), "v")
				if i == 0 {
					started <- struct{}{}
				}
				if errors.Is(err, concord.ErrClosed) {
					return
				}
				if err != nil {
					mu.Lock()
					bad = append(bad, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	for range 8 {
		<-started
	}
	if err := leader.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	c.nodes[lead] = nil
	wg.Wait()
	for _, err := range bad {
		t.Errorf("a write in flight during Leave: %v, want ErrClosed", err)
	}
}

// TestFailedOpenLeavesNoGoroutine: an Open that fails late (its gossip
// port is taken) stops everything it started.
func TestFailedOpenLeavesNoGoroutine(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ignore := goleak.IgnoreCurrent()
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "g1"
	cfg.DataDir = t.TempDir()
	cfg.PeerAddr = freeAddrs(t, 1)[0]
	cfg.GossipAddr = busy.Addr().String()
	n, err := concord.Open(testCtx(t), cfg)
	if err == nil {
		n.Close()
		t.Fatal("Open succeeded on a gossip port in use")
	}
	if err := goleak.Find(ignore); err != nil {
		t.Fatalf("goroutines left by a failed Open (%v): %v", err, err)
	}
}
