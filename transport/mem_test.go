package transport

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// memWait bounds every wait in these tests; nothing should come near it.
const memWait = 10 * time.Second

// memRec is a Handler recording what it receives on buffered channels.
type memRec struct {
	msgs    chan *raftpb.Message
	unreach chan uint64
	snaps   chan []byte // bodies received by ProcessSnapshot
	results chan memSnapResult
	snapErr error         // returned by ProcessSnapshot
	gate    chan struct{} // if non-nil, Process waits for it to close
}

type memSnapResult struct {
	id     uint64
	failed bool
}

func newMemRec() *memRec {
	return &memRec{
		msgs:    make(chan *raftpb.Message, 1<<14),
		unreach: make(chan uint64, 1<<10),
		snaps:   make(chan []byte, 16),
		results: make(chan memSnapResult, 16),
	}
}

func (r *memRec) Process(m *raftpb.Message) {
	if r.gate != nil {
		<-r.gate
	}
	r.msgs <- m
}

func (r *memRec) ProcessSnapshot(m *raftpb.Message, body io.Reader) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if m.GetType() != raftpb.MsgSnap {
		return errors.New("not a MsgSnap")
	}
	r.snaps <- b
	return r.snapErr
}

func (r *memRec) ReportUnreachable(id uint64) { r.unreach <- id }

func (r *memRec) ReportSnapshot(id uint64, failed bool) {
	r.results <- memSnapResult{id, failed}
}

// recv returns the next message r receives.
func (r *memRec) recv(t *testing.T) *raftpb.Message {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(memWait):
		t.Fatal("no message delivered")
		return nil
	}
}

// untilMarker returns the indexes of the messages r receives before the
// next marker.
func (r *memRec) untilMarker(t *testing.T) []uint64 {
	t.Helper()
	var idx []uint64
	for {
		m := r.recv(t)
		if m.GetType() == raftpb.MsgHeartbeat {
			return idx
		}
		idx = append(idx, m.GetIndex())
	}
}

func (r *memRec) waitUnreachable(t *testing.T, want uint64) {
	t.Helper()
	deadline := time.After(memWait)
	for {
		select {
		case id := <-r.unreach:
			if id == want {
				return
			}
		case <-deadline:
			t.Fatalf("peer %d not reported unreachable", want)
		}
	}
}

func (r *memRec) snapResult(t *testing.T) memSnapResult {
	t.Helper()
	select {
	case res := <-r.results:
		return res
	case <-time.After(memWait):
		t.Fatal("no snapshot report")
		return memSnapResult{}
	}
}

func memApp(from, to, index uint64) *raftpb.Message {
	return &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: new(from), To: new(to), Index: new(index)}
}

func memMarker(from, to uint64) *raftpb.Message {
	return &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: new(from), To: new(to)}
}

func memSnap(from, to uint64) *raftpb.Message {
	return &raftpb.Message{Type: raftpb.MsgSnap.Enum(), From: new(from), To: new(to)}
}

// memBody is a snapshot body that records being closed.
type memBody struct {
	io.Reader
	once   sync.Once
	closed chan struct{}
}

func newMemBody(s string) *memBody {
	return &memBody{Reader: bytes.NewReader([]byte(s)), closed: make(chan struct{})}
}

