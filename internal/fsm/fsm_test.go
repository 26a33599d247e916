package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/transport"
)

// TestMalformedCommandIsRefused: bytes that are not a command, an empty
// command, a command from a newer version and absurd nesting each get
// BAD_REQUEST, change nothing and leave the node running.
func TestMalformedCommandIsRefused(t *testing.T) {
	nd := startNode(t, false)
	mustOK(t, nd.propose(put("a", "1")))
	deep := &command.TxnRequest{}
	for range 100 {
		deep = &command.TxnRequest{Success: []*command.RequestOp{{Request: &command.RequestOp_RequestTxn{RequestTxn: deep}}}}
	}
	deepBytes, err := proto.Marshal(&command.Request{Request: &command.Request_Txn{Txn: deep}})
	if err != nil {
		t.Fatal(err)
	}
	emptyOp, err := proto.Marshal(&command.Request{Request: &command.Request_Txn{Txn: &command.TxnRequest{
		Success: []*command.RequestOp{{}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, cmd := range map[string][]byte{
		"garbage":       {0xff, 0xff, 0xff},
		"truncated":     mustEncode(t, put("a", "2"))[:5],
		"empty":         nil,
		"future field":  protowire.AppendBytes(protowire.AppendTag(nil, 9, protowire.BytesType), []byte{1}),
		"nested deeply": deepBytes,
		"empty txn op":  emptyOp,
	} {
		resp := nd.proposeRaw(cmd)
		if resp.GetCode() != command.Code_BAD_REQUEST || resp.GetRevision() != 2 {
			t.Errorf("%s: code %v revision %d (%s), want BAD_REQUEST at 2", name, resp.GetCode(), resp.GetRevision(), resp.GetError())
		}
	}
	mustOK(t, nd.propose(put("a", "3")))
	if kv := mustOK(t, nd.read(get("a", "", 0))).GetRange().GetKvs()[0]; string(kv.Value) != "3" || kv.ModRevision != 3 {
		t.Fatalf("a = %v", kv)
	}
}

func mustEncode(t testing.TB, req *command.Request) []byte {
	b, err := command.EncodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLimitsRefuseWithoutWriting: a key or value over the hard limits,
// and a delete or txn whose writes exceed one command's budget, are
// refused with TOO_LARGE and leave the store as it was.
func TestLimitsRefuseWithoutWriting(t *testing.T) {
	nd := startNode(t, false)
	big := func(n int, c byte) string { return string(bytes.Repeat([]byte{c}, n)) }
	if resp := nd.propose(put(big(fsm.MaxKeySize+1, 'k'), "v")); resp.GetCode() != command.Code_TOO_LARGE {
		t.Fatalf("big key: %v", resp.GetCode())
	}
	if resp := nd.propose(put("k", big(fsm.MaxValueSize+1, 'v'))); resp.GetCode() != command.Code_TOO_LARGE {
		t.Fatalf("big value: %v", resp.GetCode())
	}
	mustOK(t, nd.propose(put("k", big(fsm.MaxValueSize, 'v'))))
	// 800 keys of 1000 bytes: deleting them all costs more than the budget.
	key := func(i int) string { return fmt.Sprintf("p/%04d/%s", i, big(990, 'x')) }
	for b := 0; b < 8; b++ {
		txn := &command.TxnRequest{}
		for i := b * 100; i < (b+1)*100; i++ {
			txn.Success = append(txn.Success, &command.RequestOp{Request: &command.RequestOp_RequestPut{
				RequestPut: &command.PutRequest{Key: []byte(key(i)), Value: []byte("v")},
			}})
		}
		mustOK(t, nd.propose(&command.Request{Request: &command.Request_Txn{Txn: txn}}))
	}
	rev := nd.read(get("p/", prefixEnd("p/"), 0)).GetRevision()
	resp := nd.propose(del("p/", prefixEnd("p/")))
	if resp.GetCode() != command.Code_TOO_LARGE || resp.GetRevision() != rev {
		t.Fatalf("big delete: %v at %d, want TOO_LARGE at %d", resp.GetCode(), resp.GetRevision(), rev)
	}
	txn := &command.TxnRequest{Success: []*command.RequestOp{
		{Request: &command.RequestOp_RequestPut{RequestPut: &command.PutRequest{Key: []byte("q"), Value: []byte("v")}}},
		{Request: &command.RequestOp_RequestDeleteRange{RequestDeleteRange: &command.DeleteRangeRequest{Key: []byte("p/"), RangeEnd: []byte(prefixEnd("p/"))}}},
	}}
	if resp := nd.propose(&command.Request{Request: &command.Request_Txn{Txn: txn}}); resp.GetCode() != command.Code_TOO_LARGE {
		t.Fatalf("big txn delete: %v", resp.GetCode())
	}
	if c := nd.read(&command.RangeRequest{Key: []byte("p/"), RangeEnd: []byte(prefixEnd("p/")), CountOnly: true}).GetRange().GetCount(); c != 800 {
		t.Fatalf("%d keys left, want 800", c)
	}
	if c := nd.read(get("q", "", 0)).GetRange().GetCount(); c != 0 {
		t.Fatal("a refused txn wrote q")
	}
	// Half of them fit.
	resp = mustOK(t, nd.propose(del("p/", "p/0400")))
	if resp.GetDeleteRange().GetDeleted() != 400 || resp.GetRevision() != rev+1 {
		t.Fatalf("deleted %d at %d", resp.GetDeleteRange().GetDeleted(), resp.GetRevision())
	}
}

// TestZeroBytesInKeys: keys holding 0x00 keep their order and their
// revisions apart, in current and in past reads.
func TestZeroBytesInKeys(t *testing.T) {
	nd := startNode(t, false)
	keys := []string{"a", "a\x00", "a\x00\x00", "a\x00\x01", "a\x00\xff", "a\x01", "a\xff", "b", "\x00", "\x00\x00"}
	for i, k := range keys {
		mustOK(t, nd.propose(put(k, fmt.Sprint(i))))
	}
	for i, k := range keys {
		mustOK(t, nd.propose(put(k, fmt.Sprint(i+100))))
	}
	last := int64(1 + 2*len(keys))
	sorted := append([]string(nil), keys...)
	slices.Sort(sorted)
	for _, rev := range []int64{0, last - 1, int64(1 + len(keys)), 2} {
		for _, r := range []struct{ key, end string }{{"\x00", "\x00"}, {"a", prefixEnd("a")}, {"a\x00", prefixEnd("a\x00")}, {"a\x00", "a\x01"}} {
			resp := mustOK(t, nd.read(get(r.key, r.end, rev)))
			var got []string
			for _, kv := range resp.GetRange().GetKvs() {
				got = append(got, string(kv.Key))
				if want := expectValue(keys, string(kv.Key), rev, last); string(kv.Value) != want {
					t.Errorf("rev %d: %q = %q, want %q", rev, kv.Key, kv.Value, want)
				}
			}
			var want []string
			for _, k := range sorted {
				if inRange(k, r.key, r.end) && expectValue(keys, k, rev, last) != "" {
					want = append(want, k)
				}
			}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("rev %d range %q..%q: %q, want %q", rev, r.key, r.end, got, want)
			}
		}
	}
}

// expectValue is key's value at rev (0 = last) in TestZeroBytesInKeys.
func expectValue(keys []string, key string, rev, last int64) string {
	if rev == 0 {
		rev = last
	}
	for i, k := range keys {
		if k != key {
			continue
		}
		switch {
		case rev >= int64(2+len(keys)+i):
			return fmt.Sprint(i + 100)
		case rev >= int64(2+i):
			return fmt.Sprint(i)
		}
	}
	return ""
}

func inRange(k, key, end string) bool {
	if end == "\x00" {
		return k >= key
	}
	return k >= key && k < end
}

// TestSnapshotRestoreRoundTrip: a snapshot restored into a fresh DB holds
// the same keys under s/ and answers every read the same, and OnCommit
// hears of the restore.
func TestSnapshotRestoreRoundTrip(t *testing.T) {
	nd := startNode(t, false)
	for _, req := range randomCommands(7, 300) {
		nd.propose(req)
	}
	var snap bytes.Buffer
	if err := nd.n.DB().View(func(txn *badger.Txn) error { return nd.f.Snapshot(txn, &snap) }); err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var restored []fsm.Commit
	f2 := fsm.New(fsm.Config{OnCommit: func(c fsm.Commit) { restored = append(restored, c) }})
	if err := f2.Restore(db, &snap); err != nil {
		t.Fatal(err)
	}
	if a, b := dump(t, nd.n.DB()), dump(t, db); a != b {
		t.Fatalf("state differs after restore:\n%s\nvs\n%s", a, b)
	}
	rev, compact := nd.f.Revision(), nd.f.CompactRevision()
	if f2.Revision() != rev || f2.CompactRevision() != compact {
		t.Fatalf("restored revisions %d/%d, want %d/%d", f2.Revision(), f2.CompactRevision(), rev, compact)
	}
	if len(restored) != 1 || !restored[0].Restored || restored[0].Revision != rev {
		t.Fatalf("OnCommit got %+v", restored)
	}
	for r := compact - 1; r <= rev+1; r++ {
		req := &command.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: r}
		a, b := rangeDB(t, nd.f, nd.n.DB(), req), rangeDB(t, f2, db, req)
		if !proto.Equal(a, b) {
			t.Fatalf("read at %d differs:\n%v\nvs\n%v", r, a, b)
		}
	}
}

// TestSameCommandsSameState: two FSMs fed the same commands end with the
// same keys and values under s/, compaction sweeps included; recording
// events changes nothing.
func TestSameCommandsSameState(t *testing.T) {
	a, b := startNode(t, false), startNode(t, true)
	for _, req := range randomCommands(3, 600) {
		ra, rb := a.propose(req), b.propose(req)
		if !proto.Equal(ra, rb) {
			t.Fatalf("results differ for %v:\n%v\nvs\n%v", req, ra, rb)
		}
	}
	if da, db := dump(t, a.n.DB()), dump(t, b.n.DB()); da != db {
		t.Fatalf("states differ:\n%s\nvs\n%s", da, db)
	}
}

// TestRestartKeepsState: a node restarted on its data dir, with a new FSM,
// keeps its data and revisions and goes on from there.
func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	start := func() (*raftnode.Node, *fsm.FSM, func()) {
		net := transport.NewNetwork(1)
		f := fsm.New(fsm.Config{})
		n, err := raftnode.Start(raftnode.Config{
			ID: 1, Peers: []raftnode.Peer{{ID: 1, Addr: "mem://1"}}, DataDir: dir,
			Transport: net.Transport(1), Applier: f,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Load(n.DB()); err != nil {
			t.Fatal(err)
		}
		return n, f, func() {
			if err := n.Stop(); err != nil {
				t.Error(err)
			}
			net.Close()
		}
	}
	n, f, stop := start()
	nd := &node{t: t, n: n, f: f}
	mustOK(t, nd.propose(put("a", "1")))
	mustOK(t, nd.propose(put("a", "2")))
	mustOK(t, nd.propose(compact(2)))
	stop()

	n, f, stop = start()
	defer stop()
	nd = &node{t: t, n: n, f: f}
	if f.Revision() != 3 || f.CompactRevision() != 2 {
		t.Fatalf("revisions after restart %d/%d, want 3/2", f.Revision(), f.CompactRevision())
	}
	resp := mustOK(t, nd.propose(put("a", "3")))
	if resp.GetRevision() != 4 {
		t.Fatalf("next write at %d, want 4", resp.GetRevision())
	}
	kv := mustOK(t, nd.read(get("a", "", 2))).GetRange().GetKvs()[0]
	if string(kv.Value) != "1" || kv.Version != 1 {
		t.Fatalf("a at 2 = %v", kv)
	}
}

// TestOnCommitReportsEvents: OnCommit hears every change once, in
// revision and then key order, with previous values, and the same events
// come back from History.
func TestOnCommitReportsEvents(t *testing.T) {
	nd := startNode(t, true)
	mustOK(t, nd.propose(put("b", "1")))
	txn := &command.TxnRequest{Success: []*command.RequestOp{
		{Request: &command.RequestOp_RequestPut{RequestPut: &command.PutRequest{Key: []byte("c"), Value: []byte("1")}}},
		{Request: &command.RequestOp_RequestPut{RequestPut: &command.PutRequest{Key: []byte("a"), Value: []byte("1")}}},
		{Request: &command.RequestOp_RequestPut{RequestPut: &command.PutRequest{Key: []byte("b"), Value: []byte("2")}}},
	}}
	mustOK(t, nd.propose(&command.Request{Request: &command.Request_Txn{Txn: txn}}))
	mustOK(t, nd.propose(del("a", "c")))
	nd.propose(put("", "refused"))
	mustOK(t, nd.propose(&command.Request{Request: &command.Request_Txn{Txn: &command.TxnRequest{}}}))
	var got []string
	last := int64(0)
	for _, c := range nd.commits() {
		for _, ev := range c.Events {
			got = append(got, formatEvent(ev))
			last = ev.Kv.ModRevision
		}
		if c.Revision < last || c.Restored {
			t.Fatalf("commit %+v", c)
		}
	}
	want := []string{
		"PUT b=1 c=2 m=2 v=1",
		"PUT a=1 c=3 m=3 v=1",
		"PUT b=2 c=2 m=3 v=2 prev: b=1 c=2 m=2 v=1",
		"PUT c=1 c=3 m=3 v=1",
		"DELETE a m=4 prev: a=1 c=3 m=3 v=1",
		"DELETE b m=4 prev: b=2 c=2 m=3 v=2",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var replay []string
	err := nd.n.DB().View(func(txn *badger.Txn) error {
		return nd.f.History(txn, 0, []byte{0}, []byte{0}, true, func(ev *command.Event) error {
			replay = append(replay, formatEvent(ev))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(replay, "\n") != strings.Join(want, "\n") {
		t.Fatalf("History:\n%s\nwant:\n%s", strings.Join(replay, "\n"), strings.Join(want, "\n"))
	}
}

// TestSweepLeavesOnlyNeededHistory: reads do not sweep, writes do; once
// the sweep has caught up, below the compact revision there is at most
// the newest put of each key, and every read at or above the compact
// revision is unchanged.
func TestSweepLeavesOnlyNeededHistory(t *testing.T) {
	nd := startNode(t, false)
	const keys = 10
	for i := range 3000 {
		k := fmt.Sprint("k", i%keys)
		if i%7 == 6 {
			mustOK(t, nd.propose(del(k, "")))
			continue
		}
		mustOK(t, nd.propose(put(k, fmt.Sprint(i))))
	}
	c := nd.f.Revision() - 20
	before := map[int64]*command.Response{}
	for r := c; r <= nd.f.Revision(); r++ {
		before[r] = nd.read(get("k", prefixEnd("k"), r))
	}
	if n := historyBelow(t, nd, c); n < 2000 {
		t.Fatalf("only %d events below %d before compacting", n, c)
	}
	mustOK(t, nd.propose(compact(c)))
	// The compaction spends the credit saved up to then; reads add none
	// and sweep nothing; each write pays for about ten events here.
	compacted := historyBelow(t, nd, c)
	for range 100 {
		mustOK(t, nd.propose(&command.Request{Request: &command.Request_Range{Range: get("k0", "", 0)}}))
	}
	if n := historyBelow(t, nd, c); n != compacted || n <= keys {
		t.Fatalf("reads swept: %d events left below %d, %d after the compaction", n, c, compacted)
	}
	writes := 0
	for ; historyBelow(t, nd, c) > keys && writes < 1000; writes += 10 {
		for range 10 {
			mustOK(t, nd.propose(put("z", "v")))
		}
	}
	t.Logf("swept after %d writes", writes)
	if below := historyBelow(t, nd, c); below > keys {
		t.Fatalf("%d history events below the compact revision %d, want at most %d", below, c, keys)
	}
	for r, want := range before {
		if got := nd.read(get("k", prefixEnd("k"), r)); !proto.Equal(got.GetRange(), want.GetRange()) {
			t.Fatalf("read at %d changed:\n%v\nvs\n%v", r, got, want)
		}
	}
	if err := nd.n.DB().View(func(txn *badger.Txn) error {
		return nd.f.History(txn, c-1, []byte{0}, []byte{0}, false, func(*command.Event) error { return nil })
	}); !errors.Is(err, fsm.ErrCompacted) {
		t.Fatalf("History below the compact revision: %v", err)
	}
}

// historyBelow counts the history events below rev.
func historyBelow(t *testing.T, nd *node, rev int64) int {
	n := 0
	for _, line := range strings.Split(raw(t, nd.n.DB()), "\n") {
		var r int64
		var key string
		if _, err := fmt.Sscanf(line, "s/h/ %d %q", &r, &key); err == nil && r < rev {
			n++
		}
	}
	return n
}

// TestLargeValuesKeptAcrossPuts: values too large for the apply cache
// are read back from badger for ignore_value and prev_kv.
func TestLargeValuesKeptAcrossPuts(t *testing.T) {
	nd := startNode(t, true)
	big := strings.Repeat("v", 64<<10)
	mustOK(t, nd.propose(put("k", big)))
	req := &command.Request{Request: &command.Request_Put{Put: &command.PutRequest{
		Key: []byte("k"), IgnoreValue: true, PrevKv: true, Lease: 0,
	}}}
	resp := mustOK(t, nd.propose(req))
	if string(resp.GetPut().GetPrevKv().GetValue()) != big {
		t.Fatal("prev_kv lost the large value")
	}
	kv := mustOK(t, nd.read(get("k", "", 0))).GetRange().GetKvs()[0]
	if string(kv.Value) != big || kv.Version != 2 {
		t.Fatalf("ignore_value put left %d bytes, version %d", len(kv.Value), kv.Version)
	}
	c := nd.commits()
	ev := c[len(c)-1].Events
	if len(ev) != 1 || string(ev[0].Kv.Value) != big || string(ev[0].PrevKv.Value) != big {
		t.Fatal("events lost the large value")
	}
}
