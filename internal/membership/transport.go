package membership

import (
	"context"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// abortableTransport is memberlist's NetTransport with outgoing streams
// that abort cuts. memberlist dials a node and waits for its answer up to
// TCPTimeout (10 s in the LAN profile), and a join in progress would hold
// Close that long for each seed that never answers.
type abortableTransport struct {
	*memberlist.NetTransport
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[net.Conn]struct{} // guarded by mu; open outgoing streams
}

var _ memberlist.NodeAwareTransport = (*abortableTransport)(nil)

// newAbortableTransport binds the transport memberlist.Create would make
// for mc, and sets mc's ports if it bound port 0, as memberlist does.
func newAbortableTransport(mc *memberlist.Config) (*abortableTransport, error) {
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{mc.BindAddr}, BindPort: mc.BindPort, Logger: mc.Logger}
	tries := 1
	if mc.BindPort == 0 {
		tries = 10 // a port free for TCP may be taken for UDP: pick again
	}
	var nt *memberlist.NetTransport
	var err error
	for range tries {
		if nt, err = memberlist.NewNetTransport(nc); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if mc.BindPort == 0 {
		mc.BindPort = nt.GetAutoBindPort()
		mc.AdvertisePort = mc.BindPort
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &abortableTransport{NetTransport: nt, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}, nil
}

func (t *abortableTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *abortableTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(t.ctx, "tcp", a.Addr)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		c.Close()
		return nil, net.ErrClosed
	}
	t.conns[c] = struct{}{}
	return &trackedConn{Conn: c, t: t}, nil
}

// abort cuts every outgoing stream and refuses new ones.
func (t *abortableTransport) abort() {
	t.cancel()
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.Close()
	}
}

// trackedConn leaves its transport's set when closed.
type trackedConn struct {
	net.Conn
	t    *abortableTransport
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c.Conn)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}
