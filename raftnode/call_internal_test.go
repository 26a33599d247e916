package raftnode

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordkv/concord/internal/schema"
)

// appliedService answers with the applied index of the peer serving it.
type appliedService struct{ n atomic.Pointer[Node] }

func (s *appliedService) ServeLeader(_ uint64, _ []byte, reply func([]byte)) {
	reply(schema.U64(s.n.Load().AppliedIndex()))
}

// TestCallLeaderAfterCallersApply: a follower may apply a commit before
// the leader does (two followers' acks commit an entry while the leader's
// own append still syncs). A call the follower makes after it applied an
// entry (as a session's first keep-alive after its lease's grant) must be
// served by a leader that has applied it too.
func TestCallLeaderAfterCallersApply(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svcs := []*appliedService{{}, {}, {}}
	s := newSyncPeersCfg(t, 3, func(cfg *Config) {
		i := cfg.ID - 1
		cfg.LeaderService = svcs[i]
		hook := cfg.testHook
		cfg.testHook = func(n *Node) {
			hook(n)
			svcs[i].n.Store(n)
			inner := n.sync
			n.sync = func(fid int, vlog bool) error {
				if n.IsLeader() {
					time.Sleep(20 * time.Millisecond) // the leader's disk is slow
				}
				return inner(fid, vlog)
			}
		}
	})
	s.waitLeader(ctx)
	lead := int(s.nodes[0].Leader() - 1)
	f := (lead + 1) % 3
	behind := 0
	for k := range 20 {
		res, err := s.nodes[f].Propose(ctx, fmt.Appendf(nil, "p%d", k))
		if err != nil {
			t.Fatal(err)
		}
		idx, _ := schema.ParseU64(res)
		if s.nodes[lead].AppliedIndex() < idx {
			behind++
		}
		resp, err := s.nodes[f].CallLeader(ctx, []byte("applied?"))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := schema.ParseU64(resp); got < idx {
			t.Fatalf("proposal %d: the follower applied entry %d, the leader served its call having applied %d", k, idx, got)
		}
	}
	if behind == 0 {
		t.Fatal("the leader never lagged the follower: the test checked nothing")
	}
	t.Logf("the leader lagged the follower after %d of 20 proposals", behind)
}
