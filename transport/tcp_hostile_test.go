package transport

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/wire"
)

func helloFrame(t testing.TB, h *wire.Hello) []byte {
	t.Helper()
	b, err := appendFrame(nil, frameHello, h, helloLimit)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rawFrame(typ byte, payload []byte) []byte {
	b := make([]byte, headerLen, headerLen+len(payload))
	putHeader(b, typ, len(payload))
	return append(b, payload...)
}

func msgFrame(t testing.TB, m *raftpb.Message) []byte {
	t.Helper()
	b, err := appendFrame(nil, frameMsg, m, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// hostileInputs are inbound streams for transport 2 that must be dropped
// before any message reaches the handler, with the error serve returns.
func hostileInputs(t testing.TB) []struct {
	name string
	data []byte
	want error
} {
	hello := helloFrame(t, &wire.Hello{From: 1, To: 2, Kind: kindMessages, Version: version})
	snapHello := helloFrame(t, &wire.Hello{From: 1, To: 2, Kind: kindSnapshot, Version: version})
	snap, _ := appendFrame(nil, frameSnap, msg(raftpb.MsgSnap, 1, 2, 1), 1<<20)
	noise := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	// A plausible length prefix and type, so that the noise reaches the
	// protobuf decoder.
	copy(noise, []byte{0, 0, 0, 200, frameMsg})
	valid := msgFrame(t, msg(raftpb.MsgApp, 1, 2, 1))
	return []struct {
		name string
		data []byte
		want error
	}{
		{"huge length instead of hello", []byte{0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"huge length after hello", cat(hello, []byte{0xff, 0xff, 0xff, 0xff}), ErrFrameTooLarge},
		{"garbage message after hello", cat(hello, rawFrame(frameMsg, []byte{0xff, 0xff, 0xff})), ErrBadFrame},
		{"noise after hello", cat(hello, noise), ErrBadFrame},
		{"noise instead of hello", noise, ErrBadFrame},
		{"unknown frame type", cat(hello, rawFrame(42, nil)), ErrBadFrame},
		{"hello to another peer", cat(helloFrame(t, &wire.Hello{From: 1, To: 3, Kind: kindMessages, Version: version}), valid), ErrWrongPeer},
		{"hello of another version", cat(helloFrame(t, &wire.Hello{From: 1, To: 2, Kind: kindMessages, Version: 9}), valid), ErrBadFrame},
		{"hello of unknown kind", cat(helloFrame(t, &wire.Hello{From: 1, To: 2, Kind: 7, Version: version}), valid), ErrBadFrame},
		{"message from another sender", cat(hello, msgFrame(t, msg(raftpb.MsgApp, 5, 2, 1))), ErrBadFrame},
		{"message to another peer", cat(hello, msgFrame(t, msg(raftpb.MsgApp, 1, 3, 1))), ErrWrongPeer},
		{"MsgSnap on a message stream", cat(hello, msgFrame(t, msg(raftpb.MsgSnap, 1, 2, 1))), ErrBadFrame},
		{"snapshot stream opened by a message", cat(snapHello, msgFrame(t, msg(raftpb.MsgApp, 1, 2, 1))), ErrBadFrame},
		{"message frame in a snapshot body", cat(snapHello, snap, valid), ErrBadFrame},
		{"truncated message", cat(hello, valid[:len(valid)-1]), io.ErrUnexpectedEOF},
	}
}

func TestServeRejectsHostileInput(t *testing.T) {
	rec := newRecorder()
	tr := newTestTCP(t, 2, rec, nil)
	for _, tc := range hostileInputs(t) {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			go func() {
				client.Write(tc.data)
				client.Close()
			}()
			err := tr.serve(server)
			server.Close()
			if !errors.Is(err, tc.want) {
				t.Fatalf("serve = %v, want %v", err, tc.want)
			}
		})
	}
	if n := rec.count(); n != 0 {
		t.Fatalf("handler got %d messages", n)
	}
}

func TestTCPDropsHostileConnections(t *testing.T) {
	rec := newRecorder()
	tr := newTestTCP(t, 2, rec, nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, tc := range hostileInputs(t) {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tr.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tc.data) // the server may already have hung up
			c.(*net.TCPConn).CloseWrite()
			expectHangUp(t, c)
		})
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Fatalf("hostile connections made the server allocate %d bytes", alloc)
	}
	// A well-behaved peer still gets through, and is the only one heard.
	a := newTestTCP(t, 1, newRecorder(), nil)
	a.AddPeer(2, tr.Addr())
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 99)})
	rec.waitUntil(t, "the honest message", func() bool { return len(rec.msgs) > 0 })
	if got := rec.messages(); len(got) != 1 || !proto.Equal(got[0], msg(raftpb.MsgApp, 1, 2, 99)) {
		t.Fatalf("handler got %v", got)
	}
}

// expectHangUp reads c until the server closes it, and fails if the server
// keeps it open.
func expectHangUp(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server kept the connection open")
	}
}
