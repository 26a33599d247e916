package transport

import (
	"bufio"
	"errors"
	"io"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

func TestTCPDeliversInOrder(t *testing.T) {
	const n = 200
	recs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
	var trs []*TCP
	for i, r := range recs {
		trs = append(trs, newTestTCP(t, uint64(i+1), r, nil))
	}
	mesh(trs...)
	for i := uint64(1); i <= n; i++ {
		for _, a := range trs {
			var out []*raftpb.Message
			for _, b := range trs {
				if a != b {
					out = append(out, msg(raftpb.MsgApp, a.cfg.ID, b.cfg.ID, i))
				}
			}
			a.Send(out)
		}
	}
	for to, r := range recs {
		r.waitUntil(t, "all messages", func() bool { return len(r.msgs) == 2*n })
		next := map[uint64]uint64{}
		for _, m := range r.messages() {
			if m.GetTo() != uint64(to+1) || m.GetType() != raftpb.MsgApp {
				t.Fatalf("peer %d got %v", to+1, m)
			}
			next[m.GetFrom()]++
			if m.GetIndex() != next[m.GetFrom()] {
				t.Fatalf("peer %d got index %d from %d, want %d", to+1, m.GetIndex(), m.GetFrom(), next[m.GetFrom()])
			}
		}
		if u := r.unreachableCopy(); len(u) != 0 {
			t.Errorf("peer %d reported unreachable: %v", to+1, u)
		}
	}
}

func TestTCPManyMessagesInOneSend(t *testing.T) {
	const n = 20000
	ra, rb := newRecorder(), newRecorder()
	a := newTestTCP(t, 1, ra, func(c *TCPConfig) { c.QueueSize = n })
	b := newTestTCP(t, 2, rb, nil)
	a.AddPeer(2, b.Addr())
	out := make([]*raftpb.Message, n)
	for i := range out {
		out[i] = msg(raftpb.MsgHeartbeat, 1, 2, uint64(i+1))
	}
	a.Send(out)
	rb.waitUntil(t, "all messages", func() bool { return len(rb.msgs) == n })
	for i, m := range rb.messages() {
		if m.GetIndex() != uint64(i+1) {
			t.Fatalf("message %d has index %d", i, m.GetIndex())
		}
	}
	if u := ra.unreachableCopy(); ra.count() != 0 || len(u) != 0 {
		t.Fatalf("sender saw %d messages, %v unreachable", ra.count(), u)
	}
}

// countConn counts the writes that reach the connection.
type countConn struct {
	net.Conn
	writes int
}

func (c *countConn) Write(b []byte) (int, error) {
	c.writes++
	return c.Conn.Write(b)
}

func TestTCPWriteFlushesBatchOnce(t *testing.T) {
	tr := newTestTCP(t, 1, newRecorder(), nil)
	p := newPeer(tr, 2, "unused")
	defer p.cancel()
	for i := range 100 {
		p.queue <- msg(raftpb.MsgApp, 1, 2, uint64(i))
	}
	batch := p.drain(nil)
	if len(batch) != 100 {
		t.Fatalf("drain took %d messages, want 100", len(batch))
	}
	client, server := net.Pipe()
	defer server.Close()
	defer client.Close()
	go func() {
		fr := &frameReader{r: server, limit: 1 << 20}
		for {
			if _, _, err := fr.next(); err != nil {
				return
			}
		}
	}()
	cc := &countConn{Conn: client}
	if err := p.write(cc, bufio.NewWriterSize(cc, bufSize), batch); err != nil {
		t.Fatal(err)
	}
	if cc.writes != 1 {
		t.Fatalf("100 messages took %d writes, want 1", cc.writes)
	}
}

func TestTCPUnknownPeerIsUnreachable(t *testing.T) {
	r := newRecorder()
	a := newTestTCP(t, 1, r, nil)
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 99, 1), msg(raftpb.MsgApp, 1, 99, 2)})
	if u := r.unreachableCopy(); u[99] != 2 {
		t.Fatalf("unreachable = %v, want 2 reports for 99", u)
	}
}

func TestTCPRemovePeer(t *testing.T) {
	ra, rb := newRecorder(), newRecorder()
	a := newTestTCP(t, 1, ra, nil)
	b := newTestTCP(t, 2, rb, nil)
	a.AddPeer(2, b.Addr())
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1)})
	rb.waitUntil(t, "first message", func() bool { return len(rb.msgs) == 1 })
	a.RemovePeer(2)
	a.RemovePeer(2)
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 2)})
	ra.waitUntil(t, "unreachable report", func() bool { return ra.unreachable[2] >= 1 })
}

func TestTCPAddPeerMovesAddress(t *testing.T) {
	ra, rb := newRecorder(), newRecorder()
	a := newTestTCP(t, 1, ra, nil)
	b := newTestTCP(t, 2, rb, nil)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	a.AddPeer(2, deadAddr)
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1)})
	ra.waitUntil(t, "unreachable report", func() bool { return ra.unreachable[2] >= 1 })
	a.AddPeer(2, b.Addr())
	a.AddPeer(2, b.Addr())
	sendUntilDelivered(t, a, rb, 2)
}

