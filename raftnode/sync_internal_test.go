package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	pb "go.etcd.io/raft/v3/raftpb"
	"golang.org/x/sync/errgroup"

	"github.com/concordkv/concord/internal/schema"
	"github.com/concordkv/concord/transport"
)

// These tests prove that raftnode fsyncs the raft state it wrote to badger
// before anything that depends on it leaves the peer: an acknowledged
// proposal, an entry applied, an append response or a granted vote. They
// wrap each node's sync function (through Config.testHook) so that it
// records what badger held when a sync began (badger runs without
// SyncWrites: a sync makes every commit before it durable), and its
// commit function, to check that a memtable badger rotated past while it
// held unsynced commits is synced before the next commit or sync (see
// writer.go).
// TestSyncCallsReachTheDisk checks the syscalls themselves.

// syncProbe watches one peer's syncs. It survives the peer's restarts.
type syncProbe struct {
	mu     sync.Mutex
	calls  int           // successful syncs
	synced uint64        // newest log index durable: in badger when the last successful sync began
	hs     *pb.HardState // the hard state durable likewise
	failAt int           // if > 0, the failAt-th sync and all later ones fail
	failed bool

	commits   int // commits
	deferred  int // commits made while an earlier one was unsynced
	rotations int // memtable rotations seen at a commit
	owed      int // memtable rotated past with unsynced commits, not synced yet; -1: none
	oldSyncs  int // such memtables synced

	bad     []string // ordering violations seen
	appResp int      // MsgAppResp checked
	voteRsp int      // granted MsgVoteResp checked
}

var errSyncInjected = errors.New("injected sync failure")

// hook is a Config.testHook: it wraps the node's commit and sync. The raft
// state the node starts from counts as durable: it was read back from
// disk, after a clean Stop (badger's Close syncs) or a fresh start.
func (p *syncProbe) hook(n *Node) {
	last, hs, err := syncCandidate(n.db)
	if err != nil {
		panic(err)
	}
	p.mu.Lock()
	p.synced, p.hs, p.owed = last, hs, -1
	p.mu.Unlock()
	innerOld := n.syncOld
	n.syncOld = func(fid int) error {
		if err := innerOld(fid); err != nil {
			return err
		}
		p.mu.Lock()
		if fid == p.owed {
			p.owed = -1
			p.oldSyncs++
		}
		p.mu.Unlock()
		return nil
	}
	innerSync := n.sync
	n.sync = func(fid int, vlog bool) error {
		p.checkOwed("sync", fid)
		p.mu.Lock()
		fail := p.failAt > 0 && p.calls+1 >= p.failAt
		p.failed = p.failed || fail
		p.mu.Unlock()
		if fail {
			return errSyncInjected // as if the sync failed: nothing since the last one is durable
		}
		last, hs, err := syncCandidate(n.db)
		if err != nil {
			return err
		}
		if err := innerSync(fid, vlog); err != nil {
			return err
		}
		p.mu.Lock()
		p.calls++
		p.synced, p.hs = last, hs
		p.mu.Unlock()
		return nil
	}
	innerCommit := n.commit
	n.commit = func(txn *badger.Txn) error {
		p.checkOwed("commit", -1)
		unsynced := n.w != nil && n.w.pending
		before, err := newestMemFile(n.db.Opts().Dir)
		if err != nil {
			return err
		}
		if err := innerCommit(txn); err != nil {
			return err
		}
		after, err := newestMemFile(n.db.Opts().Dir)
		if err != nil {
			return err
		}
		p.mu.Lock()
		p.commits++
		if unsynced {
			p.deferred++
		}
		if after != before {
			p.rotations++
		}
		if unsynced && after != before {
			p.owed = before
		}
		p.mu.Unlock()
		return nil
	}
}

// syncCandidate returns the last raft log index (the snapshot's, if the
// log holds nothing after it) and the hard state in db.
func syncCandidate(db *badger.DB) (uint64, *pb.HardState, error) {
	var last uint64
	hs := &pb.HardState{}
	err := db.View(func(txn *badger.Txn) error {
		if err := getProto(txn, schema.RaftHardState, hs); err != nil {
			return err
		}
		snap := &pb.SnapshotMetadata{}
		if err := getProto(txn, schema.RaftSnapshot, snap); err != nil {
			return err
		}
		last = snap.GetIndex()
		opts := badger.DefaultIteratorOptions
		opts.Reverse, opts.PrefetchValues = true, false
		it := txn.NewIterator(opts)
		defer it.Close()
		it.Seek(schema.EntryKey(^uint64(0)))
		if it.ValidForPrefix(schema.RaftEntry) {
			last = max(last, schema.EntryIndex(it.Item().Key()))
		}
		return nil
	})
	return last, hs, err
}

