package raftnode_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/killtest"
	"github.com/concordkv/concord/internal/schema"
	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
	"github.com/concordkv/concord/transport"
)

// TestDurability kills a process running raft peers with SIGKILL at random
// moments and checks, after each kill, that every proposal the process had
// acknowledged survived, that nothing applied before was lost, and that no
// command was applied twice.
//
// The process is a re-exec of this test binary running TestDurabilityChild:
// it proposes PutCmd(id, id) for unique ids from several goroutines and
// prints "PROP <id>" before each Propose and "ACK <id>" only after Propose
// returned success. The parent reads those lines, kills the child after a
// random number of acks plus a random delay, reopens the same data dirs
// in-process, and verifies. The next round runs a new child on the same
// dirs, so the log keeps growing (and is compacted) across crashes.
var (
	durabilityRounds = flag.Int("durability.rounds", 20, "kill/restart rounds of each TestDurability case")
	durabilitySeed   = flag.Uint64("durability.seed", 0, "seed of TestDurability's kill moments; 0 picks one at random")
)

// The child's environment: its mode ("lone" or "three"), the parent's data
// dir and the round number (which makes the ids unique across rounds).
const (
	envDurabilityChild = "CONCORD_DURABILITY_CHILD"
	envDurabilityDir   = "CONCORD_DURABILITY_DIR"
	envDurabilityRound = "CONCORD_DURABILITY_ROUND"
)

// durabilityProposers is how many goroutines of the child propose at once.
const durabilityProposers = 6

func durabilityPeerCount(mode string) int {
	if mode == "three" {
		return 3
	}
	return 1
}

// startDurabilityPeers starts count peers on their data dirs under dir, on a
// fresh in-memory network; the child and the parent's verification use the
// same configs. Compaction is frequent so that crashes also hit it.
func startDurabilityPeers(dir string, count int, seed int64) (*transport.Network, []*raftnode.Node, error) {
	net := transport.NewNetwork(seed)
	peers := make([]raftnode.Peer, count)
	for i := range peers {
		peers[i] = raftnode.Peer{ID: uint64(i + 1), Addr: fmt.Sprintf("mem://%d", i+1)}
	}
	var nodes []*raftnode.Node
	for i := range count {
		n, err := raftnode.Start(raftnode.Config{
			ID:                     uint64(i + 1),
			DataDir:                filepath.Join(dir, fmt.Sprintf("peer%d", i+1)),
			Peers:                  peers,
			Transport:              net.Transport(uint64(i + 1)),
			Applier:                &raftnodetest.KV{},
			TickInterval:           10 * time.Millisecond,
			ElectionTicks:          10,
			HeartbeatTicks:         1,
			SnapshotEntries:        200,
			SnapshotCatchUpEntries: 50,
		})
		if err != nil {
			for _, n := range nodes {
				n.Stop()
			}
			net.Close()
			return nil, nil, fmt.Errorf("start peer %d: %w", i+1, err)
		}
		nodes = append(nodes, n)
	}
	return net, nodes, nil
}

// TestDurabilityChild is TestDurability's child process; run normally it
// does nothing. It proposes until it is killed.
func TestDurabilityChild(t *testing.T) {
	mode := os.Getenv(envDurabilityChild)
	if mode == "" {
		return
	}
	dir, round := os.Getenv(envDurabilityDir), os.Getenv(envDurabilityRound)
	net, nodes, err := startDurabilityPeers(dir, durabilityPeerCount(mode), time.Now().UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	var outMu sync.Mutex
	emit := func(kind, id string) {
		outMu.Lock()
		defer outMu.Unlock()
		// One unbuffered write per line: a line is in the pipe before the
		// next step, and never torn (it is shorter than PIPE_BUF).
		if _, err := os.Stdout.WriteString(kind + " " + id + "\n"); err != nil {
			os.Exit(3) // the parent is gone
		}
	}
	// The parent kills us within seconds; this bound only ends an orphan.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for g := range durabilityProposers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("r%s.g%d.%d", round, g, i)
				n := nodes[(g+i)%len(nodes)] // followers forward to the leader
				emit("PROP", id)
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				prev, err := n.Propose(pctx, raftnodetest.PutCmd(id, id))
				pcancel()
				switch {
				case err != nil:
					fmt.Fprintf(os.Stderr, "propose %s: %v\n", id, err)
				case len(prev) != 0:
					emit("DUP", id) // a fresh key had a value: applied before
				default:
					emit("ACK", id)
				}
			}
		})
	}
	wg.Wait()
	for _, n := range nodes {
		n.Stop()
	}
	net.Close()
	t.Fatal("durability child ran for a minute without being killed")
}

// durabilityState is what the parent learned over all rounds.
type durabilityState struct {
	proposed map[string]bool // every id a child may have proposed
	acked    map[string]bool // every id a child acknowledged
	present  map[string]bool // every id found applied by the last verification
	fresh    []string        // ids proposed since the last verification
	acks     int             // acks over all rounds
	applied  uint64          // applied index at the last verification
}

func TestDurability(t *testing.T) {
	if os.Getenv(envDurabilityChild) != "" {
		t.Skip("in the durability child")
	}
	seed := *durabilitySeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rounds := *durabilityRounds
	t.Logf("seed %d (-durability.seed), %d rounds per case (-durability.rounds)", seed, rounds)
	for ci, mode := range []string{"lone", "three"} {
		t.Run(mode, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(ci)))
			dir := t.TempDir()
			st := &durabilityState{proposed: map[string]bool{}, acked: map[string]bool{}, present: map[string]bool{}}
			start := time.Now()
			for r := range rounds {
				runDurabilityChild(t, mode, dir, r, rng, st)
				verifyDurability(t, mode, dir, int64(rng.Uint64()), st)
			}
			t.Logf("%d rounds, %d acks, %d proposals, %d applied (log index %d), in %v",
				rounds, st.acks, len(st.proposed), len(st.present), st.applied, time.Since(start).Round(time.Millisecond))
		})
	}
}

