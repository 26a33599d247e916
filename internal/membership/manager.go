package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/concordkv/concord/raftnode"
)

// republishEvery is how often a node waiting on others publishes its
// metadata again.
const republishEvery = time.Second

// Raft is the raft peer the manager drives; *raftnode.Node implements it.
type Raft interface {
	Status() raftnode.Status
	Bootstrap(ctx context.Context, peers []raftnode.Peer) error
	Hint(ctx context.Context, id uint64, addr string) error
	Progress(ctx context.Context) (map[uint64]raftnode.Progress, uint64, error)
	AddLearner(ctx context.Context, id uint64, addr string) error
	Reconfigure(ctx context.Context, promote, demote, remove []uint64) error
}

// Config configures a Manager.
type Config struct {
	// Name is the node's gossip name (its member name); ID its raft id;
	// PeerAddr its raft transport address.
	Name     string
	ID       uint64
	PeerAddr string
	// BindAddr is memberlist's "host:port"; AdvertiseAddr, if set, the
	// address the others reach it at.
	BindAddr, AdvertiseAddr string
	// Join lists seed addresses ("host:port", host names allowed).
	Join []string
	// Key, if set, encrypts gossip (16, 24 or 32 bytes).
	Key []byte
	// Local selects memberlist's loopback profile instead of the LAN one.
	Local bool
	// Expect is BootstrapExpect; 0 for a node that does not bootstrap by
	// gossip.
	Expect int
	// StaticCluster is the id of the cluster a node that bootstraps from a
	// static member list belongs to; 0 for gossip bootstrap and joiners.
	StaticCluster uint64
	// State is the persisted state; Persist saves a new one durably.
	State   State
	Persist func(State) error
	Raft    Raft
	Tuning  Tuning
	// Interval is the period of the manager's rounds.
	Interval time.Duration
	// OpTimeout bounds one membership change.
	OpTimeout time.Duration
	Logger    *slog.Logger
}

// Manager runs a node's gossip membership: it publishes the node's
// metadata, takes it into a cluster (bootstrap or join), and, while the
// node leads, reconciles raft membership with gossip.
type Manager struct {
	cfg    Config
	me     self
	g      *gossip
	addr   string // advertised gossip address
	log    *slog.Logger
	joined atomic.Bool // the first join attempt is over
	paused atomic.Bool // SetReconciling(false)

	// Owned by the run goroutine.
	state  State
	hinted map[uint64]string // addresses given to raft as hints
	health *health           // while leading; nil otherwise
	// when the metadata was last published again, and in what phase
	published time.Time
	lastPhase Phase

	base      context.Context // canceled by Close
	cancel    context.CancelFunc
	stopC     chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Start creates the memberlist (binding its address) and starts the
// manager's goroutines.
func Start(cfg Config) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		cfg:    cfg,
		me:     self{name: cfg.Name, id: cfg.ID, addr: cfg.PeerAddr, expect: cfg.Expect},
		log:    cfg.Logger.With("component", "membership"),
		state:  cfg.State.clone(),
		hinted: map[uint64]string{},
		stopC:  make(chan struct{}),
	}
	g, err := newGossip(&cfg, metaFor(m.me, m.state, false))
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	m.g = g
	// memberlist's LocalNode points into state its goroutines rewrite:
	// read it once, before anything can refute or update it.
	m.addr = g.ml.LocalNode().Address()
	m.base, m.cancel = context.WithCancel(context.Background())
	m.wg.Go(m.joinLoop)
	m.wg.Go(m.run)
	return m, nil
}

// Addr returns the gossip address the others reach this node at.
func (m *Manager) Addr() string { return m.addr }

// Nodes returns every gossip node seen, this one included.
func (m *Manager) Nodes() []NodeInfo {
	out := m.g.snapshot(m.cfg.Name)
	m.g.metaMu.Lock()
	meta, _ := decodeMeta(m.g.meta)
	m.g.metaMu.Unlock()
	return append(out, NodeInfo{Name: m.cfg.Name, GossipAddr: m.addr, Meta: meta, State: StateAlive})
}

