package concord

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/go-sockaddr"

	"github.com/concordkv/concord/internal/fsm"
	"github.com/concordkv/concord/transport"
)

// Config configures a Node. Open clones it and never changes the caller's
// value; a zero field takes the default its comment states.
type Config struct {
	// Name is this member's stable, unique name. Required. The raft id is
	// derived from it, and a DataDir stays bound to the Name that created
	// it.
	Name string
	// DataDir holds the member's data: DataDir/member (its name and id)
	// and DataDir/db (badger: raft log and state). It is created (0700)
	// if missing. Default "": in memory, nothing persisted. A member that
	// comes back under its Name with its data lost (kept in memory, or its
	// DataDir wiped) forgot what it acknowledged and whom it voted for;
	// raft counts on both. Each data gets a random incarnation
	// (Status.Incarnation) that the TCP transport presents to peers: they
	// refuse such a member's messages while it is a voter, and the leader
	// takes it out and adds it back as a learner, promoting it once it has
	// caught up (Member.Incarnation, Member.Rejoining). No step is needed,
	// but the cluster has one voter fewer meanwhile.
	DataDir string
	// PeerAddr is the "host:port" the raft transport listens on. Default:
	// InitialCluster[Name]. With no InitialCluster and no PeerAddr, the
	// node is a one-node cluster that listens nowhere (an in-memory
	// transport no peer can reach).
	PeerAddr string
	// AdvertisePeerAddr is the address peers dial. Default:
	// InitialCluster[Name], else PeerAddr (as bound, so port 0 works for a
	// one-node cluster); for a gossip member whose PeerAddr has no host
	// (or 0.0.0.0, ::), this machine's first private address at PeerAddr's
	// port, as memberlist picks for gossip. When both are set they must be
	// equal. A member of
	// a cluster of several must reopen its DataDir at the address it last
	// ran with (its peers know it by that one): Open refuses another with
	// ErrInvalidConfig.
	AdvertisePeerAddr string
	// GossipAddr is memberlist's bind "host:port" (a host name is
	// resolved once, at Open); "" = no gossip (static cluster). With
	// gossip, members find each other, a leader adds new ones and
	// removes dead ones (see BootstrapExpect, Join and the package doc).
	// Gossip needs PeerAddr, the raft address members dial.
	GossipAddr string
	// AdvertiseGossipAddr is the gossip address the others reach this
	// member at. Default: GossipAddr, or with an unspecified host
	// (0.0.0.0) the first private IPv4 address of this machine.
	AdvertiseGossipAddr string
	// Join lists gossip seeds ("host:port", host names allowed, resolved
	// at every attempt). Open returns at once; seeds are retried with
	// backoff until one answers. Without InitialCluster and
	// BootstrapExpect, a member with seeds waits to be added to the
	// cluster it finds through them.
	Join []string
	// BootstrapExpect forms a new cluster once this many members gossip
	// with the same value, none of which has seen an existing cluster;
	// a member started later with the same config joins the cluster
	// instead. Every replica of one binary can use the same value. At
	// most MaxVoters; needs GossipAddr; not with InitialCluster.
	BootstrapExpect int
	// InitialCluster bootstraps a static cluster: every member's name and
	// peer address, the same on every member (etcd's initial-cluster). It
	// must name this member. Used on the first start only; later starts
	// take only addresses from it. Default nil: a one-node cluster, as is
	// one naming only this member. A lone member leads at once. The
	// members derive a cluster id from it, names and addresses
	// (Status.ClusterID; fixed once a member has first been ready, so a
	// wrong map can be corrected before that), and refuse peer
	// connections that name another cluster: two clusters whose members
	// share names cannot take each other's raft messages at a reused
	// address.
	InitialCluster map[string]string
	// PeerTLS enables mutual TLS between peers; nil = plaintext. See
	// transport.TCPConfig.TLS for what the certificates need. The plaintext
	// peer port believes whoever connects: anyone who reaches it can speak
	// as a member (the cluster id, see InitialCluster, keeps honest
	// clusters apart but proves nothing), and a message that raft cannot
	// reconcile with its log (a forged one) stops the node with
	// ErrStopped (the process goes on). Without PeerTLS, keep the peer
	// port on a network only members reach.
	PeerTLS *tls.Config
	// Transport, for advanced uses, is the raft transport to use instead
	// of TCP on PeerAddr: for instance an endpoint of a transport.Network,
	// to run a cluster in one process with injected faults (package
	// concordtest does). Its Addr is this member's peer address:
	// InitialCluster[Name] must equal it, and the other members' entries
	// are their transports' addresses. It must reach this member's peers
	// by raft id (MemberID of their names) and not be started yet.
	// PeerAddr, AdvertisePeerAddr and PeerTLS must be empty with it.
	// The node owns it from Open on: Close closes it, and so does Open
	// when it fails. Default nil: TCP.
	Transport transport.Transport
	// GossipKey encrypts gossip (AES, 16, 24 or 32 bytes) and makes
	// every member drop messages that are not encrypted with it, so a
	// node without the key cannot join. Default nil: plaintext gossip,
	// which anyone reaching GossipAddr can take part in. Needs
	// GossipAddr.
	GossipKey []byte
	// Logger receives raft's, badger's and the transport's logs. Default
	// nil: nothing is logged.
	Logger *slog.Logger

	// TickInterval is raft's clock tick. Default 100ms.
	TickInterval time.Duration
	// ElectionTicks is the election timeout, in ticks. Default 10. The
	// election timeout, TickInterval × ElectionTicks, must be at most
	// an eighth of the longest time.Duration (about 36 years).
	ElectionTicks int
	// HeartbeatTicks is the leader's heartbeat interval, in ticks.
	// Default 1.
	HeartbeatTicks int
	// SnapshotEntries is how many applied entries trigger a raft log
	// compaction. Default 10000.
	SnapshotEntries uint64
	// SnapshotCatchUpEntries is how many entries a log compaction keeps
	// for slow followers. Default 5000.
	SnapshotCatchUpEntries uint64
	// MaxRequestBytes caps the encoded size of one write request; larger
	// ones get ErrRequestTooLarge. Default 1.5 MiB; at most 8 MiB. In
	// memory (DataDir "") the cap is at most 1008 KiB, as badger keeps no
	// larger value in memory (a raft entry holds a whole request). A value
	// is also capped at 1000 KiB by the state machine.
	MaxRequestBytes int
	// MaxKeySize caps the size of a key a put writes; larger ones get
	// ErrKeyTooLarge. Default 1.5 KiB; at most 16 KiB.
	MaxKeySize int
	// WatchProgressInterval is how long a watch made WithProgressNotify
	// stays silent before it sends a progress notification (an empty
	// response carrying the revision it got to). Default 10s.
	WatchProgressInterval time.Duration

	// MaxVoters caps the voters gossip membership promotes; the voter
	// count is kept odd, other members stay learners. Default 5.
	MaxVoters int
	// StabilizationTime is how long a new member must have been alive
	// and replicating before it is promoted to voter. Default 10s.
	StabilizationTime time.Duration
	// DeadMemberReclaim is how long gossip must report a member dead,
	// and raft not have heard from it, before the leader removes it (if
	// the remaining voters still have a healthy quorum). A removed
	// member's DataDir cannot rejoin: remove it to join anew. Default 5m.
	DeadMemberReclaim time.Duration
	// GossipLocal selects memberlist's loopback profile (faster probes
	// and failure detection) instead of its LAN one. DefaultLocalConfig
	// sets it.
	GossipLocal bool
}

