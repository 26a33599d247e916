package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
)

// echoService answers "<id>:<req>"; with drop set it leaves the first
// call of each request unanswered, and it answers from another goroutine.
type echoService struct {
	id     uint64
	served atomic.Int64
	drop   bool
	mu     sync.Mutex
	seen   map[string]bool // guarded by mu
}

func (s *echoService) ServeLeader(from uint64, req []byte, reply func([]byte)) {
	s.served.Add(1)
	if s.drop {
		s.mu.Lock()
		first := !s.seen[string(req)]
		s.seen[string(req)] = true
		s.mu.Unlock()
		if first {
			return
		}
	}
	resp := fmt.Appendf(nil, "%d:%s", s.id, req)
	go reply(resp)
}

func callCluster(t *testing.T, drop bool) (*raftnodetest.Cluster, []*echoService) {
	svcs := make([]*echoService, 3)
	for i := range svcs {
		svcs[i] = &echoService{id: uint64(i + 1), drop: drop, seen: map[string]bool{}}
	}
	c := raftnodetest.NewCluster(t, raftnodetest.Options{Configure: func(i int, cfg *raftnode.Config) {
		cfg.LeaderService = svcs[i]
	}})
	return c, svcs
}

// TestCallLeaderAnsweredByLeader: a call from any peer is served by the
// leader's service, writes nothing to the log, and after the leader is
// cut off it is served by the new leader.
func TestCallLeaderAnsweredByLeader(t *testing.T) {
	c, svcs := callCluster(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A read barrier returns once the leader has committed its term's
	// first entry: the commit index moves no more on its own.
	if err := c.Node(lead).ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	commit := c.Node(lead).Status().Commit
	for round := range 20 {
		for i := range 3 {
			req := fmt.Sprintf("r%d-%d", round, i)
			resp, err := c.Node(i).CallLeader(ctx, []byte(req))
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%d:%s", lead+1, req); string(resp) != want {
				t.Fatalf("peer %d got %q, want %q", i+1, resp, want)
			}
		}
	}
	if got := c.Node(lead).Status().Commit; got != commit {
		t.Fatalf("calls moved the commit index from %d to %d", commit, got)
	}
	for i, s := range svcs {
		if i != lead && s.served.Load() != 0 {
			t.Fatalf("follower %d served %d calls", i+1, s.served.Load())
		}
	}

	c.Isolate(lead)
	other := (lead + 1) % 3
	var newLead uint64
	for newLead == 0 || newLead == uint64(lead+1) {
		select {
		case <-c.Node(other).Changed():
		case <-ctx.Done():
			t.Fatal("no new leader")
		}
		newLead = c.Node(other).Status().Leader
	}
	resp, err := c.Node(other).CallLeader(ctx, []byte("after"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d:after", newLead); string(resp) != want {
		t.Fatalf("got %q, want %q", resp, want)
	}
}

// TestCallLeaderResendsUnanswered: a call the service leaves unanswered is
// sent again and answered; a call made while no leader is reachable waits
// and is answered once one is.
func TestCallLeaderResendsUnanswered(t *testing.T) {
	c, _ := callCluster(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := (lead + 1) % 3
	resp, err := c.Node(f).CallLeader(ctx, []byte("x"))
	if err != nil || !strings.HasSuffix(string(resp), ":x") {
		t.Fatalf("got %q %v", resp, err)
	}

	c.Isolate(f)
	done := make(chan error, 1)
	go func() {
		_, err := c.Node(f).CallLeader(ctx, []byte("y"))
		done <- err
	}()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := c.Node(f).CallLeader(short, []byte("z")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("isolated call: %v, want a deadline", err)
	}
	select {
	case err := <-done:
		t.Fatalf("isolated call returned %v", err)
	default:
	}
	c.Heal()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCallLeaderWithoutService: a peer without a service refuses calls.
func TestCallLeaderWithoutService(t *testing.T) {
	c := raftnodetest.NewCluster(t, raftnodetest.Options{Peers: 1})
	if _, err := c.Node(0).CallLeader(context.Background(), nil); !errors.Is(err, raftnode.ErrNoLeaderService) {
		t.Fatalf("got %v, want ErrNoLeaderService", err)
	}
}