// checkOwed reports a commit, or a sync of memtable fid (-1: badger's
// Sync, the active one), made while a memtable badger rotated past still
// holds unsynced commits. A sync of that memtable or an older one (the
// syncer's, for appends made before the rotation) is in order.
func (p *syncProbe) checkOwed(what string, fid int) {
	p.mu.Lock()
	owed := p.owed
	p.mu.Unlock()
	if owed >= 0 && (what == "commit" || fid < 0 || fid > owed) {
		p.violation("a %s came before memtable %d, rotated past with unsynced commits, was synced", what, owed)
	}
}

func (p *syncProbe) state() (calls int, synced uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls, p.synced
}

func (p *syncProbe) violation(format string, a ...any) {
	p.mu.Lock()
	if len(p.bad) < 20 {
		p.bad = append(p.bad, fmt.Sprintf(format, a...))
	}
	p.mu.Unlock()
}

// probeTransport checks every message a peer sends that raft may only send
// once the state it vouches for is durable.
type probeTransport struct {
	transport.Transport
	p *syncProbe
}

func (t *probeTransport) Send(msgs []*pb.Message) {
	t.p.mu.Lock()
	synced, hs := t.p.synced, t.p.hs
	t.p.mu.Unlock()
	for _, m := range msgs {
		switch {
		case m.GetType() == pb.MsgAppResp && !m.GetReject():
			// "I hold the log up to m.Index": it must be durable.
			t.p.mu.Lock()
			t.p.appResp++
			t.p.mu.Unlock()
			if m.GetIndex() > synced {
				t.p.violation("peer %d acked appends up to %d to %d with only %d synced", m.GetFrom(), m.GetIndex(), m.GetTo(), synced)
			}
		case m.GetType() == pb.MsgVoteResp && !m.GetReject():
			// A granted vote: the term and vote must be durable.
			t.p.mu.Lock()
			t.p.voteRsp++
			t.p.mu.Unlock()
			if hs.GetTerm() != m.GetTerm() || hs.GetVote() != m.GetTo() {
				t.p.violation("peer %d granted its term %d vote to %d with synced term %d vote %d", m.GetFrom(), m.GetTerm(), m.GetTo(), hs.GetTerm(), hs.GetVote())
			}
		}
	}
	t.Transport.Send(msgs)
}

// indexApplier returns each command's entry index as its result, and checks
// that the entry was durable on this peer when applied, or is written in the
// same transaction as its effects (so neither is durable without the other).
type indexApplier struct{ p *syncProbe }

func (a indexApplier) Apply(txn *Txn, index uint64, cmd []byte) ([]byte, error) {
	if _, synced := a.p.state(); index > synced {
		if _, err := txn.Get(schema.EntryKey(index)); err != nil {
			a.p.violation("applied entry %d with only %d synced, and not in the same transaction (%v)", index, synced, err)
		}
	}
	if err := txn.Set(append([]byte("s/sync/"), cmd...), nil); err != nil {
		return nil, err
	}
	return schema.U64(index), nil
}

// Snapshot and Restore carry the applier's keys, so that installing a
// snapshot writes (and drops a prefix, which switches badger's memtable)
// around the peer's writer.
func (indexApplier) Snapshot(txn *badger.Txn, w io.Writer) error {
	return StreamPrefix(txn, []byte("s/sync/"), w)
}
func (indexApplier) Restore(db *badger.DB, r io.Reader) error {
	return LoadPrefix(db, []byte("s/sync/"), r)
}

// syncPeers is a set of on-disk peers with probes, on an in-memory network.
type syncPeers struct {
	t      *testing.T
	dir    string
	cfg    func(*Config) // adjusts each peer's config, if not nil
	net    *transport.Network
	peers  []Peer
	probes []*syncProbe
	nodes  []*Node
	opts   func(badger.Options) badger.Options
}

func newSyncPeers(t *testing.T, count int) *syncPeers { return newSyncPeersWith(t, count, nil) }

// newSyncPeersWith starts count probed peers whose badger options opts
// adjusts (if not nil).
func newSyncPeersWith(t *testing.T, count int, opts func(badger.Options) badger.Options) *syncPeers {
	return newSyncPeersOpts(t, count, opts, nil)
}

