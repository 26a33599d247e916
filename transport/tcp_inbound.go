package transport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/internal/wire"
)

// errHandshake marks an inbound TLS handshake failure, such as a client
// certificate from an unknown CA.
var errHandshake = errors.New("TLS handshake failed")

// serveConn serves one inbound connection and logs why it ended.
func (t *TCP) serveConn(c net.Conn) {
	err := t.serve(c)
	switch {
	case err == nil, t.ctx.Err() != nil:
	case errors.Is(err, ErrWrongPeer), errors.Is(err, ErrWrongCluster), errors.Is(err, ErrNotAdmitted), errors.Is(err, ErrBadFrame),
		errors.Is(err, ErrFrameTooLarge), errors.Is(err, errHandshake):
		if errors.Is(err, ErrWrongPeer) || errors.Is(err, ErrWrongCluster) || errors.Is(err, ErrNotAdmitted) {
			t.refused.Store(&refusal{err: fmt.Errorf("connection from %s refused: %w", c.RemoteAddr(), err), at: time.Now()})
		}
		t.log.Warn("transport: inbound connection dropped", "remote", c.RemoteAddr().String(), "err", err)
	default:
		t.log.Debug("transport: inbound connection ended", "remote", c.RemoteAddr().String(), "err", err)
	}
}

// serve completes the TLS handshake and reads the hello, both within
// DialTimeout, and then serves the stream the hello announces. It returns nil when the sender closes a message
// stream cleanly.
func (t *TCP) serve(c net.Conn) error {
	c.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("%w: %w", errHandshake, err)
		}
	}
	fr := &frameReader{r: bufio.NewReaderSize(c, bufSize), limit: helloLimit}
	var hello wire.Hello
	if err := fr.nextProto(frameHello, &hello); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	from := hello.GetFrom()
	switch {
	case hello.GetVersion() != version:
		return fmt.Errorf("%w: hello version %d, want %d", ErrBadFrame, hello.GetVersion(), version)
	case hello.GetTo() != t.cfg.ID:
		return fmt.Errorf("%w: hello from %d to %d, this is %d", ErrWrongPeer, from, hello.GetTo(), t.cfg.ID)
	case from == 0:
		return fmt.Errorf("%w: hello from 0", ErrBadFrame)
	case hello.GetCluster() != 0 && t.cfg.ClusterID != 0 && hello.GetCluster() != t.cfg.ClusterID:
		return fmt.Errorf("%w: hello from %d of cluster %x, this is %x", ErrWrongCluster, from, hello.GetCluster(), t.cfg.ClusterID)
	}
	if a, ok := t.handler().(Admitter); ok {
		if err := a.Admit(from, hello.GetIncarnation()); err != nil {
			return fmt.Errorf("%w: %d: %w", ErrNotAdmitted, from, err)
		}
	}
	c.SetDeadline(time.Time{})
	fr.limit = t.cfg.MaxFrameSize
	switch hello.GetKind() {
	case kindMessages:
		return t.serveMessages(fr, from)
	case kindSnapshot:
		return t.serveSnapshot(c, fr, from)
	}
	return fmt.Errorf("%w: hello kind %d", ErrBadFrame, hello.GetKind())
}

// serveMessages hands each message of the stream to Handler.Process, in
// order.
func (t *TCP) serveMessages(fr *frameReader, from uint64) error {
	h := t.handler()
	for {
		m := new(raftpb.Message)
		if err := fr.nextProto(frameMsg, m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if m.GetType() == raftpb.MsgSnap {
			return fmt.Errorf("%w: MsgSnap on a message stream", ErrBadFrame)
		}
		if err := t.checkAddressing(m, from); err != nil {
			return err
		}
		h.Process(m)
	}
}

// checkAddressing rejects a message whose sender or receiver, when set,
// contradicts the connection's hello.
func (t *TCP) checkAddressing(m *raftpb.Message, from uint64) error {
	if f := m.GetFrom(); f != 0 && f != from {
		return fmt.Errorf("%w: message from %d on a stream from %d", ErrBadFrame, f, from)
	}
	if to := m.GetTo(); to != 0 && to != t.cfg.ID {
		return fmt.Errorf("%w: message to %d, this is %d", ErrWrongPeer, to, t.cfg.ID)
	}
	return nil
}
