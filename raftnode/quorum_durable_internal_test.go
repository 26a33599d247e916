package raftnode

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// termCheckQuorum is a QuorumService that checks that it only serves calls of
// a term its peer has made durable (as Config.QuorumService documents).
type termCheckQuorum struct {
	mu      sync.Mutex
	durable uint64 // term in badger when the newest successful sync began
	served  int
	bad     []string
}

func (q *termCheckQuorum) ServeQuorum(from, term uint64, req []byte) ([]byte, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.served++
	if term > q.durable && len(q.bad) < 5 {
		q.bad = append(q.bad, fmt.Sprintf("served a call of term %d from %d with durable term %d", term, from, q.durable))
	}
	return nil, true
}

// TestQuorumServedOnDurableTermOnly: a follower whose syncs are slow
// learns a new term; its hard state is written unsynced (the syncer syncs
// it later), and its status shows the new term at once. It serves the
// new leader's quorum calls only once that term is durable, as
// QuorumService promises.
func TestQuorumServedOnDurableTermOnly(t *testing.T) {
	qs := map[uint64]*termCheckQuorum{1: {}, 2: {}, 3: {}}
	s := newSyncPeersCfg(t, 3, func(cfg *Config) {
		q := qs[cfg.ID]
		cfg.QuorumService = q
		inner := cfg.testHook
		id := cfg.ID
		cfg.testHook = func(n *Node) {
			inner(n)
			_, hs, err := syncCandidate(n.db)
			if err != nil {
				panic(err)
			}
			q.mu.Lock()
			q.durable = hs.GetTerm()
			q.mu.Unlock()
			sync := n.sync
			n.sync = func(fid int, vlog bool) error {
				_, hs, err := syncCandidate(n.db)
				if err != nil {
					return err
				}
				if id == 3 {
					time.Sleep(100 * time.Millisecond) // a slow disk
				}
				if err := sync(fid, vlog); err != nil {
					return err
				}
				q.mu.Lock()
				q.durable = max(q.durable, hs.GetTerm())
				q.mu.Unlock()
				return nil
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for rounds := 0; rounds < 6; {
		if ctx.Err() != nil {
			t.Fatalf("%d rounds of 6 done: %v", rounds, ctx.Err())
		}
		lead, err := s.nodes[0].WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		to := uint64(1)
		if lead == 1 {
			to = 2
		}
		tctx, tcancel := context.WithTimeout(ctx, 3*time.Second)
		err = s.nodes[lead-1].TransferLeadership(tctx, to)
		for err == nil && !s.nodes[to-1].IsLeader() && tctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		tcancel()
		if err != nil || !s.nodes[to-1].IsLeader() {
			continue // a stale leader or a transfer that did not finish: again
		}
		rounds++
		ln := s.nodes[to-1]
		term := ln.Status().Term
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := ln.CallQuorum(cctx, term, []byte("x")); err != nil {
			t.Logf("CallQuorum: %v", err)
		}
		ccancel()
		// The slow peer catches up on the term before the next round.
		q3 := qs[3]
		for {
			q3.mu.Lock()
			caught := q3.durable >= term
			q3.mu.Unlock()
			if caught || ctx.Err() != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	for id, q := range qs {
		q.mu.Lock()
		t.Logf("peer %d served %d calls", id, q.served)
		for _, b := range q.bad {
			t.Errorf("peer %d: %s", id, b)
		}
		q.mu.Unlock()
	}
}
