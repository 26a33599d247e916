package fsm_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/transport"
)

func grant(id int64, ttl time.Duration) *command.Request {
	return &command.Request{Request: &command.Request_LeaseGrant{LeaseGrant: &command.LeaseGrantRequest{Id: id, Ttl: int64(ttl)}}}
}

func revoke(id int64) *command.Request {
	return &command.Request{Request: &command.Request_LeaseRevoke{LeaseRevoke: &command.LeaseRevokeRequest{Id: id}}}
}

func leasedPut(k, v string, lease int64) *command.Request {
	r := put(k, v)
	r.GetPut().Lease = lease
	return r
}

// TestLeaseLimits: a lease holds at most MaxLeaseKeys keys and
// MaxLeaseKeyBytes bytes of keys; a put over either is refused and changes
// nothing, a re-put of a key it holds is not counted twice, and revoking a
// full lease deletes every key in one revision.
func TestLeaseLimits(t *testing.T) {
	nd := startNode(t, false)
	mustOK(t, nd.propose(grant(1, time.Minute)))
	for b := 0; b < fsm.MaxLeaseKeys/256; b++ {
		txn := &command.TxnRequest{}
		for i := b * 256; i < (b+1)*256; i++ {
			txn.Success = append(txn.Success, &command.RequestOp{Request: &command.RequestOp_RequestPut{
				RequestPut: &command.PutRequest{Key: fmt.Appendf(nil, "k%05d", i), Value: []byte("v"), Lease: 1},
			}})
		}
		mustOK(t, nd.propose(&command.Request{Request: &command.Request_Txn{Txn: txn}}))
	}
	rev := nd.read(get("k", "", 0)).GetRevision()
	if resp := nd.propose(leasedPut("over", "v", 1)); resp.GetCode() != command.Code_TOO_LARGE || resp.GetRevision() != rev {
		t.Fatalf("put over the key count: %v at %d, want TOO_LARGE at %d", resp.GetCode(), resp.GetRevision(), rev)
	}
	mustOK(t, nd.propose(leasedPut("k00000", "again", 1)))
	resp := mustOK(t, nd.propose(revoke(1)))
	if resp.GetLeaseRevoke().GetDeleted() != fsm.MaxLeaseKeys || resp.GetRevision() != rev+2 {
		t.Fatalf("revoke: %v at %d, want %d keys at %d", resp.GetLeaseRevoke(), resp.GetRevision(), fsm.MaxLeaseKeys, rev+2)
	}
	if c := nd.read(&command.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), CountOnly: true}).GetRange().GetCount(); c != 0 {
		t.Fatalf("%d keys left after revoke", c)
	}

	// Bytes: keys of 10000 bytes reach MaxLeaseKeyBytes long before the count.
	mustOK(t, nd.propose(grant(2, time.Minute)))
	big := func(i int) string { return fmt.Sprintf("%04d", i) + string(bytes.Repeat([]byte{'x'}, 9996)) }
	n := fsm.MaxLeaseKeyBytes / 10000
	for i := 0; i < n; i++ {
		mustOK(t, nd.propose(leasedPut(big(i), "v", 2)))
	}
	if resp := nd.propose(leasedPut(big(n), "v", 2)); resp.GetCode() != command.Code_TOO_LARGE {
		t.Fatalf("put over the key bytes: %v", resp.GetCode())
	}
	// Two attaches in one txn count together.
	mustOK(t, nd.propose(grant(3, time.Minute)))
	mustOK(t, nd.propose(revoke(2)))
	for i := 0; i < n-1; i++ {
		mustOK(t, nd.propose(leasedPut(big(i), "v", 3)))
	}
	txn := &command.TxnRequest{Success: []*command.RequestOp{
		{Request: &command.RequestOp_RequestPut{RequestPut: leasedPut(big(n), "v", 3).GetPut()}},
		{Request: &command.RequestOp_RequestPut{RequestPut: leasedPut(big(n+1), "v", 3).GetPut()}},
	}}
	if resp := nd.propose(&command.Request{Request: &command.Request_Txn{Txn: txn}}); resp.GetCode() != command.Code_TOO_LARGE {
		t.Fatalf("txn over the key bytes: %v", resp.GetCode())
	}
	resp = mustOK(t, nd.propose(revoke(3)))
	if resp.GetLeaseRevoke().GetDeleted() != int64(n-1) {
		t.Fatalf("revoke deleted %d, want %d", resp.GetLeaseRevoke().GetDeleted(), n-1)
	}
}

// TestOnLeasesReportsChanges: OnLeases hears of grants, checkpoints and
// removals once committed, in order, and of a restore.
func TestOnLeasesReportsChanges(t *testing.T) {
	var (
		mu  sync.Mutex
		got []fsm.LeaseCommit
	)
	f := fsm.New(fsm.Config{OnLeases: func(c fsm.LeaseCommit) {
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
	}})
	net := transport.NewNetwork(1)
	n, err := raftnode.Start(raftnode.Config{
		ID: 1, Peers: []raftnode.Peer{{ID: 1, Addr: "mem://1"}},
		Transport: net.Transport(1), Applier: f,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	defer n.Stop()
	nd := &node{t: t, n: n, f: f}
	mustOK(t, nd.propose(grant(5, time.Second)))
	term := n.Status().Term
	mustOK(t, nd.propose(&command.Request{Request: &command.Request_LeaseCheckpoint{LeaseCheckpoint: &command.LeaseCheckpointRequest{
		Term: term, Checkpoints: []*command.LeaseCheckpoint{{Id: 5, Remaining: int64(300 * time.Millisecond)}},
	}}}))
	mustOK(t, nd.propose(leasedPut("a", "1", 5)))
	mustOK(t, nd.propose(&command.Request{Request: &command.Request_LeaseExpire{LeaseExpire: &command.LeaseExpireRequest{Id: 5, Term: term}}}))
	nd.propose(revoke(5)) // refused: no change
	var snap bytes.Buffer
	if err := n.DB().View(func(txn *badger.Txn) error { return f.Snapshot(txn, &snap) }); err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := f.Restore(db, &snap); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var changes []fsm.LeaseChange
	for _, c := range got[:len(got)-1] {
		changes = append(changes, c.Changes...)
	}
	want := []fsm.LeaseChange{
		{Kind: fsm.LeaseGranted, ID: 5, TTL: time.Second},
		{Kind: fsm.LeaseCheckpointed, ID: 5, Remaining: 300 * time.Millisecond},
		{Kind: fsm.LeaseRemoved, ID: 5},
	}
	if fmt.Sprint(changes) != fmt.Sprint(want) {
		t.Fatalf("changes %v, want %v", changes, want)
	}
	if last := got[len(got)-1]; !last.Restored || len(last.Changes) != 0 {
		t.Fatalf("last commit %+v, want a restore", last)
	}
}