// sendUntilDelivered sends numbered messages from a to peer to until rb
// has received one, and checks that what arrived is in order.
func sendUntilDelivered(t *testing.T, a *TCP, rb *recorder, to uint64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for i := uint64(1); rb.count() == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no message reached peer %d", to)
		}
		a.Send([]*raftpb.Message{msg(raftpb.MsgApp, a.cfg.ID, to, i)})
		rb.waitFor(20*time.Millisecond, func() bool { return len(rb.msgs) > 0 })
	}
	msgs := rb.messages()
	for i := 1; i < len(msgs); i++ {
		if msgs[i].GetIndex() <= msgs[i-1].GetIndex() {
			t.Fatalf("out of order: %d after %d", msgs[i].GetIndex(), msgs[i-1].GetIndex())
		}
	}
}

func TestTCPReconnectsAfterPeerRestart(t *testing.T) {
	ra, rb := newRecorder(), newRecorder()
	a := newTestTCP(t, 1, ra, nil)
	b := newTestTCP(t, 2, rb, nil)
	addr := b.Addr()
	a.AddPeer(2, addr)
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1)})
	rb.waitUntil(t, "first message", func() bool { return len(rb.msgs) == 1 })

	b.Close()
	ra.waitUntil(t, "unreachable after peer closed", func() bool { return ra.unreachable[2] >= 1 })
	before := ra.unreachableCount(2)
	for i := uint64(2); i < 10; i++ {
		a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, i)})
	}
	ra.waitUntil(t, "messages sent while down reported", func() bool { return ra.unreachable[2] > before })

	rb2 := newRecorder()
	newTestTCP(t, 2, rb2, func(c *TCPConfig) { c.ListenAddr = addr })
	sendUntilDelivered(t, a, rb2, 2)
}

func TestTCPSendNeverBlocks(t *testing.T) {
	// A peer that accepts nothing: the kernel completes the handshake, the
	// socket buffers fill, and the writer blocks in Write.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := newRecorder()
	a := newTestTCP(t, 1, r, func(c *TCPConfig) { c.QueueSize = 2 })
	a.AddPeer(2, ln.Addr().String())
	const n = 64
	for i := range n {
		m := msg(raftpb.MsgApp, 1, 2, uint64(i))
		m.Entries = []*raftpb.Entry{{Data: make([]byte, 1<<20)}}
		a.Send([]*raftpb.Message{m})
	}
	r.waitUntil(t, "drops reported", func() bool { return r.unreachable[2] > 0 })
	a.Close()
	checkNoTransportGoroutines(t)
}

func TestTCPCloseStopsEverything(t *testing.T) {
	ra, rb := newRecorder(), newRecorder()
	readingC := make(chan struct{})
	rb.onSnap = func(m *raftpb.Message, body io.Reader) error {
		buf := make([]byte, 1<<20)
		if _, err := io.ReadFull(body, buf); err != nil {
			return err
		}
		close(readingC)
		_, err := io.Copy(io.Discard, body)
		return err
	}
	a := newTestTCP(t, 1, ra, nil)
	b := newTestTCP(t, 2, rb, nil)
	mesh(a, b)
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1)})
	b.Send([]*raftpb.Message{msg(raftpb.MsgApp, 2, 1, 1)})
	rb.waitUntil(t, "message to b", func() bool { return len(rb.msgs) == 1 })
	ra.waitUntil(t, "message to a", func() bool { return len(ra.msgs) == 1 })
	body := newGenReader(1 << 40)
	a.SendSnapshot(msg(raftpb.MsgSnap, 1, 2, 1), body)
	select {
	case <-readingC:
	case <-time.After(waitTimeout):
		t.Fatal("snapshot never started")
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ra.waitUntil(t, "snapshot failure report", func() bool { return len(ra.snapReports) == 1 })
	if r := ra.snapshotReports(); !r[0].failed || !body.closed.Load() {
		t.Fatalf("report %+v, body closed %v", r[0], body.closed.Load())
	}
	a.Close()
	a.Close()
	checkNoTransportGoroutines(t)

	unreachable := ra.unreachableCopy()
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 2), msg(raftpb.MsgApp, 1, 9, 2)})
	a.AddPeer(3, "127.0.0.1:1")
	body2 := newGenReader(10)
	a.SendSnapshot(msg(raftpb.MsgSnap, 1, 2, 2), body2)
	if u := ra.unreachableCopy(); !maps.Equal(u, unreachable) || len(ra.snapshotReports()) != 1 || !body2.closed.Load() {
		t.Fatalf("calls after Close had effects: %v %v", u, ra.snapshotReports())
	}
	if err := a.Start(ra); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v, want ErrClosed", err)
	}
	checkNoTransportGoroutines(t)
}

func TestTCPConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  TCPConfig
		want string
	}{
		{"zero ID", TCPConfig{ListenAddr: "127.0.0.1:0"}, "ID"},
		{"no address", TCPConfig{ID: 1}, "ListenAddr"},
		{"frame size", TCPConfig{ID: 1, ListenAddr: "127.0.0.1:0", MaxFrameSize: -1}, "MaxFrameSize"},
		{"backoff", TCPConfig{ID: 1, ListenAddr: "127.0.0.1:0", MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MaxBackoff"},
		{"bad address", TCPConfig{ID: 1, ListenAddr: "127.0.0.1:99999"}, "transport.NewTCP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := NewTCP(tc.cfg)
			if err == nil {
				tr.Close()
				t.Fatal("NewTCP accepted an invalid config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestTCPStartTwice(t *testing.T) {
	tr := newTestTCP(t, 1, newRecorder(), nil)
	if err := tr.Start(newRecorder()); err == nil {
		t.Fatal("second Start succeeded")
	}
}