// SetReconciling turns the leader-side reconciler off or back on (off
// while the node leaves: its own removal must not race the reconciler's).
func (m *Manager) SetReconciling(on bool) { m.paused.Store(!on) }

// Leave tells the others this node leaves, waiting up to timeout for the
// message to spread, then closes the manager.
func (m *Manager) Leave(timeout time.Duration) error {
	err := m.g.ml.Leave(timeout)
	return errors.Join(err, m.Close())
}

// Close stops the manager and its memberlist, without a leave message:
// the others will see this node dead. Idempotent.
func (m *Manager) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.stopC)
		m.cancel()
		m.g.tr.abort() // a join waiting on a seed that does not answer
		m.wg.Wait()
		err = m.g.ml.Shutdown()
	})
	return err
}

// sleep waits d or until the manager stops; false if it stopped.
func (m *Manager) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-m.stopC:
		return false
	}
}

// joinLoop joins the seeds, retrying with jittered exponential backoff
// until one answers; afterwards it rejoins now and then while some node
// it saw is dead, so that a healed partition merges again even after
// memberlist stopped gossiping to the dead.
func (m *Manager) joinLoop() {
	seeds := slices.DeleteFunc(slices.Clone(m.cfg.Join), func(s string) bool { return s == m.Addr() || s == "" })
	if len(seeds) == 0 {
		m.joined.Store(true)
		return
	}
	minWait, maxWait := time.Second, 30*time.Second
	if m.cfg.Local {
		minWait, maxWait = 50*time.Millisecond, time.Second
	}
	wait := minWait
	for {
		n, err := m.g.ml.Join(seeds)
		m.joined.Store(true)
		m.g.wake()
		if n > 0 {
			break
		}
		m.log.Debug("gossip join failed; retrying", "seeds", seeds, "err", err, "in", wait)
		if !m.sleep(wait/2 + rand.N(wait/2+1)) {
			return
		}
		wait = min(2*wait, maxWait)
	}
	for m.sleep(maxWait) {
		var dead []string
		for _, n := range m.g.snapshot(m.cfg.Name) {
			if n.State == StateDead {
				dead = append(dead, n.GossipAddr)
			}
		}
		if len(dead) > 0 {
			m.g.ml.Join(append(dead, seeds...))
		}
	}
}

// run does a round every Interval and whenever gossip changes.
func (m *Manager) run() {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-m.stopC:
			return
		case <-t.C:
		case <-m.g.wakeC:
		}
		m.round()
	}
}

// ctx bounds one operation by OpTimeout and by Close.
func (m *Manager) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(m.base, m.cfg.OpTimeout)
}

