package concord

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
	"github.com/concordkv/concord/internal/lessor"
	"github.com/concordkv/concord/internal/membership"
	"github.com/concordkv/concord/internal/watchhub"
	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/transport"
)

// Node is one member of a concord cluster, running inside this process:
// a raft peer, its replicated key-value store and the API over them.
// Create it with Open; its methods are safe for concurrent use.
type Node struct {
	cfg         Config
	id          uint64
	clusterID   uint64     // see Status.ClusterID
	incarnation uint64     // see Status.Incarnation
	provisional bool       // clusterID is to be recorded for good once ready (memberRecord.ClusterIDProvisional)
	memberMu    sync.Mutex // serializes updates of the member file
	tr          transport.Transport
	dbSize      *dbSize
	rn          *raftnode.Node
	fsm         *fsm.FSM
	hub         *watchhub.Hub[*Event]
	mgr         *membership.Manager // gossip membership; nil without GossipAddr
	ls          *lessor.Lessor
	mem         *transport.Network // the in-memory transport of a node without PeerAddr, else nil
	log         *slog.Logger
	names       map[uint64]string // static members' names by raft id; read-only

	addrMu sync.Mutex
	addrs  map[uint64]string // guarded by addrMu; peer addresses last seen

	ready    atomic.Bool
	readyC   chan struct{} // closed once ready
	closingC chan struct{} // closed by Close
	cancelBg context.CancelFunc
	wg       sync.WaitGroup // background goroutines

	// lifeMu is held for reading around every use of the DB outside
	// raftnode, and for writing while Close stops raftnode (and so closes
	// the DB).
	lifeMu    sync.RWMutex
	closed    atomic.Bool
	leaving   atomic.Bool // Leave is removing this member: its removal is a close
	closeOnce sync.Once
	closeErr  error

	seqSeed  maphash.Seed
	seqLocks [16]chan struct{} // PutSequential, by prefix hash

	turnsMu    sync.Mutex
	queueTurns map[string]chan struct{} // guarded by turnsMu; Dequeue's turn to wait, by queue name

	renewC chan *renewal // keep-alives for the renewer to batch
	// claims counts the Claim commands proposed through this node (tests
	// read it: an empty claim writes nothing else one can see).
	claims atomic.Int64
	// dropRenewals makes every keep-alive fail with ErrTimeout. Tests only.
	dropRenewals atomic.Bool

	goneMu sync.Mutex
	gone   map[LeaseID][]chan struct{} // guarded by goneMu; closed when the lease is removed here
}

// Open starts a member from cfg and returns at once, without waiting for a
// leader: use Ready for that (every other call waits for it anyway). It
// clones cfg, fills defaults and validates it (errors wrap
// ErrInvalidConfig and name the rule; nothing is created then), creates
// DataDir (0700) if missing, starts the transport and the raft peer.
//
// Open takes ownership of cfg.Transport, if set: Close closes it, and so
// does Open if it fails.
//
// ctx bounds start-up only, not the node's life. With no InitialCluster
// (or one naming only cfg.Name) the node is a one-node cluster and leads
// at once. Close the node when done.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	n, err := open(ctx, cfg)
	if err != nil {
		if cfg.Transport != nil {
			cfg.Transport.Close() // owned from Open on; Close is idempotent
		}
		return nil, fmt.Errorf("concord.Open: %w", err)
	}
	return n, nil
}