// newSyncPeersCfg starts count probed peers whose config cfg adjusts.
func newSyncPeersCfg(t *testing.T, count int, cfg func(*Config)) *syncPeers {
	return newSyncPeersOpts(t, count, nil, cfg)
}

func newSyncPeersOpts(t *testing.T, count int, opts func(badger.Options) badger.Options, cfg func(*Config)) *syncPeers {
	s := &syncPeers{t: t, dir: t.TempDir(), net: transport.NewNetwork(1), opts: opts, cfg: cfg}
	for i := range count {
		s.peers = append(s.peers, Peer{ID: uint64(i + 1), Addr: fmt.Sprintf("mem://%d", i+1)})
		s.probes = append(s.probes, &syncProbe{})
	}
	s.nodes = make([]*Node, count)
	for i := range count {
		s.start(i)
	}
	t.Cleanup(func() {
		for i := range s.nodes {
			s.stop(i)
		}
		s.net.Close()
	})
	return s
}

func (s *syncPeers) start(i int) {
	s.t.Helper()
	p := s.probes[i]
	cfg := Config{
		ID:             uint64(i + 1),
		DataDir:        filepath.Join(s.dir, fmt.Sprintf("peer%d", i+1)),
		Peers:          s.peers,
		Transport:      &probeTransport{Transport: s.net.Transport(uint64(i + 1)), p: p},
		Applier:        indexApplier{p},
		TickInterval:   10 * time.Millisecond,
		ElectionTicks:  10,
		HeartbeatTicks: 1,
		testHook:       p.hook,
		BadgerOptions:  s.opts,
	}
	if s.cfg != nil {
		s.cfg(&cfg)
	}
	n, err := Start(cfg)
	if err != nil {
		s.t.Fatalf("start peer %d: %v", i+1, err)
	}
	s.nodes[i] = n
}

func (s *syncPeers) stop(i int) {
	if n := s.nodes[i]; n != nil {
		s.nodes[i] = nil
		if err := n.Stop(); err != nil {
			s.t.Errorf("stop peer %d: %v", i+1, err)
		}
	}
}

