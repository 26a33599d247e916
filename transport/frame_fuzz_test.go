package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/internal/wire"
)

// byteConn is a net.Conn that reads a fixed input and discards writes.
type byteConn struct{ r *bytes.Reader }

func (c byteConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c byteConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c byteConn) Close() error                     { return nil }
func (c byteConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c byteConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c byteConn) SetDeadline(time.Time) error      { return nil }
func (c byteConn) SetReadDeadline(time.Time) error  { return nil }
func (c byteConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzHandler checks what an inbound connection delivers to transport 2,
// retaining nothing.
type fuzzHandler struct{ t *testing.T }

func (h fuzzHandler) check(m *raftpb.Message) {
	if m.GetTo() != 0 && m.GetTo() != 2 {
		h.t.Fatalf("delivered a message to %d", m.GetTo())
	}
}

func (h fuzzHandler) Process(m *raftpb.Message) {
	h.check(m)
	if m.GetType() == raftpb.MsgSnap {
		h.t.Fatal("delivered MsgSnap from a message stream")
	}
}

func (h fuzzHandler) ProcessSnapshot(m *raftpb.Message, body io.Reader) error {
	h.check(m)
	_, err := io.Copy(io.Discard, body)
	return err
}

func (fuzzHandler) ReportUnreachable(uint64)    {}
func (fuzzHandler) ReportSnapshot(uint64, bool) {}

const fuzzLimit = 512

func FuzzReadFrame(f *testing.F) {
	stream, _ := testStream(f)
	f.Add(stream)
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	hello := helloFrame(f, &wire.Hello{From: 1, To: 2, Kind: kindMessages, Version: version})
	f.Add(cat(hello, msgFrame(f, msg(raftpb.MsgApp, 1, 2, 1)), msgFrame(f, msg(raftpb.MsgHeartbeat, 1, 2, 2))))
	snapHello := helloFrame(f, &wire.Hello{From: 1, To: 2, Kind: kindSnapshot, Version: version})
	snap, _ := appendFrame(nil, frameSnap, msg(raftpb.MsgSnap, 1, 2, 1), fuzzLimit)
	chunk, end := rawFrame(frameChunk, []byte("body")), rawFrame(frameEnd, nil)
	f.Add(cat(snapHello, snap, chunk, chunk, end))

	tr, err := NewTCP(TCPConfig{ID: 2, ListenAddr: "127.0.0.1:0", MaxFrameSize: fuzzLimit})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { tr.Close() })

	f.Fuzz(func(t *testing.T, data []byte) {
		// The frame decoder alone.
		fr := &frameReader{r: bytes.NewReader(data), limit: fuzzLimit}
		for {
			_, p, err := fr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
					!errors.Is(err, ErrBadFrame) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if len(p) >= fuzzLimit {
				t.Fatalf("payload of %d bytes passed a limit of %d", len(p), fuzzLimit)
			}
		}
		// A snapshot body made of these bytes.
		body := &snapReader{fr: &frameReader{r: bytes.NewReader(data), limit: fuzzLimit}}
		io.Copy(io.Discard, body)

		// The whole inbound path: hello, then messages or a snapshot.
		tr.h.Store(&handlerBox{fuzzHandler{t}})
		tr.serve(byteConn{bytes.NewReader(data)})
	})
}