func open(ctx context.Context, cfg Config) (*Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := cfg.clone()
	c.setDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if err := c.advertisePeerDefault(); err != nil {
		return nil, err
	}
	// A nil Logger stays nil for raftnode and the transport: they skip
	// formatting altogether then.
	var log *slog.Logger
	if c.Logger != nil {
		log = c.Logger.With(logKeyMember, c.Name)
	}
	raftDir := ""
	// In memory: a new member each time, or, static, the same member with
	// new data.
	rec := &memberRecord{ID: newMemberID(&c), ClusterID: clusterID(c.InitialCluster), Incarnation: randomID()}
	if c.DataDir != "" {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return nil, err
		}
		var err error
		if rec, err = claimDataDir(&c); err != nil {
			return nil, err
		}
		raftDir = filepath.Join(c.DataDir, "db")
	}
	id := rec.ID
	tr, mem, err := newTransport(&c, id, rec, log)
	if err != nil {
		return nil, err
	}
	if c.DataDir != "" && c.Transport == nil && c.PeerAddr != "" {
		if err := checkPeerAddr(c.DataDir, rec, tr.Addr()); err != nil {
			tr.Close()
			return nil, err
		}
	}
	peers, names := initialPeers(&c, id, tr.Addr())
	if !c.static() {
		peers = gossipPeers(rec)
	}
	// The state machine reports lease changes to the node once it exists;
	// the lessor's mirror is loaded after that, so it misses none. The
	// watch hub calls History and Revision only for watches, made once
	// open has returned the node.
	var self atomic.Pointer[Node]
	hub := watchhub.New(watchhub.Config[*Event]{
		History: func(from int64, key, end []byte, prevKV bool, fn func(*command.Event) error) (int64, int64, error) {
			return self.Load().history(from, key, end, prevKV, fn)
		},
		Revision: func() int64 { return self.Load().fsm.Revision() },
		Convert:  toEvent,
	})
	f := fsm.New(fsm.Config{
		OnCommit: hub.OnCommit,
		OnLeases: func(lc fsm.LeaseCommit) {
			if n := self.Load(); n != nil {
				n.onLeases(lc)
			}
		},
	})
	ls := lessor.New(lessor.Config{ElectionTimeout: c.electionTimeout(), Logger: log})
	batch := 0 // raftnode's default
	if c.DataDir == "" {
		batch = memMaxProposalBatch
	}
	rn, err := raftnode.Start(raftnode.Config{
		ID:                     id,
		Incarnation:            rec.Incarnation,
		DataDir:                raftDir,
		Peers:                  peers,
		Transport:              tr,
		Applier:                f,
		LeaderService:          ls,
		QuorumService:          ls,
		Logger:                 log,
		TickInterval:           c.TickInterval,
		ElectionTicks:          c.ElectionTicks,
		HeartbeatTicks:         c.HeartbeatTicks,
		SnapshotEntries:        c.SnapshotEntries,
		SnapshotCatchUpEntries: c.SnapshotCatchUpEntries,
		MaxProposalBatch:       batch,
	})
	if err != nil {
		hub.Close()
		tr.Close()
		if mem != nil {
			mem.Close()
		}
		return nil, err
	}
	if err := f.Load(rn.DB()); err != nil {
		hub.Close()
		err = errors.Join(err, rn.Stop())
		if mem != nil {
			mem.Close()
		}
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		cfg:         c,
		id:          id,
		clusterID:   rec.ClusterID,
		incarnation: rec.Incarnation,
		provisional: c.DataDir != "" && rec.ClusterIDProvisional,
		tr:          tr,
		dbSize:      newDBSize(raftDir),
		rn:          rn,
		fsm:         f,
		hub:         hub,
		ls:          ls,
		mem:         mem,
		log:         log,
		names:       names,
		addrs:       map[uint64]string{},
		readyC:      make(chan struct{}),
		closingC:    make(chan struct{}),
		seqSeed:     maphash.MakeSeed(),
		renewC:      make(chan *renewal, 1024),
		gone:        map[LeaseID][]chan struct{}{},
	}
	for _, p := range peers {
		n.addrs[p.ID] = p.Addr
	}
	if c.gossip() {
		if err := n.startGossip(rec, tr.Addr(), log); err != nil {
			hub.Close()
			err = errors.Join(err, rn.Stop())
			if mem != nil {
				mem.Close()
			}
			return nil, err
		}
	}
	for i := range n.seqLocks {
		n.seqLocks[i] = make(chan struct{}, 1)
	}
	self.Store(n)
	if err := ls.Load(rn.DB()); err != nil {
		hub.Close()
		if n.mgr != nil {
			err = errors.Join(err, n.mgr.Close())
		}
		err = errors.Join(err, rn.Stop())
		if mem != nil {
			mem.Close()
		}
		return nil, err
	}
	ls.Start(rn)
	bg, cancel := context.WithCancel(context.Background())
	n.cancelBg = cancel
	n.wg.Go(func() { n.awaitReady(bg) })
	n.wg.Go(func() {
		// A node that stops on its own (removed, a storage error) ends
		// its watches, with the reason (see watchResponse).
		select {
		case <-rn.Done():
			hub.Close()
			if errors.Is(rn.Err(), raftnode.ErrRemoved) && c.DataDir != "" && !n.leaving.Load() {
				// For good: the cluster may add the old id back (as a
				// learner, in the batch that removed it), and a later
				// Open must not take that for a welcome.
				if err := markRemoved(c.DataDir); err != nil {
					n.log.Warn("concord: recording the removal in the member file", "err", err)
				}
			}
		case <-bg.Done():
		}
	})
	n.wg.Go(func() { n.renewer(bg) })
	return n, nil
}