// runDurabilityChild runs one child on dir and kills it after a random
// number of acks plus a random delay; it records what the child printed.
func runDurabilityChild(t *testing.T, mode, dir string, round int, rng *rand.Rand, st *durabilityState) {
	st.acks += killtest.Run(t, killtest.Child{
		Name: fmt.Sprintf("round %d", round),
		Test: "TestDurabilityChild",
		Env: []string{
			envDurabilityChild + "=" + mode,
			envDurabilityDir + "=" + dir,
			envDurabilityRound + "=" + strconv.Itoa(round),
		},
		KillAfter: 1 + rng.IntN(300),
		KillDelay: time.Duration(rng.IntN(3000)) * time.Microsecond,
		Handle: func(line string) (bool, bool) {
			kind, id, _ := strings.Cut(line, " ")
			switch kind {
			case "PROP":
				st.proposed[id] = true
				st.fresh = append(st.fresh, id)
			case "ACK":
				if !st.proposed[id] {
					t.Errorf("round %d: ack of %q, never proposed", round, id)
				}
				st.acked[id] = true
				return true, true
			case "DUP":
				t.Errorf("round %d: %q had a value before its first Put was applied: applied twice", round, id)
			default:
				return false, false
			}
			return false, true
		},
	})
}

// verifyDurability reopens the data dirs of mode in this process, waits
// until every peer applied everything committed, and checks the state
// against what the children printed.
func verifyDurability(t *testing.T, mode, dir string, seed int64, st *durabilityState) {
	net, nodes, err := startDurabilityPeers(dir, durabilityPeerCount(mode), seed)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, n := range nodes {
			if err := n.Stop(); err != nil {
				t.Errorf("stop peer %d: %v", n.ID(), err)
			}
		}
		net.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A ReadIndex on a peer returns once it applied everything committed
	// before the call, including the new leader's entry, which commits the
	// whole surviving log. Repeat until all peers stand at one index.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, n := range nodes {
			if err := n.ReadIndex(ctx); err != nil {
				t.Fatalf("ReadIndex on peer %d: %v", n.ID(), err)
			}
		}
		same := true
		for _, n := range nodes[1:] {
			same = same && n.AppliedIndex() == nodes[0].AppliedIndex()
		}
		if same {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("peers did not converge: %v", ctx.Err())
		}
	}
	chain0, count0, err := raftnodetest.State(nodes[0].DB())
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for i, n := range nodes {
		chain, count, err := raftnodetest.State(n.DB())
		if err != nil {
			t.Fatal(err)
		}
		if string(chain) != string(chain0) || count != count0 {
			t.Fatalf("peer %d applied %d commands with chain %x, peer 1 %d with %x", n.ID(), count, chain, count0, chain0)
		}
		found, err := appliedIDs(n.DB(), st.proposed)
		if err != nil {
			t.Fatal(err)
		}
		// Cross-check the scan with the KV's own reads on this round's ids.
		for _, id := range st.fresh {
			v, ok, err := raftnodetest.Get(n.DB(), id)
			if err != nil {
				t.Fatal(err)
			}
			if ok != found[id] || (ok && v != id) {
				t.Fatalf("peer %d: Get(%q) = %q, %v; the state scan says %v", n.ID(), id, v, ok, found[id])
			}
		}
		var lostAcked, lostApplied []string
		for id := range st.acked {
			if !found[id] {
				lostAcked = append(lostAcked, id)
			}
		}
		for id := range st.present {
			if !found[id] && !st.acked[id] {
				lostApplied = append(lostApplied, id)
			}
		}
		if i == 0 {
			present = found
		} else if !maps.Equal(found, present) {
			t.Errorf("peer %d applied %d proposals, peer 1 %d other ones", n.ID(), len(found), len(present))
		}
		if len(lostAcked) > 0 {
			t.Errorf("peer %d: %d acknowledged proposals lost, e.g. %q", n.ID(), len(lostAcked), lostAcked[:min(10, len(lostAcked))])
		}
		if len(lostApplied) > 0 {
			t.Errorf("peer %d: %d proposals applied before the last crash are gone, e.g. %q", n.ID(), len(lostApplied), lostApplied[:min(10, len(lostApplied))])
		}
		// Every command applied is one of the proposals, each applied
		// once: the count of applied commands is the count of distinct
		// ids in the state. A command applied twice (or one skipped and
		// another counted) breaks it.
		if uint64(len(found)) != count {
			t.Errorf("peer %d: %d commands applied but %d distinct proposals present", n.ID(), count, len(found))
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	st.present, st.applied, st.fresh = present, nodes[0].AppliedIndex(), nil
}

// appliedIDs returns the proposed ids present in db's state, in one scan:
// the KV stores PutCmd(id, id) as a key under schema.State ending with id
// and holding id. (TestDurability cross-checks with raftnodetest.Get.)
func appliedIDs(db *badger.DB, proposed map[string]bool) (map[string]bool, error) {
	found := map[string]bool{}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.State, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				if proposed[string(v)] && bytes.HasSuffix(it.Item().Key(), v) {
					found[string(v)] = true
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return found, err
}