func (b *memBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

func (b *memBody) isClosed() bool {
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}

// memCluster starts a network of peers ids that all know each other.
func memCluster(t *testing.T, seed int64, ids ...uint64) (*Network, map[uint64]Transport, map[uint64]*memRec) {
	t.Helper()
	n := NewNetwork(seed)
	t.Cleanup(n.Close)
	trs := make(map[uint64]Transport)
	recs := make(map[uint64]*memRec)
	for _, id := range ids {
		trs[id] = n.Transport(id)
		recs[id] = newMemRec()
		if err := trs[id].Start(recs[id]); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		for _, p := range ids {
			if p != id {
				trs[id].AddPeer(p, "mem://whatever")
			}
		}
	}
	return n, trs, recs
}

// memSeq returns 1..k.
func memSeq(k int) []uint64 {
	s := make([]uint64, k)
	for i := range s {
		s[i] = uint64(i + 1)
	}
	return s
}

func TestMemBasicDelivery(t *testing.T) {
	n, trs, recs := memCluster(t, 1, 1, 2)
	if got := trs[1].Addr(); got != "mem://1" {
		t.Fatalf("Addr = %q", got)
	}
	if n.Transport(1) != trs[1] {
		t.Fatal("Transport(1) returned another endpoint while open")
	}
	var batch []*raftpb.Message
	for i := uint64(1); i <= 100; i++ {
		batch = append(batch, memApp(1, 2, i))
	}
	trs[1].Send(batch)
	trs[2].Send([]*raftpb.Message{memApp(2, 1, 7)})
	for i := uint64(1); i <= 100; i++ {
		m := recs[2].recv(t)
		if m.GetIndex() != i || m.GetFrom() != 1 || m.GetTo() != 2 {
			t.Fatalf("got index %d from %d to %d, want index %d from 1 to 2", m.GetIndex(), m.GetFrom(), m.GetTo(), i)
		}
	}
	if m := recs[1].recv(t); m.GetIndex() != 7 {
		t.Fatalf("got index %d, want 7", m.GetIndex())
	}
}

func TestMemUnreachable(t *testing.T) {
	n, trs, recs := memCluster(t, 1, 1, 2)
	trs[1].Send([]*raftpb.Message{memApp(1, 3, 1)}) // not added
	recs[1].waitUnreachable(t, 3)

	trs[1].AddPeer(4, "mem://4") // added, absent from the network
	trs[1].Send([]*raftpb.Message{memApp(1, 4, 1)})
	recs[1].waitUnreachable(t, 4)

	n.Transport(5) // present, not started
	trs[1].AddPeer(5, "mem://5")
	trs[1].Send([]*raftpb.Message{memApp(1, 5, 1)})
	recs[1].waitUnreachable(t, 5)

	trs[1].RemovePeer(2)
	trs[1].Send([]*raftpb.Message{memApp(1, 2, 1)})
	recs[1].waitUnreachable(t, 2)
}

func TestMemQueueOverflow(t *testing.T) {
	n, trs, recs := memCluster(t, 1, 1, 2)
	n.SetQueueSize(2)
	gate := make(chan struct{})
	recs[2].gate = gate
	for i := uint64(1); i <= 10; i++ {
		trs[1].Send([]*raftpb.Message{memApp(1, 2, i)})
	}
	recs[1].waitUnreachable(t, 2)
	close(gate)
	n.SetQueueSize(DefaultMemQueueSize) // room for the marker
	got := recs[2].untilMarkerAfter(t, trs[1], 1, 2)
	if len(got) < 2 || len(got) > 3 || !slices.IsSorted(got) {
		t.Fatalf("delivered %v, want the first 2 or 3 messages in order", got)
	}
}

// untilMarkerAfter sends a marker from one peer to another and returns what
// r received before it.
func (r *memRec) untilMarkerAfter(t *testing.T, tr Transport, from, to uint64) []uint64 {
	t.Helper()
	tr.Send([]*raftpb.Message{memMarker(from, to)})
	return r.untilMarker(t)
}

func TestMemPartitionAndHeal(t *testing.T) {
	n, trs, recs := memCluster(t, 1, 1, 2, 3)
	n.Partition([]uint64{1, 2}, []uint64{3})
	trs[1].Send([]*raftpb.Message{memApp(1, 2, 1), memApp(1, 3, 1)})
	trs[3].Send([]*raftpb.Message{memApp(3, 1, 1)})
	if m := recs[2].recv(t); m.GetIndex() != 1 {
		t.Fatalf("1->2 got index %d", m.GetIndex())
	}

	n.Heal()
	if got := recs[3].untilMarkerAfter(t, trs[1], 1, 3); len(got) != 0 {
		t.Fatalf("1->3 crossed the partition: %v", got)
	}
	if got := recs[1].untilMarkerAfter(t, trs[3], 3, 1); len(got) != 0 {
		t.Fatalf("3->1 crossed the partition: %v", got)
	}
	trs[3].Send([]*raftpb.Message{memApp(3, 1, 2)})
	if m := recs[1].recv(t); m.GetIndex() != 2 {
		t.Fatalf("after heal got index %d, want 2", m.GetIndex())
	}

	n.Partition([]uint64{1, 2}) // 3 unlisted: cut off
	trs[2].Send([]*raftpb.Message{memApp(2, 3, 1), memApp(2, 1, 1)})
	if m := recs[1].recv(t); m.GetIndex() != 1 {
		t.Fatalf("2->1 got index %d", m.GetIndex())
	}
	n.Heal()
	if got := recs[3].untilMarkerAfter(t, trs[2], 2, 3); len(got) != 0 {
		t.Fatalf("2->3 reached an unlisted peer: %v", got)
	}
}

func TestMemIsolateAndCut(t *testing.T) {
	n, trs, recs := memCluster(t, 1, 1, 2, 3)
	n.Isolate(2)
	n.Cut(3, 1)
	trs[1].Send([]*raftpb.Message{memApp(1, 2, 1), memApp(1, 3, 1)})
	trs[2].Send([]*raftpb.Message{memApp(2, 3, 1)})
	trs[3].Send([]*raftpb.Message{memApp(3, 1, 1)})
	if m := recs[3].recv(t); m.GetFrom() != 1 {
		t.Fatalf("3 got a message from %d, want 1", m.GetFrom())
	}
	n.Heal()
	if got := recs[2].untilMarkerAfter(t, trs[1], 1, 2); len(got) != 0 {
		t.Fatalf("1->2 reached the isolated peer: %v", got)
	}
	if got := recs[3].untilMarkerAfter(t, trs[2], 2, 3); len(got) != 0 {
		t.Fatalf("2->3 left the isolated peer: %v", got)
	}
	if got := recs[1].untilMarkerAfter(t, trs[3], 3, 1); len(got) != 0 {
		t.Fatalf("3->1 crossed the cut: %v", got)
	}
}

func TestMemDropAll(t *testing.T) {
	n, trs, recs := memCluster(t, 1, 1, 2)
	n.SetDropRate(1)
	for i := uint64(1); i <= 100; i++ {
		trs[1].Send([]*raftpb.Message{memApp(1, 2, i)})
	}
	n.SetDropRate(0)
	if got := recs[2].untilMarkerAfter(t, trs[1], 1, 2); len(got) != 0 {
		t.Fatalf("drop rate 1 delivered %v", got)
	}
}

func TestMemDuplicateAll(t *testing.T) {
	n, trs, recs := memCluster(t, 1, 1, 2)
	n.SetDuplicateRate(1)
	var want []uint64
	for i := uint64(1); i <= 50; i++ {
		trs[1].Send([]*raftpb.Message{memApp(1, 2, i)})
		want = append(want, i, i)
	}
	n.SetDuplicateRate(0)
	if got := recs[2].untilMarkerAfter(t, trs[1], 1, 2); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

func TestMemDelay(t *testing.T) {
	n, trs, recs := memCluster(t, 1, 1, 2)
	const lo, hi = 20 * time.Millisecond, 40 * time.Millisecond
	n.SetDelay(lo, hi)
	start := time.Now()
	for i := uint64(1); i <= 50; i++ {
		trs[1].Send([]*raftpb.Message{memApp(1, 2, i)})
	}
	for i := uint64(1); i <= 50; i++ {
		m := recs[2].recv(t)
		if i == 1 && time.Since(start) < lo {
			t.Fatalf("first message after %v, want at least %v", time.Since(start), lo)
		}
		if m.GetIndex() != i {
			t.Fatalf("got index %d, want %d: delay without reorder broke the order", m.GetIndex(), i)
		}
	}
}

func TestMemReorder(t *testing.T) {
	n, trs, recs := memCluster(t, 7, 1, 2)
	n.SetReorderRate(0.3)
	const k = 1000
	for i := uint64(1); i <= k; i++ {
		trs[1].Send([]*raftpb.Message{memApp(1, 2, i)})
	}
	got := make([]uint64, 0, k)
	for range k {
		got = append(got, recs[2].recv(t).GetIndex())
	}
	if slices.IsSorted(got) {
		t.Fatal("reorder rate 0.3 left 1000 messages in order")
	}
	slices.Sort(got)
	if !slices.Equal(got, memSeq(k)) {
		t.Fatal("not every message arrived exactly once")
	}
}

func TestMemSeedReproducible(t *testing.T) {
	run := func(seed int64) []uint64 {
		n, trs, recs := memCluster(t, seed, 1, 2)
		defer n.Close()
		n.SetDropRate(0.5)
		for i := uint64(1); i <= 200; i++ {
			trs[1].Send([]*raftpb.Message{memApp(1, 2, i)})
		}
		n.SetDropRate(0)
		return recs[2].untilMarkerAfter(t, trs[1], 1, 2)
	}
	a, b := run(42), run(42)
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different deliveries:\n%v\n%v", a, b)
	}
	if len(a) == 0 || len(a) == 200 {
		t.Fatalf("drop rate 0.5 delivered %d of 200", len(a))
	}
	if c := run(43); slices.Equal(a, c) {
		t.Fatal("seeds 42 and 43 made the same decisions")
	}
}

func TestMemSnapshot(t *testing.T) {
	n, trs, recs := memCluster(t, 1, 1, 2)
	n.SetDelay(time.Millisecond, 2*time.Millisecond)
	body := newMemBody("snapshot data")
	trs[1].SendSnapshot(memSnap(1, 2), body)
	if res := recs[1].snapResult(t); res != (memSnapResult{2, false}) {
		t.Fatalf("report %+v, want {2 false}", res)
	}
	if got := string(<-recs[2].snaps); got != "snapshot data" {
		t.Fatalf("body %q", got)
	}
	if !body.isClosed() {
		t.Fatal("body not closed")
	}

	recs[2].snapErr = errors.New("refused")
	body = newMemBody("again")
	trs[1].SendSnapshot(memSnap(1, 2), body)
	if res := recs[1].snapResult(t); res != (memSnapResult{2, true}) {
		t.Fatalf("report %+v, want {2 true}", res)
	}
	if !body.isClosed() {
		t.Fatal("body not closed")
	}
	<-recs[2].snaps

	trs[1].Send([]*raftpb.Message{memSnap(1, 2)}) // MsgSnap must use SendSnapshot
	if res := recs[1].snapResult(t); res != (memSnapResult{2, true}) {
		t.Fatalf("MsgSnap through Send: report %+v, want {2 true}", res)
	}
}

func TestMemSnapshotFailures(t *testing.T) {
	n, trs, recs := memCluster(t, 1, 1, 2)
	n.Partition([]uint64{1}, []uint64{2})
	body := newMemBody("lost")
	trs[1].SendSnapshot(memSnap(1, 2), body)
	if res := recs[1].snapResult(t); res != (memSnapResult{2, true}) {
		t.Fatalf("partitioned: report %+v, want {2 true}", res)
	}
	if !body.isClosed() {
		t.Fatal("body not closed")
	}
	select {
	case <-recs[2].snaps:
		t.Fatal("snapshot crossed the partition")
	default:
	}

	n.Heal()
	body = newMemBody("unknown")
	trs[1].SendSnapshot(memSnap(1, 9), body)
	if res := recs[1].snapResult(t); res != (memSnapResult{9, true}) {
		t.Fatalf("unknown peer: report %+v, want {9 true}", res)
	}
	if !body.isClosed() {
		t.Fatal("body not closed")
	}
}

func TestMemCloseAndRestart(t *testing.T) {
	n, trs, recs := memCluster(t, 1, 1, 2)
	old := trs[2]
	for range 2 {
		if err := old.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if err := old.Start(newMemRec()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
	trs[1].Send([]*raftpb.Message{memApp(1, 2, 1)})
	recs[1].waitUnreachable(t, 2)
	body := newMemBody("to the dead")
	trs[1].SendSnapshot(memSnap(1, 2), body)
	if res := recs[1].snapResult(t); res != (memSnapResult{2, true}) {
		t.Fatalf("snapshot to closed peer: report %+v", res)
	}

	fresh := n.Transport(2)
	if fresh == old {
		t.Fatal("Transport returned the closed endpoint")
	}
	if n.Transport(2) != fresh {
		t.Fatal("Transport returned another endpoint while open")
	}
	rec := newMemRec()
	if err := fresh.Start(rec); err != nil {
		t.Fatal(err)
	}
	fresh.AddPeer(1, "mem://1")
	trs[1].Send([]*raftpb.Message{memApp(1, 2, 2)})
	if m := rec.recv(t); m.GetIndex() != 2 {
		t.Fatalf("restarted peer got index %d, want 2", m.GetIndex())
	}
	fresh.Send([]*raftpb.Message{memApp(2, 1, 3)})
	if m := recs[1].recv(t); m.GetIndex() != 3 {
		t.Fatalf("got index %d from restarted peer, want 3", m.GetIndex())
	}
	select {
	case m := <-recs[2].msgs:
		t.Fatalf("closed endpoint's handler got index %d", m.GetIndex())
	default:
	}
}

func TestMemCloseWithPendingWork(t *testing.T) {
	n, trs, _ := memCluster(t, 1, 1, 2)
	n.SetDelay(time.Hour, time.Hour)
	trs[1].Send([]*raftpb.Message{memApp(1, 2, 1)})
	trs[1].SendSnapshot(memSnap(1, 2), newMemBody("never"))
	done := make(chan struct{})
	go func() {
		n.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(memWait):
		t.Fatal("Close waited for delayed messages")
	}
}

func TestNetworkClose(t *testing.T) {
	n, trs, _ := memCluster(t, 1, 1, 2)
	n.Close()
	n.Close()
	trs[1].Send([]*raftpb.Message{memApp(1, 2, 1)}) // no panic, no effect
	if err := n.Transport(1).Start(newMemRec()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Network.Close: %v, want ErrClosed", err)
	}
}

func TestMemReset(t *testing.T) {
	n, trs, recs := memCluster(t, 1, 1, 2)
	n.SetDropRate(1)
	n.SetDelay(time.Hour, time.Hour)
	n.SetReorderRate(1)
	n.SetDuplicateRate(1)
	n.Isolate(2)
	n.Reset()
	if got := recs[2].untilMarkerAfter(t, trs[1], 1, 2); len(got) != 0 {
		t.Fatalf("got %v before the marker", got)
	}
	trs[1].Send([]*raftpb.Message{memApp(1, 2, 1)})
	if got := recs[2].untilMarkerAfter(t, trs[1], 1, 2); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("after Reset delivered %v, want [1]", got)
	}
}