// Defaults of Config's tuning fields.
const (
	defaultTickInterval           = 100 * time.Millisecond
	defaultElectionTicks          = 10
	defaultHeartbeatTicks         = 1
	defaultSnapshotEntries        = 10000
	defaultSnapshotCatchUpEntries = 5000
	defaultMaxRequestBytes        = 3 << 19 // 1.5 MiB
	defaultMaxKeySize             = 3 << 9  // 1.5 KiB
	defaultWatchProgressInterval  = 10 * time.Second
	maxMaxRequestBytes            = 8 << 20
	defaultMaxVoters              = 5
	defaultStabilizationTime      = 10 * time.Second
	defaultDeadMemberReclaim      = 5 * time.Minute
	maxBootstrapExpect            = 9
	// The node waits up to 5 election timeouts (a keep-alive round), and
	// raft up to 2: keep those multiples within a time.Duration.
	maxElectionTimeout = time.Duration(math.MaxInt64 / 8)

	// In memory, badger refuses values over 1 MiB, and a raft entry (a
	// batch of requests, or one large request alone) is one value: keep
	// requests, and raftnode's batches, well below it.
	memMaxRequestBytes  = 1008 << 10
	memMaxProposalBatch = 768 << 10
)

// electionTimeout is raft's election timeout.
func (c *Config) electionTimeout() time.Duration {
	return c.TickInterval * time.Duration(c.ElectionTicks)
}

