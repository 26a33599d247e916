package lessor_test

import (
	"context"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
	"github.com/concordkv/concord/internal/leaktest"
	"github.com/concordkv/concord/internal/lessor"
	"github.com/concordkv/concord/internal/wire"
	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leaktest.Options()...) }

// et is raftnodetest's election timeout: 10 ticks of 10ms.
const et = 100 * time.Millisecond

// cluster is a raftnodetest cluster whose peers run the state machine and
// a lessor each.
type cluster struct {
	*raftnodetest.Cluster
	ls []*lessor.Lessor
}

func newCluster(t *testing.T, peers int) *cluster {
	c := &cluster{}
	dbs := make([]func() *badger.DB, peers)
	for range peers {
		c.ls = append(c.ls, lessor.New(lessor.Config{ElectionTimeout: et}))
	}
	c.Cluster = raftnodetest.NewCluster(t, raftnodetest.Options{Peers: peers, Configure: func(i int, cfg *raftnode.Config) {
		ls := c.ls[i]
		cfg.Applier = fsm.New(fsm.Config{OnLeases: func(lc fsm.LeaseCommit) { ls.Apply(dbs[i](), lc) }})
		cfg.LeaderService = ls
	}})
	for i, ls := range c.ls {
		n := c.Node(i)
		dbs[i] = n.DB
		if err := ls.Load(n.DB()); err != nil {
			t.Fatal(err)
		}
		ls.Start(n)
		t.Cleanup(ls.Stop) // runs before the cluster's Close
	}
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func propose(t *testing.T, n *raftnode.Node, req *command.Request) *command.Response {
	t.Helper()
	b, err := command.EncodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	out, err := n.Propose(ctx(t), b)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := command.DecodeResponse(out)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func grant(id int64, ttl time.Duration) *command.Request {
	return &command.Request{Request: &command.Request_LeaseGrant{LeaseGrant: &command.LeaseGrantRequest{Id: id, Ttl: int64(ttl)}}}
}

// keepAlive renews id through n once; false if it was not renewed.
func keepAlive(ctx context.Context, n *raftnode.Node, id int64) bool {
	req, _ := proto.Marshal(&wire.LeaseCall{KeepAlive: []int64{id}})
	out, err := n.CallLeader(ctx, req)
	if err != nil {
		return false
	}
	var ans wire.LeaseAnswer
	return proto.Unmarshal(out, &ans) == nil && !ans.GetNotReady() && len(ans.GetLeases()) == 1 && ans.GetLeases()[0].GetTtl() > 0
}

func exists(t *testing.T, n *raftnode.Node, id int64) bool {
	t.Helper()
	var found bool
	err := n.DB().View(func(txn *badger.Txn) error {
		var err error
		_, found, err = fsm.ReadLease(txn, id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestDeposedLeaderDoesNotExpire: the leader is cut off while the other
// peers keep a lease alive; its clock sees no keep-alive, but its expiry
// never takes effect, before or after the partition heals, because the
// new leader rules the lease.
func TestDeposedLeaderDoesNotExpire(t *testing.T) {
	c := newCluster(t, 3)
	lead, err := c.WaitLeader(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	// A TTL under the election timeout: the cut-off leader's clock expires
	// it before the leader steps down.
	const ttl = 60 * time.Millisecond
	if r := propose(t, c.Node(lead), grant(7, ttl)); r.GetCode() != command.Code_OK {
		t.Fatal(r)
	}
	f := (lead + 1) % 3
	kctx, stop := context.WithCancel(ctx(t))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for kctx.Err() == nil {
			cctx, cancel := context.WithTimeout(kctx, 15*time.Millisecond)
			keepAlive(cctx, c.Node(f), 7)
			cancel()
		}
	}()
	defer func() { stop(); <-done }()
	// Kept alive for a while under the first leader.
	time.Sleep(4 * ttl)
	c.Isolate(lead)
	newLead := -1
	for newLead < 0 {
		select {
		case <-c.Node(f).Changed():
		case <-ctx(t).Done():
			t.Fatal("no new leader")
		}
		if l := int(c.Node(f).Status().Leader) - 1; l >= 0 && l != lead {
			newLead = l
		}
	}
	time.Sleep(5 * et) // the cut-off leader's lessor would have expired it
	c.Heal()
	time.Sleep(5 * et)
	for i := range 3 {
		if !exists(t, c.Node(i), 7) {
			t.Fatalf("peer %d lost the lease kept alive under leader %d", i+1, newLead+1)
		}
	}
	stop()
	<-done
	deadline := time.Now().Add(ttl + 2*et + time.Second)
	for exists(t, c.Node(newLead), 7) {
		if time.Now().After(deadline) {
			t.Fatal("the lease outlived its keep-alives")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExpireFencedByTerm: an expire or checkpoint proposed for an earlier
// term, as a deposed leader's forwarded proposal would be, changes
// nothing; one of the current term applies.
func TestExpireFencedByTerm(t *testing.T) {
	c := newCluster(t, 3)
	lead, err := c.WaitLeader(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	old := c.Node(lead).Status().Term
	if r := propose(t, c.Node(lead), grant(9, time.Hour)); r.GetCode() != command.Code_OK {
		t.Fatal(r)
	}
	next := (lead + 1) % 3
	if err := c.Node(lead).TransferLeadership(ctx(t), uint64(next+1)); err != nil {
		t.Fatal(err)
	}
	term := c.Node(next).Status().Term
	if term == old {
		t.Fatalf("term %d did not change", term)
	}
	expire := func(term uint64) *command.Request {
		return &command.Request{Request: &command.Request_LeaseExpire{LeaseExpire: &command.LeaseExpireRequest{Id: 9, Term: term}}}
	}
	ckpt := &command.Request{Request: &command.Request_LeaseCheckpoint{LeaseCheckpoint: &command.LeaseCheckpointRequest{
		Term: old, Checkpoints: []*command.LeaseCheckpoint{{Id: 9, Remaining: 1}},
	}}}
	for _, req := range []*command.Request{expire(old), ckpt} {
		if r := propose(t, c.Node(lead), req); r.GetCode() != command.Code_STALE {
			t.Fatalf("%v: %v, want STALE", req, r.GetCode())
		}
	}
	// The proposer has applied what it proposed when Propose returns.
	if !exists(t, c.Node(lead), 9) {
		t.Fatal("a stale expire removed the lease")
	}
	if r := propose(t, c.Node(lead), expire(term)); r.GetCode() != command.Code_OK {
		t.Fatalf("expire of the current term: %v", r)
	}
	if exists(t, c.Node(lead), 9) {
		t.Fatal("the expire of the current term left the lease")
	}
}
