package transport

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"runtime"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// snapTarget is a started receiver whose ProcessSnapshot hashes the body.
type snapTarget struct {
	rec  *recorder
	tr   *TCP
	sumC chan snapSum
}

type snapSum struct {
	n   int64
	sum []byte
	err error
}

func newSnapTarget(t *testing.T, id uint64) *snapTarget {
	st := &snapTarget{rec: newRecorder(), sumC: make(chan snapSum, 1)}
	st.rec.onSnap = func(m *raftpb.Message, body io.Reader) error {
		if m.GetType() != raftpb.MsgSnap || m.GetFrom() != 1 || m.GetTo() != id {
			return errors.New("unexpected header")
		}
		h := sha256.New()
		n, err := io.Copy(h, body)
		st.sumC <- snapSum{n, h.Sum(nil), err}
		return err
	}
	st.tr = newTestTCP(t, id, st.rec, nil)
	return st
}

func TestTCPSnapshotStreams50MB(t *testing.T) {
	const size = 50 << 20
	ra := newRecorder()
	a := newTestTCP(t, 1, ra, nil)
	b := newSnapTarget(t, 2)
	a.AddPeer(2, b.tr.Addr())
	body := newGenReader(size)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	a.SendSnapshot(msg(raftpb.MsgSnap, 1, 2, 7), body)
	ra.waitUntil(t, "snapshot report", func() bool { return len(ra.snapReports) == 1 })
	runtime.ReadMemStats(&after)

	if r := ra.snapshotReports()[0]; r.id != 2 || r.failed {
		t.Fatalf("report %+v, want success for 2", r)
	}
	got := <-b.sumC
	if got.err != nil || got.n != size || !bytes.Equal(got.sum, body.sum.Sum(nil)) {
		t.Fatalf("receiver read %d bytes, err %v; checksum match %v", got.n, got.err, bytes.Equal(got.sum, body.sum.Sum(nil)))
	}
	if !body.closed.Load() {
		t.Fatal("body not closed")
	}
	// Streaming, not buffering: far less is allocated than the body's size.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("streaming %d bytes allocated %d bytes in total", size, alloc)
	if alloc > 4<<20 {
		t.Fatalf("allocated %d bytes to stream %d", alloc, size)
	}
}

func TestTCPSnapshotOutcomes(t *testing.T) {
	errRefused := errors.New("refused")
	for _, tc := range []struct {
		name       string
		size       int64
		read       int64 // bytes the handler reads before returning
		err        error // what the handler returns
		wantFailed bool
	}{
		{"accepted after reading all", 1 << 20, -1, nil, false},
		{"empty body", 0, -1, nil, false},
		{"accepted without reading", 8 << 20, 0, nil, false},
		{"refused after partial read", 8 << 20, 1 << 20, errRefused, true},
		{"refused without reading", 8 << 20, 0, errRefused, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra, rb := newRecorder(), newRecorder()
			var read int64
			rb.onSnap = func(m *raftpb.Message, body io.Reader) error {
				if tc.read < 0 {
					read, _ = io.Copy(io.Discard, body)
				} else {
					read, _ = io.CopyN(io.Discard, body, tc.read)
				}
				return tc.err
			}
			a := newTestTCP(t, 1, ra, nil)
			b := newTestTCP(t, 2, rb, nil)
			a.AddPeer(2, b.Addr())
			body := newGenReader(tc.size)
			a.SendSnapshot(msg(raftpb.MsgSnap, 1, 2, 1), body)
			ra.waitUntil(t, "snapshot report", func() bool { return len(ra.snapReports) == 1 })
			if r := ra.snapshotReports()[0]; r.id != 2 || r.failed != tc.wantFailed {
				t.Fatalf("report %+v, want failed=%v", r, tc.wantFailed)
			}
			if !body.closed.Load() {
				t.Fatal("body not closed")
			}
			if tc.read < 0 && read != tc.size {
				t.Fatalf("handler read %d bytes, want %d", read, tc.size)
			}
		})
	}
}

func TestTCPSnapshotBodyError(t *testing.T) {
	ra := newRecorder()
	a := newTestTCP(t, 1, ra, nil)
	b := newSnapTarget(t, 2)
	a.AddPeer(2, b.tr.Addr())
	body := newGenReader(4 << 20)
	body.failAt = 1 << 20
	a.SendSnapshot(msg(raftpb.MsgSnap, 1, 2, 1), body)
	got := <-b.sumC
	if !errors.Is(got.err, io.ErrUnexpectedEOF) {
		t.Fatalf("receiver read %d bytes with err %v, want ErrUnexpectedEOF", got.n, got.err)
	}
	ra.waitUntil(t, "snapshot report", func() bool { return len(ra.snapReports) == 1 })
	if r := ra.snapshotReports()[0]; !r.failed || !body.closed.Load() {
		t.Fatalf("report %+v, body closed %v; want failure and closed", r, body.closed.Load())
	}
}

func TestTCPSnapshotUnknownPeer(t *testing.T) {
	ra := newRecorder()
	a := newTestTCP(t, 1, ra, nil)
	body := newGenReader(10)
	a.SendSnapshot(msg(raftpb.MsgSnap, 1, 5, 1), body)
	if r := ra.snapshotReports(); len(r) != 1 || r[0] != (snapReport{5, true}) || !body.closed.Load() {
		t.Fatalf("reports %+v, body closed %v", r, body.closed.Load())
	}
}

func TestTCPSendRejectsMsgSnap(t *testing.T) {
	ra, rb := newRecorder(), newRecorder()
	a := newTestTCP(t, 1, ra, nil)
	b := newTestTCP(t, 2, rb, nil)
	a.AddPeer(2, b.Addr())
	a.Send([]*raftpb.Message{msg(raftpb.MsgSnap, 1, 2, 1)})
	if r := ra.snapshotReports(); len(r) != 1 || r[0] != (snapReport{2, true}) {
		t.Fatalf("reports %+v, want one failure for 2", r)
	}
}
