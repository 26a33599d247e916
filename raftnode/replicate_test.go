package raftnode_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
)

// TestReplicateConcurrentTCP: 3- and 5-peer clusters on TCP loopback
// replicate 10k proposals made concurrently from every peer; every peer
// applies the identical sequence, each command exactly once, and every
// proposer's result matches the command's position in that sequence.
func TestReplicateConcurrentTCP(t *testing.T) {
	for _, peers := range []int{3, 5} {
		t.Run(fmt.Sprintf("peers=%d", peers), func(t *testing.T) {
			testReplicateConcurrent(t, peers)
		})
	}
}

func testReplicateConcurrent(t *testing.T, peers int) {
	const (
		total     = 10000
		perPeer   = 16 // proposing goroutines per peer
		chainWait = 60 * time.Second
	)
	c := raftnodetest.NewCluster(t, raftnodetest.Options{Peers: peers, TCP: true})
	ctx, cancel := context.WithTimeout(context.Background(), chainWait)
	defer cancel()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	// Worker w proposes commands w, w+workers, w+2*workers, ... one at a
	// time on peer w%peers, and records the result: the command's 1-based
	// position in the applied sequence.
	workers := peers * perPeer
	pos := make([]uint64, total)
	errC := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		n := c.Node(w % peers)
		wg.Go(func() {
			for k := w; k < total; k += workers {
				res, err := n.Propose(ctx, raftnodetest.AppendCmd(replicatePayload(k)))
				if err != nil {
					errC <- fmt.Errorf("worker %d, proposal %d on peer %d: %w", w, k, n.ID(), err)
					return
				}
				if len(res) != 8 {
					errC <- fmt.Errorf("proposal %d: result %x, want an 8-byte count", k, res)
					return
				}
				pos[k] = binary.BigEndian.Uint64(res)
			}
		})
	}
	wg.Wait()
	close(errC)
	for err := range errC {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	proposed := time.Since(start)

	// Each result is a distinct position in 1..total: every command
	// applied exactly once. A worker's commands are sequential, so their
	// positions increase.
	seen := make([]bool, total+1)
	for k, p := range pos {
		if p == 0 || p > total || seen[p] {
			t.Fatalf("proposal %d got position %d: out of range or duplicate", k, p)
		}
		seen[p] = true
		if k >= workers && pos[k-workers] >= p {
			t.Fatalf("worker %d: proposal %d at position %d after proposal %d at %d", k%workers, k, p, k-workers, pos[k-workers])
		}
	}

	// Every peer applied the same commands at the same entry indexes.
	var wantSeq [][]byte
	var wantIdx []uint64
	var wantChain []byte
	for i := range peers {
		n := c.Node(i)
		chain, count := readState(ctx, t, n)
		if count != total {
			t.Fatalf("peer %d: state counts %d commands, want %d", i+1, count, total)
		}
		seq, idx := c.Peer(i).KV.Applied()
		if len(seq) != total {
			t.Fatalf("peer %d applied %d commands, want %d", i+1, len(seq), total)
		}
		if i == 0 {
			wantSeq, wantIdx, wantChain = seq, idx, chain
			for k, p := range pos {
				if want := raftnodetest.AppendCmd(replicatePayload(k)); !bytes.Equal(seq[p-1], want) {
					t.Fatalf("position %d holds %q, but proposal %d (%q) was told it is there", p, seq[p-1], k, want)
				}
			}
			continue
		}
		for j := range seq {
			if !bytes.Equal(seq[j], wantSeq[j]) || idx[j] != wantIdx[j] {
				t.Fatalf("peer %d diverges from peer 1 at command %d: %q@%d vs %q@%d", i+1, j, seq[j], idx[j], wantSeq[j], wantIdx[j])
			}
		}
		if !bytes.Equal(chain, wantChain) {
			t.Fatalf("peer %d: state chain %x, peer 1 has %x", i+1, chain, wantChain)
		}
	}
	t.Logf("%d peers: %d proposals from %d goroutines in %v (%.0f/s), %d entries", peers, total, workers,
		proposed.Round(time.Millisecond), total/proposed.Seconds(), wantIdx[len(wantIdx)-1])
}

func replicatePayload(k int) []byte { return fmt.Appendf(nil, "cmd-%05d", k) }

// readState returns n's KV state once n has applied everything committed
// before the call (a linearizable read of the state).
func readState(ctx context.Context, t testing.TB, n *raftnode.Node) (chain []byte, count uint64) {
	t.Helper()
	if err := n.ReadIndex(ctx); err != nil {
		t.Fatalf("peer %d: ReadIndex: %v", n.ID(), err)
	}
	chain, count, err := raftnodetest.State(n.DB())
	if err != nil {
		t.Fatalf("peer %d: %v", n.ID(), err)
	}
	return chain, count
}
