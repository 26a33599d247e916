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
		cfg.QuorumService = ls
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

// TestPromotionAsksQuorum: a follower misses the leader's pushes (the
// link to it is cut) while a lease is renewed; then it becomes leader. It
// learns the renewal from the quorum it asks, so the lease lives what the
// renewal promised (not what the new leader heard itself), and at most
// that plus the election timeout and a little.
func TestPromotionAsksQuorum(t *testing.T) {
	c := newCluster(t, 3)
	lead, err := c.WaitLeader(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 2 * time.Second
	if r := propose(t, c.Node(lead), grant(11, ttl)); r.GetCode() != command.Code_OK {
		t.Fatal(r)
	}
	deaf := (lead + 2) % 3
	waitFor(t, "the grant to apply on every peer", func() bool { return exists(t, c.Node(deaf), 11) })
	c.Network().Cut(uint64(lead+1), uint64(deaf+1))
	time.Sleep(ttl * 3 / 4)
	sent := time.Now()
	if !keepAlive(ctx(t), c.Node(lead), 11) {
		t.Fatal("keep-alive refused")
	}
	promise := sent.Add(ttl)
	c.Network().Heal()
	if err := c.Node(lead).TransferLeadership(ctx(t), uint64(deaf+1)); err != nil {
		t.Fatal(err)
	}
	t.Logf("peer %d leads %v after the renewal", deaf+1, time.Since(sent))
	for time.Now().Before(promise) {
		if !exists(t, c.Node(deaf), 11) {
			t.Fatalf("the lease expired %v before its renewal's promise", time.Until(promise))
		}
		time.Sleep(5 * time.Millisecond)
	}
	for exists(t, c.Node(deaf), 11) {
		if late := time.Since(promise); late > et+100*time.Millisecond {
			t.Fatalf("the lease outlived its renewal's promise by %v", late)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("gone %v after its renewal's promise", time.Since(promise))
}

// waitFor polls cond every millisecond until it holds, for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestVoterChangePromisesTTL: once a peer applies a change of the voters,
// it promises every lease its TTL from then (a later leader may rely on
// quorums of the new configuration only). A lease granted before a voter
// is removed, never renewed nor yet checkpointed, lives after a leader
// change at least its TTL from the removal, not from its grant.
func TestVoterChangePromisesTTL(t *testing.T) {
	c := newCluster(t, 3)
	lead, err := c.WaitLeader(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	const ttl = time.Second
	if r := propose(t, c.Node(lead), grant(13, ttl)); r.GetCode() != command.Code_OK {
		t.Fatal(r)
	}
	granted := time.Now()
	next, gone := (lead+1)%3, (lead+2)%3
	waitFor(t, "the grant to apply on every peer", func() bool { return exists(t, c.Node(next), 13) })
	time.Sleep(ttl / 5) // before its checkpoint, due at ttl/3 + et
	removed := time.Now()
	if err := c.Node(lead).RemovePeer(ctx(t), uint64(gone+1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removal to apply on the next leader", func() bool { return len(c.Node(next).Status().Voters) == 2 })
	if err := c.Node(lead).TransferLeadership(ctx(t), uint64(next+1)); err != nil {
		t.Fatal(err)
	}
	for time.Since(removed) < ttl {
		if !exists(t, c.Node(next), 13) {
			t.Fatalf("the lease expired %v after its grant, %v after the voters changed", time.Since(granted), time.Since(removed))
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, "the lease to expire", func() bool { return !exists(t, c.Node(next), 13) })
	t.Logf("gone %v after its grant, %v after the voters changed", time.Since(granted), time.Since(removed))
}

// TestPushOfUnknownLease: a peer that takes a push for a lease it has not
// applied the grant of yet (a lagging follower can be in the pushing
// leader's quorum) keeps it, answers a new leader's query with it, and
// keeps it once the grant applies: a quorum that acknowledged a renewal
// never forgets it.
func TestPushOfUnknownLease(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := lessor.New(lessor.Config{ElectionTimeout: et})
	if err := l.Load(db); err != nil {
		t.Fatal(err)
	}
	serve := func(m *wire.LeaseSync) *wire.LeaseSync {
		t.Helper()
		req, _ := proto.Marshal(m)
		resp, ok := l.ServeQuorum(1, 2, req)
		if !ok {
			t.Fatal("refused")
		}
		var ans wire.LeaseSync
		if err := proto.Unmarshal(resp, &ans); err != nil {
			t.Fatal(err)
		}
		return &ans
	}
	left := func() time.Duration {
		t.Helper()
		ans := serve(&wire.LeaseSync{Query: true, Parts: 1})
		if len(ans.GetIds()) != 1 || ans.GetIds()[0] != 21 {
			t.Fatalf("query answered %v, want lease 21", ans)
		}
		return time.Duration(ans.GetLeft()[0])
	}
	const pushed = time.Hour
	serve(&wire.LeaseSync{Ids: []int64{21}, Left: []int64{int64(pushed)}})
	if got := left(); got <= pushed-time.Second || got > pushed {
		t.Fatalf("before its grant: %v left, want about %v", got, pushed)
	}
	l.Apply(db, fsm.LeaseCommit{Changes: []fsm.LeaseChange{{Kind: fsm.LeaseGranted, ID: 21, TTL: time.Second}}})
	if got := left(); got <= pushed-time.Second {
		t.Fatalf("after its grant: %v left, want about %v", got, pushed)
	}
	l.Apply(db, fsm.LeaseCommit{Changes: []fsm.LeaseChange{{Kind: fsm.LeaseRemoved, ID: 21}}})
	if ans := serve(&wire.LeaseSync{Query: true, Parts: 1}); len(ans.GetIds()) != 0 {
		t.Fatalf("after its removal: %v", ans)
	}
}
