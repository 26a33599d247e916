package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// TCP is the production [Transport]: one long-lived outbound connection per
// peer, a separate connection per snapshot, length-prefixed frames and
// optional mTLS. Create it with [NewTCP].
type TCP struct {
	cfg       TCPConfig
	ln        net.Listener
	log       *slog.Logger
	clientTLS *tls.Config // nil for plaintext
	h         atomic.Pointer[handlerBox]
	refused   atomic.Pointer[refusal] // the last inbound connection refused for its hello
	ctx       context.Context         // done on Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // every goroutine the transport starts

	mu      sync.Mutex
	started bool                  // guarded by mu
	closed  bool                  // guarded by mu
	peers   map[uint64]*peer      // guarded by mu
	conns   map[net.Conn]struct{} // guarded by mu; inbound and snapshot connections
}

var _ Transport = (*TCP)(nil)

type handlerBox struct{ Handler }

type refusal struct {
	err error
	at  time.Time
}

// Refused returns why this transport last refused an inbound connection
// whose hello named another cluster or another peer, or that Admit
// refused (an error wrapping ErrWrongCluster, ErrWrongPeer or
// ErrNotAdmitted), if it did so within the last d; nil
// otherwise. Such a refusal usually means members were started with
// different InitialCluster maps, or that an address changed hands.
func (t *TCP) Refused(d time.Duration) error {
	r := t.refused.Load()
	if r == nil || time.Since(r.at) > d {
		return nil
	}
	return r.err
}

// NewTCP validates cfg and starts listening on cfg.ListenAddr at once, so
// that [TCP.Addr] is known before [TCP.Start]. Connections are served after
// Start.
func NewTCP(cfg TCPConfig) (*TCP, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("transport.NewTCP: %w", err)
	}
	serverTLS, clientTLS, err := tlsConfigs(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("transport.NewTCP: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("transport.NewTCP: %w", err)
	}
	if serverTLS != nil {
		ln = tls.NewListener(ln, serverTLS)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &TCP{
		cfg:       cfg,
		ln:        ln,
		log:       log.With("transport_id", cfg.ID),
		clientTLS: clientTLS,
		ctx:       ctx,
		cancel:    cancel,
		peers:     make(map[uint64]*peer),
		conns:     make(map[net.Conn]struct{}),
	}, nil
}

// Addr returns cfg.AdvertiseAddr if set, else the bound listen address.
func (t *TCP) Addr() string {
	if t.cfg.AdvertiseAddr != "" {
		return t.cfg.AdvertiseAddr
	}
	return t.ln.Addr().String()
}

// Start begins serving inbound connections and delivering to h. It returns
// ErrClosed after Close, and an error if called twice.
func (t *TCP) Start(h Handler) error {
	if h == nil {
		return errors.New("transport: Start: nil Handler")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return ErrClosed
	case t.started:
		return errors.New("transport: Start called twice")
	}
	t.started = true
	t.h.Store(&handlerBox{h})
	t.wg.Go(t.acceptLoop)
	return nil
}

// handler returns the Handler given to Start, or one that ignores all.
func (t *TCP) handler() Handler {
	if b := t.h.Load(); b != nil {
		return b.Handler
	}
	return nopHandler{}
}

// AddPeer registers peer id at addr, or moves it to a new addr. No-op after
// Close.
func (t *TCP) AddPeer(id uint64, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if p := t.peers[id]; p != nil {
		p.setAddr(addr)
		return
	}
	p := newPeer(t, id, addr)
	t.peers[id] = p
	t.wg.Go(p.run)
}

// RemovePeer forgets peer id, closes its connection and drops its queue.
func (t *TCP) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

func (t *TCP) peer(id uint64) (p *peer, closed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peers[id], t.closed
}

// Send queues each message for its peer without blocking. A message to an
// unknown peer or beyond a full queue is dropped and reported with
// Handler.ReportUnreachable; a MsgSnap is dropped and reported with
// Handler.ReportSnapshot(to, true). No-op after Close.
func (t *TCP) Send(msgs []*raftpb.Message) {
	for _, m := range msgs {
		p, closed := t.peer(m.GetTo())
		switch {
		case closed:
			return
		case m.GetType() == raftpb.MsgSnap:
			t.log.Warn("transport: MsgSnap given to Send, use SendSnapshot", "peer", m.GetTo())
			t.handler().ReportSnapshot(m.GetTo(), true)
		case p == nil:
			t.handler().ReportUnreachable(m.GetTo())
		default:
			select {
			case p.queue <- m:
			default:
				t.handler().ReportUnreachable(m.GetTo())
			}
		}
	}
}

// SendSnapshot streams m and body to peer m.To on a connection of its own,
// in the background, and reports the outcome with Handler.ReportSnapshot.
// It always closes body; after Close it only does that. Close interrupts the
// stream but waits for a body Read in progress to return.
func (t *TCP) SendSnapshot(m *raftpb.Message, body io.ReadCloser) {
	to := m.GetTo()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		body.Close()
		return
	}
	p := t.peers[to]
	if p != nil {
		addr := p.address()
		t.wg.Go(func() { t.sendSnapshot(m, addr, body) })
	}
	t.mu.Unlock()
	if p == nil {
		body.Close()
		t.log.Warn("transport: snapshot to unknown peer", "peer", to)
		t.handler().ReportSnapshot(to, true)
	}
}

// Close stops the listener, every peer and every connection, and waits for
// all goroutines of the transport to return. Idempotent.
func (t *TCP) Close() error {
	t.mu.Lock()
	peers, conns := t.peers, t.conns
	t.closed, t.peers, t.conns = true, nil, nil
	t.mu.Unlock()

	t.cancel()
	t.ln.Close()
	for _, p := range peers {
		p.stop()
	}
	for c := range conns {
		c.Close()
	}
	t.wg.Wait()
	return nil
}

// track registers c so that Close closes it. It returns false, having
// closed c, if the transport is closed.
func (t *TCP) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

// untrack closes c and forgets it.
func (t *TCP) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	c.Close()
}

// dial connects to addr, with TLS if configured.
func (t *TCP) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: t.cfg.DialTimeout}
	if t.clientTLS == nil {
		return d.DialContext(ctx, "tcp", addr)
	}
	td := &tls.Dialer{NetDialer: d, Config: t.clientTLS}
	return td.DialContext(ctx, "tcp", addr)
}

// acceptLoop serves inbound connections until the listener is closed.
func (t *TCP) acceptLoop() {
	var wait time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			wait = nextBackoff(wait, 5*time.Millisecond, time.Second)
			t.log.Warn("transport: accept failed", "err", err, "retry_in", wait)
			if !sleepCtx(t.ctx, wait) {
				return
			}
			continue
		}
		wait = 0
		if !t.track(c) {
			return
		}
		t.wg.Go(func() {
			defer t.untrack(c)
			t.serveConn(c)
		})
	}
}

// nextBackoff doubles d within [lo, hi].
func nextBackoff(d, lo, hi time.Duration) time.Duration {
	return min(max(2*d, lo), hi)
}

// sleepCtx waits for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

type nopHandler struct{}

func (nopHandler) Process(*raftpb.Message)                          {}
func (nopHandler) ProcessSnapshot(*raftpb.Message, io.Reader) error { return ErrClosed }
func (nopHandler) ReportUnreachable(uint64)                         {}
func (nopHandler) ReportSnapshot(uint64, bool)                      {}
