package membership

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipState is what gossip says of a node's liveness.
type GossipState uint8

// Gossip states, as memberlist reports them.
const (
	StateAlive GossipState = iota + 1
	StateSuspect
	StateDead
	StateLeft
)

func (s GossipState) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return ""
}

// NodeInfo is a gossip node as this node last saw it.
type NodeInfo struct {
	Name       string
	GossipAddr string
	// Meta is its metadata; zero (ID 0) if it published none that
	// decodes (it is then ignored).
	Meta  Meta
	State GossipState
	// Since is when State last changed, as seen here.
	Since time.Time
}

// gossip is the memberlist of one node and what it has seen: every node
// ever seen stays tracked (with its last state), so that a dead one's
// history survives memberlist forgetting it.
type gossip struct {
	ml *memberlist.Memberlist
	tr *abortableTransport

	metaMu sync.Mutex
	meta   []byte // guarded by metaMu; returned by NodeMeta

	mu    sync.Mutex
	nodes map[string]*NodeInfo // guarded by mu; by name

	wakeC chan struct{} // a node changed; buffered 1
	now   func() time.Time
}

// memberlistConfig builds memberlist's configuration for c: the LAN
// profile, or the local (loopback, tests) one.
func memberlistConfig(c *Config) (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	mc.DeadNodeReclaimTime = 10 * time.Second
	if c.Local {
		mc = memberlist.DefaultLocalConfig()
		mc.DeadNodeReclaimTime = time.Second
	}
	mc.Name = c.Name
	host, port, err := splitIPPort(c.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("GossipAddr: %w", err)
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if c.AdvertiseAddr != "" {
		host, port, err := splitIPPort(c.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("AdvertiseGossipAddr: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = host, port
	}
	if len(c.Key) > 0 {
		mc.SecretKey = append([]byte(nil), c.Key...)
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.Logger = newLogLogger(c.Logger)
	return mc, nil
}

// splitIPPort splits "host:port", resolving a host name to an IP address
// (memberlist binds and advertises IPs only).
func splitIPPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if net.ParseIP(host) == nil {
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return "", 0, fmt.Errorf("cannot resolve %q: %v", host, err)
		}
		host = ips[0].String()
		for _, ip := range ips {
			if ip.To4() != nil {
				host = ip.String()
				break
			}
		}
	}
	return host, int(port), nil
}

func newGossip(c *Config, meta Meta) (*gossip, error) {
	mc, err := memberlistConfig(c)
	if err != nil {
		return nil, err
	}
	g := &gossip{nodes: map[string]*NodeInfo{}, wakeC: make(chan struct{}, 1), now: time.Now}
	g.meta = meta.encode(nil)
	mc.Delegate = (*delegate)(g)
	mc.Events = (*events)(g)
	tr, err := newAbortableTransport(mc)
	if err != nil {
		return nil, fmt.Errorf("could not set up network transport: %w", err)
	}
	mc.Transport = tr
	ml, err := memberlist.Create(mc)
	if err != nil {
		tr.Shutdown()
		return nil, err
	}
	g.tr = tr
	g.ml = ml
	return g, nil
}

// setMeta publishes m if it changed, or again if force, waiting up to
// timeout for the broadcast to leave.
func (g *gossip) setMeta(m Meta, force bool, timeout time.Duration) error {
	b := m.encode(nil)
	g.metaMu.Lock()
	same := string(b) == string(g.meta)
	g.meta = b
	g.metaMu.Unlock()
	if same && !force {
		return nil
	}
	return g.ml.UpdateNode(timeout) // 0 would wait forever with no one to tell
}

func (g *gossip) wake() {
	select {
	case g.wakeC <- struct{}{}:
	default:
	}
}

// observe records node n in state s. Called by memberlist with its locks
// held: it must not call memberlist.
func (g *gossip) observe(n *memberlist.Node, s GossipState) {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		meta = Meta{}
	}
	g.mu.Lock()
	info := g.nodes[n.Name]
	if info != nil && meta.ID != 0 && info.Meta.ID != 0 && meta.ID != info.Meta.ID {
		// The name came back with another raft id (a node restarted
		// without its data): the old id is gone for good.
		old := *info
		if old.State == StateAlive || old.State == StateSuspect {
			old.State, old.Since = StateDead, g.now()
		}
		g.nodes[fmt.Sprintf("%s\x00%x", n.Name, old.Meta.ID)] = &old
		info = nil
	}
	if info == nil {
		info = &NodeInfo{Name: n.Name}
		g.nodes[n.Name] = info
	}
	if info.State != s {
		info.State, info.Since = s, g.now()
	}
	info.GossipAddr = n.Address()
	if meta.ID != 0 || len(n.Meta) == 0 {
		info.Meta = meta
	}
	g.mu.Unlock()
	g.wake()
}

// refresh takes suspicion from memberlist's member list: events tell
// joins, updates and deaths, not suspicion.
func (g *gossip) refresh() {
	for _, n := range g.ml.Members() {
		s := StateAlive
		if n.State == memberlist.StateSuspect {
			s = StateSuspect
		}
		g.mu.Lock()
		info := g.nodes[n.Name]
		if info != nil && info.State != s && (info.State == StateAlive || info.State == StateSuspect) {
			info.State, info.Since = s, g.now()
		}
		g.mu.Unlock()
	}
}

// snapshot returns every node seen but this one (earlier lives of this
// name with other raft ids included), in no order.
func (g *gossip) snapshot(self string) []NodeInfo {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]NodeInfo, 0, len(g.nodes))
	for name, n := range g.nodes {
		if name != self {
			out = append(out, *n)
		}
	}
	return out
}

// delegate serves memberlist's Delegate: metadata only.
type delegate gossip

func (d *delegate) NodeMeta(limit int) []byte {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	if len(d.meta) > limit {
		return nil
	}
	return append([]byte(nil), d.meta...)
}

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// events serves memberlist's EventDelegate.
type events gossip

func (e *events) NotifyJoin(n *memberlist.Node)   { (*gossip)(e).observe(n, StateAlive) }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*gossip)(e).observe(n, StateAlive) }
func (e *events) NotifyLeave(n *memberlist.Node) {
	s := StateDead
	if n.State == memberlist.StateLeft {
		s = StateLeft
	}
	(*gossip)(e).observe(n, s)
}
