package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/internal/wire"
)

// A snapshot stream is a connection of its own: hello (kind 2), one
// frameSnap with the MsgSnap, frameChunk frames with the body, a frameEnd,
// and then the receiver's frameAck.
const (
	chunkSize   = 64 << 10 // body bytes per chunk frame sent
	ackLimit    = 4 << 10  // largest ack frame accepted
	ackErrLimit = 1 << 10  // longest error text put in an ack
)

// sendSnapshot streams m and body to addr, closes body and reports the
// outcome.
func (t *TCP) sendSnapshot(m *raftpb.Message, addr string, body io.ReadCloser) {
	err := t.streamSnapshot(m, addr, body)
	if cerr := body.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing snapshot body: %w", cerr)
	}
	if err != nil {
		t.log.Warn("transport: snapshot failed", "peer", m.GetTo(), "err", err)
	}
	t.handler().ReportSnapshot(m.GetTo(), err != nil)
}

// streamSnapshot sends m and body over a new connection and waits for the
// receiver's ack. Memory stays bounded by one chunk.
func (t *TCP) streamSnapshot(m *raftpb.Message, addr string, body io.Reader) error {
	conn, err := t.dial(t.ctx, addr)
	if err != nil {
		return err
	}
	if !t.track(conn) {
		return ErrClosed
	}
	defer t.untrack(conn)

	hello := &wire.Hello{From: t.cfg.ID, To: m.GetTo(), Kind: kindSnapshot, Version: version, Cluster: t.cfg.ClusterID, Incarnation: t.cfg.Incarnation}
	head, err := appendFrame(nil, frameHello, hello, helloLimit)
	if err != nil {
		return err
	}
	if head, err = appendFrame(head, frameSnap, m, t.cfg.MaxFrameSize); err != nil {
		return err
	}
	if err := writeTimeout(conn, head, t.cfg.WriteTimeout); err != nil {
		return err
	}
	chunk := make([]byte, headerLen+chunkSize)
	for {
		n, rerr := io.ReadFull(body, chunk[headerLen:])
		if n > 0 {
			putHeader(chunk, frameChunk, n)
			if err := writeTimeout(conn, chunk[:headerLen+n], t.cfg.WriteTimeout); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("reading snapshot body: %w", rerr)
		}
	}
	putHeader(chunk, frameEnd, 0)
	if err := writeTimeout(conn, chunk[:headerLen], t.cfg.WriteTimeout); err != nil {
		return err
	}
	// The receiver acks once the handler returns, which may take long; Close
	// interrupts the wait by closing conn.
	conn.SetWriteDeadline(time.Time{})
	fr := &frameReader{r: conn, limit: ackLimit}
	var ack wire.SnapshotAck
	if err := fr.nextProto(frameAck, &ack); err != nil {
		return fmt.Errorf("waiting for ack: %w", err)
	}
	if !ack.GetOk() {
		return fmt.Errorf("peer %d rejected the snapshot: %s", m.GetTo(), ack.GetError())
	}
	return nil
}

func writeTimeout(c net.Conn, b []byte, d time.Duration) error {
	c.SetWriteDeadline(time.Now().Add(d))
	_, err := c.Write(b)
	return err
}

// serveSnapshot reads the MsgSnap of a snapshot stream, hands it with a
// streaming body to Handler.ProcessSnapshot and acks the result. If the
// handler accepts without reading the whole body, the rest is drained so
// that the ack reaches the sender.
func (t *TCP) serveSnapshot(c net.Conn, fr *frameReader, from uint64) error {
	m := new(raftpb.Message)
	if err := fr.nextProto(frameSnap, m); err != nil {
		return err
	}
	if m.GetType() != raftpb.MsgSnap {
		return fmt.Errorf("%w: %v opens a snapshot stream", ErrBadFrame, m.GetType())
	}
	if err := t.checkAddressing(m, from); err != nil {
		return err
	}
	body := &snapReader{fr: fr}
	perr := t.handler().ProcessSnapshot(m, body)
	if perr == nil && body.err != io.EOF {
		if _, err := io.Copy(io.Discard, body); err != nil {
			return fmt.Errorf("draining snapshot body: %w", err)
		}
	}
	ack := &wire.SnapshotAck{Ok: perr == nil}
	if perr != nil {
		ack.Error = perr.Error()
		if len(ack.Error) > ackErrLimit {
			ack.Error = ack.Error[:ackErrLimit]
		}
	}
	b, err := appendFrame(nil, frameAck, ack, ackLimit)
	if err == nil {
		err = writeTimeout(c, b, t.cfg.WriteTimeout)
	}
	if perr != nil {
		return errors.Join(fmt.Errorf("snapshot from %d refused: %w", from, perr), err)
	}
	return err
}

// snapReader reads a snapshot body from its chunk frames, straight from the
// connection's buffer, up to the end frame.
type snapReader struct {
	fr   *frameReader
	left int   // unread bytes of the current chunk
	err  error // sticky: io.EOF after the end frame, or why the stream broke
}

func (s *snapReader) Read(p []byte) (int, error) {
	for s.left == 0 {
		if s.err != nil {
			return 0, s.err
		}
		typ, n, err := s.fr.header()
		switch {
		case err != nil:
			s.err = noEOF(err)
		case typ == frameChunk:
			s.left = n
		case typ == frameEnd && n == 0:
			s.err = io.EOF
		default:
			s.err = fmt.Errorf("%w: frame type %d in a snapshot body", ErrBadFrame, typ)
		}
	}
	if len(p) > s.left {
		p = p[:s.left]
	}
	n, err := s.fr.r.Read(p)
	s.left -= n
	if err != nil {
		s.err, s.left = noEOF(err), 0
	}
	if n == 0 && s.err != nil {
		return 0, s.err
	}
	return n, nil
}