// newTransport returns c.Transport if set, else the TCP transport on
// c.PeerAddr, or, without one, an in-memory transport of a network of its
// own: a lone node that no peer can reach needs no port.
func newTransport(c *Config, id uint64, rec *memberRecord, log *slog.Logger) (transport.Transport, *transport.Network, error) {
	if c.Transport != nil {
		return c.Transport, nil, nil
	}
	if c.PeerAddr == "" {
		mem := transport.NewNetwork(0)
		return mem.Transport(id), mem, nil
	}
	tr, err := transport.NewTCP(transport.TCPConfig{
		ID:            id,
		ClusterID:     rec.ClusterID,
		Incarnation:   rec.Incarnation,
		ListenAddr:    c.PeerAddr,
		AdvertiseAddr: c.AdvertisePeerAddr,
		TLS:           c.PeerTLS,
		Logger:        log,
	})
	if err != nil {
		return nil, nil, err
	}
	return tr, nil, nil
}

// initialPeers returns the raft peers to bootstrap with (this one alone
// without InitialCluster) and the static members' names by id.
func initialPeers(c *Config, id uint64, self string) ([]raftnode.Peer, map[uint64]string) {
	names := map[uint64]string{id: c.Name}
	if len(c.InitialCluster) == 0 {
		return []raftnode.Peer{{ID: id, Addr: self}}, names
	}
	var peers []raftnode.Peer
	for name, addr := range c.InitialCluster {
		peers = append(peers, raftnode.Peer{ID: MemberID(name), Addr: addr})
		names[MemberID(name)] = name
	}
	slices.SortFunc(peers, func(a, b raftnode.Peer) int { return cmp.Compare(a.ID, b.ID) })
	return peers, names
}

// awaitReady makes the node ready after its first ReadIndex round: a
// leader is known and everything committed before is applied here.
func (n *Node) awaitReady(ctx context.Context) {
	if err := n.rn.ReadIndex(ctx); err != nil {
		return // closed or stopped: waiters see it
	}
	if n.provisional {
		// In the cluster: the id it derived from InitialCluster is right.
		n.memberMu.Lock()
		err := fixClusterID(n.cfg.DataDir, n.clusterID)
		n.memberMu.Unlock()
		if err != nil {
			n.log.Warn("concord: record the cluster id", "err", err)
		}
	}
	n.ready.Store(true)
	close(n.readyC)
	n.log.Info("concord: ready", logKeyLeader, n.rn.Leader(), logKeyRevision, n.fsm.Revision())
}

// Ready blocks until the node is in a cluster with a leader and has
// applied everything committed before it learned of it, or until ctx
// ends. Every other call made before the node is ready waits for it the
// same way, within its own ctx. A deadline gives an error that is both
// ErrTimeout and context.DeadlineExceeded.
func (n *Node) Ready(ctx context.Context) error {
	if err := n.alive(); err != nil {
		return fmt.Errorf("concord.Ready: %w", err)
	}
	if err := n.waitReady(ctx); err != nil {
		return fmt.Errorf("concord.Ready: %w", err)
	}
	return nil
}

func (n *Node) waitReady(ctx context.Context) error {
	if n.ready.Load() {
		return nil
	}
	select {
	case <-n.readyC:
		return nil
	case <-ctx.Done():
		return n.explainWait(ctxErr(ctx.Err()))
	case <-n.closingC:
		return ErrClosed
	case <-n.rn.Done():
		return n.stoppedErr()
	}
}

// refusedWindow is how long a peer connection the transport refused
// explains a wait for the cluster that ran out.
const refusedWindow = 10 * time.Second

