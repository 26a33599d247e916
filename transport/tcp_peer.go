package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/internal/wire"
)

const (
	kindMessages = 1 // wire.Hello.Kind of a message stream
	kindSnapshot = 2 // wire.Hello.Kind of a snapshot stream
	version      = 1 // wire.Hello.Version spoken here

	helloLimit = 256      // largest hello frame accepted
	bufSize    = 64 << 10 // bufio size of message streams
	maxBatch   = 1024     // most messages written per flush
)

// peer owns the outbound message stream to one peer: its run goroutine
// dials, writes the queue in batches and redials with backoff.
type peer struct {
	t      *TCP
	id     uint64
	queue  chan *raftpb.Message
	ctx    context.Context // done when the peer is removed or the transport closed
	cancel context.CancelFunc

	mu   sync.Mutex
	addr string   // guarded by mu
	conn net.Conn // guarded by mu; the live connection, nil while disconnected
}

func newPeer(t *TCP, id uint64, addr string) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	return &peer{
		t:      t,
		id:     id,
		addr:   addr,
		queue:  make(chan *raftpb.Message, t.cfg.QueueSize),
		ctx:    ctx,
		cancel: cancel,
	}
}

func (p *peer) address() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// setAddr moves the peer to addr, dropping a connection to the old one.
func (p *peer) setAddr(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if addr == p.addr {
		return
	}
	p.addr = addr
	if p.conn != nil {
		p.conn.Close()
	}
}

// stop makes run return soon; it does not wait.
func (p *peer) stop() {
	p.cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		p.conn.Close()
	}
}

// run connects and streams until the peer is stopped. After a failure it
// waits a backoff, dropping and reporting queued messages meanwhile; the
// backoff resets once a connection has lasted MaxBackoff.
func (p *peer) run() {
	cfg := &p.t.cfg
	var wait time.Duration
	for p.ctx.Err() == nil {
		conn, err := p.connect()
		if err == nil {
			start := time.Now()
			err = p.stream(conn)
			if time.Since(start) >= cfg.MaxBackoff {
				wait = 0
			}
		}
		if p.ctx.Err() != nil {
			return
		}
		p.t.handler().ReportUnreachable(p.id)
		wait = nextBackoff(wait, cfg.MinBackoff, cfg.MaxBackoff)
		p.t.log.Debug("transport: peer connection failed", "peer", p.id, "err", err, "retry_in", wait)
		p.dropFor(wait)
	}
}

// connect dials the peer and publishes the connection for stop and setAddr.
func (p *peer) connect() (net.Conn, error) {
	addr := p.address()
	conn, err := p.t.dial(p.ctx, addr)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.ctx.Err() != nil:
		conn.Close()
		return nil, ErrClosed
	case addr != p.addr:
		conn.Close()
		return nil, errors.New("peer address changed while dialing")
	}
	p.conn = conn
	return conn, nil
}

// stream sends the hello, then queued messages, until the connection fails
// or the peer stops. A message stream carries nothing back, so a read
// returning at all means the connection is gone.
func (p *peer) stream(conn net.Conn) error {
	deadC := make(chan struct{})
	go func() {
		defer close(deadC)
		var b [1]byte
		conn.Read(b[:])
	}()
	defer func() {
		p.mu.Lock()
		p.conn = nil
		p.mu.Unlock()
		conn.Close()
		<-deadC
	}()

	bw := bufio.NewWriterSize(conn, bufSize)
	hello := &wire.Hello{From: p.t.cfg.ID, To: p.id, Kind: kindMessages, Version: version, Cluster: p.t.cfg.ClusterID, Incarnation: p.t.cfg.Incarnation}
	b, err := appendFrame(bw.AvailableBuffer(), frameHello, hello, helloLimit)
	if err != nil {
		return err
	}
	conn.SetWriteDeadline(time.Now().Add(p.t.cfg.WriteTimeout))
	bw.Write(b)
	if err := bw.Flush(); err != nil {
		return err
	}

	batch := make([]*raftpb.Message, 0, 64)
	for {
		select {
		case <-p.ctx.Done():
			return nil
		case <-deadC:
			return errors.New("connection closed by peer")
		case m := <-p.queue:
			batch = append(batch[:0], m)
			batch = p.drain(batch)
			err := p.write(conn, bw, batch)
			clear(batch)
			if err != nil {
				return err
			}
		}
	}
}

// drain appends queued messages to batch without waiting, up to maxBatch.
func (p *peer) drain(batch []*raftpb.Message) []*raftpb.Message {
	for len(batch) < maxBatch {
		select {
		case m := <-p.queue:
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

// write encodes batch into bw and flushes once. A message too large for a
// frame is dropped and reported unreachable.
func (p *peer) write(conn net.Conn, bw *bufio.Writer, batch []*raftpb.Message) error {
	for _, m := range batch {
		b, err := appendFrame(bw.AvailableBuffer(), frameMsg, m, p.t.cfg.MaxFrameSize)
		if err != nil {
			p.t.log.Warn("transport: message dropped", "peer", p.id, "type", m.GetType().String(), "err", err)
			p.t.handler().ReportUnreachable(p.id)
			continue
		}
		conn.SetWriteDeadline(time.Now().Add(p.t.cfg.WriteTimeout))
		if _, err := bw.Write(b); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	conn.SetWriteDeadline(time.Now().Add(p.t.cfg.WriteTimeout))
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// dropFor waits d, dropping queued messages and reporting each unreachable.
func (p *peer) dropFor(d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-timer.C:
			return
		case <-p.queue:
			p.t.handler().ReportUnreachable(p.id)
		}
	}
}