// propose makes count proposals from 8 goroutines, spread over the running
// peers, and checks each acknowledgement: the proposal's entry was durable
// on the proposer and on a quorum of peers when Propose returned.
func (s *syncPeers) propose(ctx context.Context, tag string, count int) {
	s.t.Helper()
	var running []int
	for i, n := range s.nodes {
		if n != nil {
			running = append(running, i)
		}
	}
	var g errgroup.Group
	for w := range 8 {
		g.Go(func() error {
			for k := w; k < count; k += 8 {
				i := running[k%len(running)]
				res, err := s.nodes[i].Propose(ctx, fmt.Appendf(nil, "%s-%d", tag, k))
				if err != nil {
					return fmt.Errorf("propose %s-%d on peer %d: %w", tag, k, i+1, err)
				}
				idx, ok := schema.ParseU64(res)
				if !ok {
					return fmt.Errorf("result %x", res)
				}
				if _, synced := s.probes[i].state(); idx > synced {
					return fmt.Errorf("peer %d acknowledged entry %d with only %d synced", i+1, idx, synced)
				}
				durable := 0
				for _, p := range s.probes {
					if _, synced := p.state(); synced >= idx {
						durable++
					}
				}
				if durable <= len(s.probes)/2 {
					return fmt.Errorf("entry %d acknowledged while durable on %d of %d peers", idx, durable, len(s.probes))
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *syncPeers) waitLeader(ctx context.Context) {
	s.t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var lead uint64
		agree := true
		for _, n := range s.nodes {
			if n != nil {
				l := n.Leader()
				agree = agree && l != 0 && (lead == 0 || l == lead)
				lead = l
			}
		}
		if agree && lead != 0 {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			s.t.Fatalf("no leader: %v", ctx.Err())
		}
	}
}

// TestSyncBeforeAck: with three on-disk peers, every acknowledged proposal
// was synced on the proposer and on a quorum, every applied entry was
// synced on its peer, and every append response and granted vote left a
// peer only after the state it vouches for was synced; also across a
// follower's restart and catch-up.
func TestSyncBeforeAck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newSyncPeers(t, 3)
	s.waitLeader(ctx)
	s.propose(ctx, "a", 300)

	// A follower misses entries, restarts and catches up: its append
	// responses for them come after they are synced.
	f := 0
	if s.nodes[0].IsLeader() {
		f = 1
	}
	s.stop(f)
	s.propose(ctx, "b", 200)
	s.start(f)
	s.waitLeader(ctx)
	s.propose(ctx, "c", 200)
	for _, n := range s.nodes {
		if err := n.ReadIndex(ctx); err != nil {
			t.Fatal(err)
		}
	}

	for i, p := range s.probes {
		p.mu.Lock()
		t.Logf("peer %d: %d syncs, synced to %d, %d append responses and %d votes checked",
			i+1, p.calls, p.synced, p.appResp, p.voteRsp)
		for _, b := range p.bad {
			t.Errorf("peer %d: %s", i+1, b)
		}
		if p.calls == 0 {
			t.Errorf("peer %d never synced", i+1)
		}
		p.mu.Unlock()
	}
	appResp, votes := 0, 0
	for _, p := range s.probes {
		appResp += p.appResp
		votes += p.voteRsp
	}
	if appResp == 0 || votes == 0 {
		t.Errorf("checked %d append responses and %d granted votes: want some of each", appResp, votes)
	}
}

// TestSyncFailureBlocksAck: when a sync fails, nothing it should have made
// durable is acknowledged, and the peer stops with the error.
func TestSyncFailureBlocksAck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := &syncProbe{failAt: 40}
	n := startLoneProbed(t, p)
	var g errgroup.Group
	var mu sync.Mutex
	acked := 0
	for w := range 4 {
		g.Go(func() error {
			for k := 0; ; k++ {
				res, err := n.Propose(ctx, fmt.Appendf(nil, "%d-%d", w, k))
				if err != nil {
					if !errors.Is(err, ErrStopped) {
						return fmt.Errorf("propose after the failure: %w, want ErrStopped", err)
					}
					return nil
				}
				idx, _ := schema.ParseU64(res)
				if _, synced := p.state(); idx > synced {
					return fmt.Errorf("entry %d acknowledged with only %d synced", idx, synced)
				}
				mu.Lock()
				acked++
				mu.Unlock()
			}
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	<-n.Done()
	if !errors.Is(n.Err(), errSyncInjected) {
		t.Fatalf("peer stopped with %v, want the sync failure", n.Err())
	}
	calls, synced := p.state()
	t.Logf("%d proposals acknowledged over %d syncs (to index %d) before the failure", acked, calls, synced)
	if acked == 0 || !p.failed {
		t.Fatalf("acked %d, sync failed %v: the test proved nothing", acked, p.failed)
	}
	for _, b := range p.bad {
		t.Error(b)
	}
}

// TestEachAckAfterItsSync: badger does not sync by default (its commits
// reach the OS, not the disk), and raftnode opens it so; it syncs itself,
// and acknowledges every proposal only after a sync that covers its entry.
func TestEachAckAfterItsSync(t *testing.T) {
	if badger.DefaultOptions(t.TempDir()).SyncWrites {
		t.Fatal("badger now syncs by default: revisit db.go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := &syncProbe{}
	n := startLoneProbed(t, p)
	if opts := n.DB().Opts(); opts.InMemory {
		t.Fatal("an on-disk peer's DB is in memory")
	}
	for k := range 20 {
		before, _ := p.state()
		res, err := n.Propose(ctx, fmt.Appendf(nil, "%d", k))
		if err != nil {
			t.Fatal(err)
		}
		after, synced := p.state()
		idx, _ := schema.ParseU64(res)
		if after == before || synced < idx {
			t.Fatalf("proposal %d (entry %d) acknowledged after %d new syncs, synced to %d", k, idx, after-before, synced)
		}
	}
}

// TestRotatedMemtableSynced: peers leave the apply of entries they
// already hold unsynced until the next sync, and when badger rotates past
// a memtable that holds such applies, the writer syncs it before its next
// commit or sync: with 256 KiB memtables, thousands of proposals rotate
// them again and again. The probes also check every acknowledgement,
// append response and vote against what was synced.
func TestRotatedMemtableSynced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := newSyncPeersWith(t, 3, func(o badger.Options) badger.Options {
		return o.WithMemTableSize(256 << 10).WithValueThreshold(16 << 10)
	})
	s.waitLeader(ctx)
	s.propose(ctx, strings.Repeat("m", 1000), 3000) // about 2 KiB per proposal and peer
	var deferred, rotations, oldSyncs int
	for i, p := range s.probes {
		p.mu.Lock()
		t.Logf("peer %d: %d commits, %d of them after an unsynced one, %d rotations, %d of them past unsynced commits, %d syncs", i+1, p.commits, p.deferred, p.rotations, p.oldSyncs, p.calls)
		for _, b := range p.bad {
			t.Errorf("peer %d: %s", i+1, b)
		}
		deferred += p.deferred
		rotations += p.rotations
		oldSyncs += p.oldSyncs
		p.mu.Unlock()
	}
	if deferred == 0 || rotations < 3 || oldSyncs == 0 {
		t.Fatalf("%d commits after an unsynced one, %d rotations, %d past unsynced commits: the test proved nothing", deferred, rotations, oldSyncs)
	}
}

// TestRotatedMemtableSyncedAfterRestore: a follower that missed more than
// the log keeps installs a snapshot (its restore writes around the writer
// and switches memtables), then goes on applying: the writer must not take
// the restore's switch for one of its own commits.
func TestRotatedMemtableSyncedAfterRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s := newSyncPeersWith(t, 3, func(o badger.Options) badger.Options {
		return o.WithMemTableSize(256 << 10).WithValueThreshold(16 << 10)
	})
	s.cfg = func(c *Config) { c.SnapshotEntries, c.SnapshotCatchUpEntries = 200, 50 }
	for i := range s.nodes { // restart with the small compaction thresholds
		s.stop(i)
		s.start(i)
	}
	s.waitLeader(ctx)
	big := strings.Repeat("r", 1000)
	s.propose(ctx, big+"a", 300)
	f := 0
	if s.nodes[0].IsLeader() {
		f = 1
	}
	s.stop(f)
	s.propose(ctx, big+"b", 1500)
	before := s.probes[f].rotationsSeen()
	s.start(f)
	s.waitLeader(ctx)
	s.propose(ctx, big+"c", 2000)
	if snap := s.nodes[f].st.snap.GetIndex(); snap == 0 {
		t.Fatalf("peer %d caught up without a snapshot", f+1)
	}
	for i, p := range s.probes {
		p.mu.Lock()
		t.Logf("peer %d: %d commits, %d after an unsynced one, %d rotations, %d of them past unsynced commits", i+1, p.commits, p.deferred, p.rotations, p.oldSyncs)
		for _, b := range p.bad {
			t.Errorf("peer %d: %s", i+1, b)
		}
		p.mu.Unlock()
	}
	if after := s.probes[f].rotationsSeen(); after-before < 3 {
		t.Fatalf("peer %d saw %d memtable switches after its restart: the test proved nothing", f+1, after-before)
	}
}

func (p *syncProbe) rotationsSeen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rotations
}

// TestLoneVoterOneCommitPerProposal: a lone voter applies an entry in the
// commit that makes it durable and acknowledges it after that one commit;
// the commit index moving on its own is not written. Sequential
// proposals therefore cost one synced commit each (two before: the
// append, then the apply), and each acknowledgement still comes after its
// entry is durable (the probe checks).
func TestLoneVoterOneCommitPerProposal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := &syncProbe{}
	n := startLoneProbed(t, p)
	if _, err := n.Propose(ctx, []byte("first")); err != nil {
		t.Fatal(err)
	}
	before, _ := p.state()
	const count = 50
	for i := range count {
		res, err := n.Propose(ctx, fmt.Appendf(nil, "p%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if idx, _ := schema.ParseU64(res); idx > syncedIndex(p) {
			t.Fatalf("proposal %d acknowledged at index %d with only %d durable", i, idx, syncedIndex(p))
		}
	}
	after, _ := p.state()
	if commits := after - before; commits > count+2 {
		t.Fatalf("%d sequential proposals took %d commits, want about one each", count, commits)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.bad) > 0 {
		t.Fatalf("violations: %v", p.bad)
	}
}

func syncedIndex(p *syncProbe) uint64 {
	_, synced := p.state()
	return synced
}

// startLoneProbed starts a lone on-disk peer watched by p, stopped when
// the test ends.
func startLoneProbed(t *testing.T, p *syncProbe) *Node {
	t.Helper()
	net := transport.NewNetwork(1)
	n, err := Start(Config{
		ID: 1, DataDir: t.TempDir(), Peers: []Peer{{ID: 1, Addr: "mem://1"}},
		Transport: &probeTransport{Transport: net.Transport(1), p: p}, Applier: indexApplier{p},
		testHook: p.hook,
	})
	if err != nil {
		net.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Stop()
		net.Close()
	})
	return n
}