// maxRequestBytes is the request cap in effect.
func (c *Config) maxRequestBytes() int {
	if c.DataDir == "" {
		return min(c.MaxRequestBytes, memMaxRequestBytes)
	}
	return c.MaxRequestBytes
}

// DefaultConfig returns a Config with every tuning field at its default,
// for a production cluster. Set Name, DataDir and, for a cluster,
// PeerAddr and InitialCluster.
func DefaultConfig() Config {
	var c Config
	c.setDefaults()
	return c
}

// DefaultLocalConfig returns a Config for loopback clusters and tests:
// a 10ms tick, so an election takes about 100ms to 200ms instead of 1s to
// 2s; memberlist's loopback profile (a dead member is noticed in about
// 5s); a 1s StabilizationTime and a 10s DeadMemberReclaim. Everything
// else is DefaultConfig's.
func DefaultLocalConfig() Config {
	c := DefaultConfig()
	c.TickInterval = 10 * time.Millisecond
	c.GossipLocal = true
	c.StabilizationTime = time.Second
	c.DeadMemberReclaim = 10 * time.Second
	return c
}

// clone returns a copy of c sharing nothing mutable with it but Logger
// and Transport, which are handed over, not copied.
func (c Config) clone() Config {
	c.Join = append([]string(nil), c.Join...)
	c.InitialCluster = maps.Clone(c.InitialCluster)
	c.GossipKey = append([]byte(nil), c.GossipKey...)
	if c.PeerTLS != nil {
		c.PeerTLS = c.PeerTLS.Clone()
	}
	return c
}

func (c *Config) setDefaults() {
	setDefault(&c.TickInterval, defaultTickInterval)
	setDefault(&c.ElectionTicks, defaultElectionTicks)
	setDefault(&c.HeartbeatTicks, defaultHeartbeatTicks)
	setDefault(&c.SnapshotEntries, defaultSnapshotEntries)
	setDefault(&c.SnapshotCatchUpEntries, defaultSnapshotCatchUpEntries)
	setDefault(&c.MaxRequestBytes, defaultMaxRequestBytes)
	setDefault(&c.MaxKeySize, defaultMaxKeySize)
	setDefault(&c.WatchProgressInterval, defaultWatchProgressInterval)
	setDefault(&c.MaxVoters, defaultMaxVoters)
	setDefault(&c.StabilizationTime, defaultStabilizationTime)
	setDefault(&c.DeadMemberReclaim, defaultDeadMemberReclaim)
	if self, ok := c.InitialCluster[c.Name]; ok && c.Transport == nil {
		setDefault(&c.PeerAddr, self)
		setDefault(&c.AdvertisePeerAddr, self)
	}
}

// checkHostPort checks that addr is "host:port" with a decimal port in
// [0, 65535].
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number in [0, 65535]", port)
	}
	return nil
}