// explainWait adds to err, a wait for the cluster that ran out, the last
// peer connection the transport refused lately (another cluster or
// another peer): members started with different InitialCluster maps
// refuse each other and never form a cluster.
func (n *Node) explainWait(err error) error {
	r, ok := n.tr.(interface{ Refused(time.Duration) error })
	if !ok {
		return err
	}
	why := r.Refused(refusedWindow)
	switch {
	case why == nil:
		return err
	case errors.Is(why, transport.ErrWrongCluster):
		return fmt.Errorf("%w (meanwhile %w; every member must start with the same InitialCluster)", err, why)
	}
	return fmt.Errorf("%w (meanwhile %w)", err, why)
}

// alive returns ErrClosed once Close was called.
func (n *Node) alive() error {
	if n.closed.Load() {
		return ErrClosed
	}
	return nil
}

// stoppedErr is what calls get once the raft peer has stopped.
func (n *Node) stoppedErr() error {
	if n.closed.Load() || (n.leaving.Load() && errors.Is(n.rn.Err(), raftnode.ErrRemoved)) {
		return ErrClosed
	}
	if err := n.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrStopped, err)
	}
	return ErrStopped
}

// Err returns why the node stopped on its own (a fatal storage error; its
// removal from the cluster: ErrRemoved; raft halting on a log it cannot
// reconcile with a message: raftnode.ErrHalted), or nil while it runs and
// after Close. Calls on a node that stopped on its own return ErrStopped
// wrapping it.
func (n *Node) Err() error {
	err := n.rn.Err()
	if errors.Is(err, raftnode.ErrRemoved) {
		return ErrRemoved
	}
	return err
}

// Close stops the node: calls in flight and later calls return ErrClosed.
// Every acknowledged write is already durable; the node stays a member of
// its cluster, and opening the same DataDir again rejoins it. Close is
// idempotent: later calls return what the first returned.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		close(n.closingC)
		n.cancelBg()
		n.hub.Close() // ends watches
		n.ls.Stop()
		var mgrErr error
		if n.mgr != nil {
			mgrErr = n.mgr.Close() // no-op after Leave
		}
		n.lifeMu.Lock()
		err := n.rn.Stop()
		n.lifeMu.Unlock()
		n.wg.Wait()
		if n.mem != nil {
			n.mem.Close()
		}
		if err = errors.Join(mgrErr, err); err != nil {
			n.closeErr = fmt.Errorf("concord.Close: %w", err)
		}
	})
	return n.closeErr
}

// Status describes a node as it last saw itself.
type Status struct {
	// ID is the node's raft id; Name its member name.
	ID   uint64
	Name string
	// Term is the raft term; CommitIndex the highest log index known
	// committed; AppliedIndex the highest applied here.
	Term, CommitIndex, AppliedIndex uint64
	// Revision and CompactRevision are the store's, as applied here.
	Revision, CompactRevision int64
	// Leader is the leader's raft id, 0 if none is known.
	Leader uint64
	// DBSize is the disk space the node's database files take, in bytes,
	// as du counts it (measured at most once a second; 0 in memory).
	DBSize int64
	// ClusterID is the id of the static cluster the node was bootstrapped
	// in, derived from InitialCluster (names and addresses) and fixed once
	// the member is first ready; the TCP transport concord builds on
	// PeerAddr refuses peers that name another cluster (a Config.Transport
	// checks only the transport.TCPConfig.ClusterID it was built with). 0
	// without InitialCluster (a node alone, or one that gossips its way
	// in) and for a data dir made before concord had cluster ids.
	ClusterID uint64
	// Incarnation names the data this node runs on: a random id made
	// with its DataDir (new at every Open in memory). See
	// Member.Incarnation.
	Incarnation uint64
}

// Status returns the node's state as of its last raft Ready. It never
// blocks and works after Close (returning the last state).
func (n *Node) Status() Status {
	st := n.rn.Status()
	return Status{
		ID:              n.id,
		Name:            n.cfg.Name,
		Term:            st.Term,
		CommitIndex:     st.Commit,
		AppliedIndex:    n.rn.AppliedIndex(),
		Revision:        n.fsm.Revision(),
		CompactRevision: n.fsm.CompactRevision(),
		Leader:          st.Leader,
		DBSize:          n.dbSize.get(),
		ClusterID:       n.clusterID,
		Incarnation:     n.incarnation,
	}
}
