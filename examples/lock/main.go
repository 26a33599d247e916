// Lock demonstrates how to share a resource between workers with a
// concord Mutex and a Fence: three nodes run in this program on an
// in-memory network; four workers, each with its own session on one of
// them, take the lock in turn and add to a ledger kept in the store,
// every write checked by the fence against the holder's token. Then one
// worker stalls while holding the lock (its session's keep-alives stop,
// as in a long GC pause), loses the lock to another, wakes up and tries to
// write what it computed before the pause: the fence refuses the stale
// token, and no update is lost.
//
// Run it with:
//
//	go run ./examples/lock
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/examples/internal/memcluster"
)

const (
	lockName  = "locks/ledger"
	fenceKey  = "ledger/fence"
	ledgerKey = "ledger/total"
	workers   = 4
	rounds    = 3
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "lock:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes, closeAll, err := memcluster.Start(ctx, []string{"n1", "n2", "n3"})
	if err != nil {
		return err
	}
	defer closeAll()
	fmt.Println("3 nodes up")

	fmt.Printf("\n1. %d workers add to the ledger %d times each, one at a time\n", workers, rounds)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() { errs[w] = worker(ctx, nodes[w%3], w) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	fmt.Println("\n2. a holder stalls past its session's TTL and wakes up after losing the lock")
	if err := stall(ctx, nodes); err != nil {
		return err
	}

	total, err := read(ctx, nodes[2], ledgerKey)
	if err != nil {
		return err
	}
	want := (workers + 1) * rounds // the slow worker's increment was refused
	if total != int64(want) {
		return fmt.Errorf("ledger = %d, want %d", total, want)
	}
	fmt.Printf("\nledger = %d after %d acknowledged increments: nothing lost\n", total, want)
	return nil
}

// worker takes the lock rounds times and adds one to the ledger each time.
func worker(ctx context.Context, n *concord.Node, w int) error {
	s, err := concord.NewSession(n, concord.WithSessionTTL(time.Second))
	if err != nil {
		return err
	}
	defer s.Close()
	m := concord.NewMutex(s, lockName)
	f := concord.NewFence(n, fenceKey)
	for range rounds {
		if err := m.Lock(ctx); err != nil {
			return err
		}
		before, after, err := add(ctx, n, f, m.Token(), nil)
		if err != nil {
			return err
		}
		fmt.Printf("  worker %d (on %s) holds token %d: ledger %d -> %d\n", w, n.Status().Name, m.Token(), before, after)
		if err := m.Unlock(ctx); err != nil {
			return err
		}
	}
	return nil
}

// add advances the fence to token, reads the ledger, runs pause, and
// writes the ledger + 1 through the fence.
func add(ctx context.Context, n *concord.Node, f *concord.Fence, token int64, pause func()) (before, after int64, err error) {
	// Advance the fence first: from now on, writes of earlier holders
	// are refused.
	if _, err := f.Do(ctx, token); err != nil {
		return 0, 0, err
	}
	if before, err = read(ctx, n, ledgerKey); err != nil {
		return 0, 0, err
	}
	if pause != nil {
		pause()
	}
	_, err = f.Do(ctx, token, concord.OpPut(ledgerKey, strconv.FormatInt(before+1, 10)))
	return before, before + 1, err
}

// stall shows a holder that loses the lock in a pause being fenced off.
func stall(ctx context.Context, nodes []*concord.Node) error {
	slow, err := concord.NewSession(nodes[0], concord.WithSessionTTL(500*time.Millisecond))
	if err != nil {
		return err
	}
	defer slow.Close()
	m := concord.NewMutex(slow, lockName)
	if err := m.Lock(ctx); err != nil {
		return err
	}
	fmt.Printf("  the slow worker holds token %d\n", m.Token())
	f := concord.NewFence(nodes[0], fenceKey)
	_, _, err = add(ctx, nodes[0], f, m.Token(), func() {
		slow.Orphan() // the pause: keep-alives stop, the lease expires after its TTL
		fmt.Println("  ... it read the ledger and stalls; its lease expires")
		if err := worker(ctx, nodes[1], 9); err != nil { // meanwhile another worker takes over
			fmt.Println("  worker 9:", err)
		}
		fmt.Println("  ... it wakes up and writes what it computed before the pause")
	})
	if !errors.Is(err, concord.ErrStaleToken) {
		return fmt.Errorf("the stale write was not refused: %v", err)
	}
	fmt.Printf("  refused: %v\n", err)
	return nil
}

func read(ctx context.Context, n *concord.Node, key string) (int64, error) {
	resp, err := n.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return 0, err
	}
	return strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
}