// advertisePeerDefault fills in AdvertisePeerAddr for a gossip member
// whose PeerAddr has an unspecified host ("", 0.0.0.0, ::): the first
// private address of this machine, as memberlist picks for gossip,
// at PeerAddr's port. Gossip tells the others this address, and peers
// cannot dial an unspecified one. Call it after validate.
func (c *Config) advertisePeerDefault() error {
	if !c.gossip() || c.Transport != nil || c.AdvertisePeerAddr != "" || c.PeerAddr == "" {
		return nil
	}
	host, port, _ := net.SplitHostPort(c.PeerAddr) // validated
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return nil
	}
	if port == "0" {
		return fmt.Errorf("%w: a gossip member's PeerAddr %q with no host and port 0 needs AdvertisePeerAddr: peers cannot dial it", ErrInvalidConfig, c.PeerAddr)
	}
	ip, err := sockaddr.GetPrivateIP()
	if err != nil || ip == "" {
		return fmt.Errorf("%w: PeerAddr %q has no host and this machine has no private IPv4 address to advertise: set AdvertisePeerAddr (%v)", ErrInvalidConfig, c.PeerAddr, err)
	}
	c.AdvertisePeerAddr = net.JoinHostPort(ip, port)
	return nil
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// validate checks c, defaults filled. Every error wraps ErrInvalidConfig
// and names the rule broken.
func (c *Config) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	switch {
	case c.Name == "":
		return bad("Name is required")
	case c.TickInterval < time.Millisecond:
		return bad("TickInterval must be at least 1ms, got %v", c.TickInterval)
	case c.HeartbeatTicks <= 0 || c.ElectionTicks <= c.HeartbeatTicks:
		return bad("ElectionTicks (%d) must be greater than HeartbeatTicks (%d), which must be positive", c.ElectionTicks, c.HeartbeatTicks)
	case time.Duration(c.ElectionTicks) > maxElectionTimeout/c.TickInterval: // c.TickInterval × ElectionTicks, without overflowing
		return bad("TickInterval × ElectionTicks (the election timeout) must be at most %v, got %v × %d", maxElectionTimeout, c.TickInterval, c.ElectionTicks)
	case c.SnapshotCatchUpEntries >= c.SnapshotEntries:
		return bad("SnapshotCatchUpEntries (%d) must be below SnapshotEntries (%d)", c.SnapshotCatchUpEntries, c.SnapshotEntries)
	case c.MaxRequestBytes < 0 || c.MaxRequestBytes > maxMaxRequestBytes:
		return bad("MaxRequestBytes must be in [1, %d], got %d", maxMaxRequestBytes, c.MaxRequestBytes)
	case c.WatchProgressInterval < time.Millisecond:
		return bad("WatchProgressInterval must be at least 1ms, got %v", c.WatchProgressInterval)
	case c.MaxKeySize < 0 || c.MaxKeySize > fsm.MaxKeySize:
		return bad("MaxKeySize must be in [1, %d], got %d", fsm.MaxKeySize, c.MaxKeySize)
	}
	if err := c.validateCluster(bad); err != nil {
		return err
	}
	if err := c.validateGossip(bad); err != nil {
		return err
	}
	if c.Transport != nil {
		if c.PeerAddr != "" || c.AdvertisePeerAddr != "" || c.PeerTLS != nil {
			return bad("PeerAddr, AdvertisePeerAddr and PeerTLS configure the TCP transport: leave them empty with Transport")
		}
		return nil
	}
	if c.PeerAddr != "" {
		if err := checkHostPort(c.PeerAddr); err != nil {
			return bad("PeerAddr must be host:port, got %q: %v", c.PeerAddr, err)
		}
	}
	if c.PeerAddr == "" && (c.PeerTLS != nil || c.AdvertisePeerAddr != "") {
		return bad("PeerTLS and AdvertisePeerAddr need PeerAddr: a node without one listens nowhere")
	}
	if c.AdvertisePeerAddr != "" {
		if err := checkHostPort(c.AdvertisePeerAddr); err != nil {
			return bad("AdvertisePeerAddr must be host:port, got %q: %v", c.AdvertisePeerAddr, err)
		}
	}
	return nil
}