// round publishes this node's state, moves it towards a cluster, and
// reconciles membership if it leads.
func (m *Manager) round() {
	m.g.refresh()
	nodes := m.g.snapshot(m.cfg.Name)
	rs := m.cfg.Raft.Status()
	member := len(rs.Voters)+len(rs.Learners) > 0
	st := m.state.clone()
	switch {
	case st.Cluster == 0 && m.cfg.StaticCluster != 0:
		st.Cluster = m.cfg.StaticCluster
	case member && st.Cluster == 0:
		// An acceptor that received the log before it saw the commit.
		if b := st.Accepted; b != nil {
			st.Cluster, st.Committed = ClusterID(b.Founder, b.Round, ids(b.Set)), b.Set
		}
	case !member && st.Cluster == 0 && m.joined.Load():
		views := make([]View, 0, len(nodes))
		for _, n := range nodes {
			if n.Meta.ID != 0 {
				views = append(views, View{Name: n.Name, Meta: n.Meta, Alive: n.State == StateAlive})
			}
		}
		st = decide(m.me, st, views)
	}
	if !st.equal(m.state) {
		if err := m.cfg.Persist(st); err != nil {
			m.log.Error("membership: cannot persist bootstrap state", "err", err)
			return
		}
		m.log.Info("membership: state", "round", st.Round, "cluster", st.Cluster, "proposal", st.Proposal, "accepted", st.Accepted, "committed", st.Committed)
		m.state = st
	}
	// Gossip spreads an update to most nodes, not surely to all before
	// the next push/pull (15 to 30 s away): while others must act on this
	// node's metadata, publish it again now and then.
	meta := metaFor(m.me, st, member)
	force := meta.Phase != PhaseMember && meta.Phase != PhaseFresh && time.Since(m.published) > republishEvery
	if err := m.g.setMeta(meta, force, m.cfg.Interval); err != nil {
		m.log.Debug("membership: publish metadata", "err", err)
	}
	if force || meta.Phase != m.lastPhase {
		m.published, m.lastPhase = time.Now(), meta.Phase
	}
	m.hint(st, nodes)
	if !member && st.Committed != nil {
		ctx, cancel := m.ctx()
		err := m.cfg.Raft.Bootstrap(ctx, st.Committed)
		cancel()
		switch {
		case err == nil:
			m.log.Info("membership: bootstrapped", "voters", st.Committed)
		case !errors.Is(err, raftnode.ErrNotPristine):
			m.log.Warn("membership: bootstrap", "err", err)
		}
	}
	if rs.State == raft.StateLeader && !m.paused.Load() {
		m.reconcile(rs, st.Cluster, nodes)
	} else {
		m.health = nil
	}
}

// hint gives the raft peer the addresses of the nodes it may hear from
// before its log names them: a bootstrap set, or the cluster it joins.
func (m *Manager) hint(st State, nodes []NodeInfo) {
	var peers []raftnode.Peer
	switch {
	case st.Committed != nil:
		peers = st.Committed
	case st.Accepted != nil:
		peers = st.Accepted.Set
	}
	if st.Cluster != 0 {
		for _, n := range nodes {
			if n.State == StateAlive && n.Meta.Phase == PhaseMember && n.Meta.Cluster == st.Cluster {
				peers = append(peers, raftnode.Peer{ID: n.Meta.ID, Addr: n.Meta.PeerAddr})
			}
		}
	}
	for _, p := range peers {
		if p.ID == m.cfg.ID || p.Addr == "" || m.hinted[p.ID] == p.Addr {
			continue
		}
		ctx, cancel := m.ctx()
		err := m.cfg.Raft.Hint(ctx, p.ID, p.Addr)
		cancel()
		if err == nil {
			m.hinted[p.ID] = p.Addr
		}
	}
}

// reconcile runs one reconciler round on the leader.
func (m *Manager) reconcile(rs raftnode.Status, cluster uint64, nodes []NodeInfo) {
	ctx, cancel := m.ctx()
	defer cancel()
	prog, commit, err := m.cfg.Raft.Progress(ctx)
	if err != nil {
		m.health = nil
		return
	}
	now := time.Now()
	if m.health == nil {
		m.health = newHealth(now)
		m.health.grace = 3 * m.cfg.Interval // rounds come every Interval, half an election timeout
	}
	m.health.observe(now, prog)
	byID := map[uint64]NodeInfo{}
	for _, n := range nodes {
		if n.Meta.ID != 0 {
			if old, ok := byID[n.Meta.ID]; !ok || n.Since.After(old.Since) {
				byID[n.Meta.ID] = n
			}
		}
	}
	c := plan(world{
		now: now, self: m.cfg.ID, cluster: cluster,
		voters: rs.Voters, learners: rs.Learners, joint: rs.Joint,
		progress: prog, commit: commit, gossip: byID, health: m.health, tuning: m.cfg.Tuning,
	})
	if c.empty() {
		return
	}
	m.log.Info("membership: reconcile", "change", c.why)
	if c.add.ID != 0 {
		err = m.cfg.Raft.AddLearner(ctx, c.add.ID, c.add.Addr)
	} else {
		err = m.cfg.Raft.Reconfigure(ctx, c.promote, c.demote, c.remove)
	}
	if err != nil {
		m.log.Warn("membership: reconcile failed", "change", c.why, "err", err)
	}
}