func (c *Config) validateCluster(bad func(string, ...any) error) error {
	if len(c.InitialCluster) == 0 {
		return nil
	}
	self, ok := c.InitialCluster[c.Name]
	if !ok {
		return bad("InitialCluster must name this member (Name %q)", c.Name)
	}
	switch {
	case c.Transport != nil && c.Transport.Addr() != self:
		return bad("InitialCluster[%q] %q must equal Transport.Addr() %q", c.Name, self, c.Transport.Addr())
	case c.Transport == nil && c.AdvertisePeerAddr != self:
		return bad("AdvertisePeerAddr %q must equal InitialCluster[%q] %q", c.AdvertisePeerAddr, c.Name, self)
	}
	ids := map[uint64]string{}
	addrs := map[string]string{}
	for name, addr := range c.InitialCluster {
		switch {
		case name == "":
			return bad("InitialCluster must not hold an empty name")
		case addr == "":
			return bad("InitialCluster[%q] must be a peer address, got \"\"", name)
		case addrs[addr] != "":
			return bad("InitialCluster members must have distinct addresses: %q and %q share %q", name, addrs[addr], addr)
		case ids[MemberID(name)] != "":
			return bad("InitialCluster names %q and %q map to the same raft id; rename one", name, ids[MemberID(name)])
		}
		ids[MemberID(name)] = name
		addrs[addr] = name
		if c.Transport != nil {
			continue // addresses are the transport's business
		}
		if err := checkHostPort(addr); err != nil {
			return bad("InitialCluster[%q] must be host:port, got %q: %v", name, addr, err)
		}
		_, port, _ := net.SplitHostPort(addr)
		if port == "0" && len(c.InitialCluster) > 1 {
			return bad("InitialCluster[%q] must have a fixed port for peers to dial, got %q", name, addr)
		}
	}
	return nil
}

// gossip tells whether the member gossips.
func (c *Config) gossip() bool { return c.GossipAddr != "" }

// static tells whether the member bootstraps from a static member list
// (InitialCluster, or alone): its raft id is derived from its name, as
// every static member derives the others'. Members that get into a
// cluster through gossip (BootstrapExpect or Join) have random ids.
func (c *Config) static() bool {
	_, listed := c.InitialCluster[c.Name]
	return listed || (c.BootstrapExpect == 0 && len(c.Join) == 0)
}

func (c *Config) validateGossip(bad func(string, ...any) error) error {
	needs := func(field string) error {
		return bad("%s needs GossipAddr: without it the member does not gossip", field)
	}
	hostPort := func(field, addr string) error {
		if err := checkHostPort(addr); err != nil {
			return bad("%s must be host:port, got %q: %v", field, addr, err)
		}
		return nil
	}
	switch {
	case c.MaxVoters < 1:
		return bad("MaxVoters must be at least 1, got %d", c.MaxVoters)
	case c.StabilizationTime < 0 || c.DeadMemberReclaim < 0:
		return bad("StabilizationTime and DeadMemberReclaim must not be negative")
	case c.BootstrapExpect < 0 || c.BootstrapExpect > min(c.MaxVoters, maxBootstrapExpect):
		return bad("BootstrapExpect must be in [0, %d] (MaxVoters, at most %d), got %d", min(c.MaxVoters, maxBootstrapExpect), maxBootstrapExpect, c.BootstrapExpect)
	case c.BootstrapExpect > 0 && len(c.InitialCluster) > 0:
		return bad("BootstrapExpect and InitialCluster are two ways to form a cluster: set one (gossip joiners of a static cluster set Join)")
	case len(c.GossipKey) > 0 && len(c.GossipKey) != 16 && len(c.GossipKey) != 24 && len(c.GossipKey) != 32:
		return bad("GossipKey must be 16, 24 or 32 bytes, got %d", len(c.GossipKey))
	case !c.gossip() && c.AdvertiseGossipAddr != "":
		return needs("AdvertiseGossipAddr")
	case !c.gossip() && len(c.Join) > 0:
		return needs("Join")
	case !c.gossip() && c.BootstrapExpect > 0:
		return needs("BootstrapExpect")
	case !c.gossip() && len(c.GossipKey) > 0:
		return needs("GossipKey")
	case !c.gossip():
		return nil
	case c.PeerAddr == "" && c.Transport == nil:
		return bad("GossipAddr needs PeerAddr: gossip tells the others where to dial this member's raft transport")
	}
	if err := hostPort("GossipAddr", c.GossipAddr); err != nil {
		return err
	}
	if c.AdvertiseGossipAddr != "" {
		if err := hostPort("AdvertiseGossipAddr", c.AdvertiseGossipAddr); err != nil {
			return err
		}
	}
	for _, j := range c.Join {
		if err := hostPort("Join entry", j); err != nil {
			return err
		}
	}
	return nil
}
