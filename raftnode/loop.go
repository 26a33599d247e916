package raftnode

import (
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/internal/schema"
)

// loop owns the raft.RawNode. Only its run goroutine touches rn and the
// fields below; everything else reaches it through the Node's channels.
type loop struct {
	n  *Node
	rn *raft.RawNode
	st *storage
	sy *syncer // nil in memory

	unsynced uint64 // appends written that must be synced (entries, a term or vote)

	tick    uint64
	lone    bool // a lone voter that has not led yet: campaign at once
	lead    uint64
	state   raft.StateType
	removed bool

	pending      map[uint64]*proposal // by seq: proposed, result not yet delivered
	toSend       []*proposal          // to (re)propose once a leader is known
	calls        map[uint64]*call     // by seq: CallLeader calls not yet answered
	qcalls       map[uint64]*qcall    // by seq: CallQuorum calls not yet settled
	parked       []parkedCall         // peers' calls waiting for this leader's apply
	callsDue     bool                 // some calls are to be sent
	reads        readState
	dedup        dedupTable
	spools       map[uint64]string      // snapshot index -> spooled body
	confIdx      uint64                 // index of the newest applied conf change
	snapIdx      uint64                 // newest compaction point
	changedC     chan struct{}          // closed and replaced on leader or term change
	transferring bool                   // a leadership transfer this leader started may be pending
	members      map[uint64]memberState // member records staged by applyMember, not yet published
}

// retryTicks is how long a proposal or read round may go unanswered before
// it is sent again, in election timeouts.
const retryElections = 2

func newLoop(n *Node) (*loop, error) {
	l := &loop{
		n:        n,
		st:       n.st,
		pending:  map[uint64]*proposal{},
		calls:    map[uint64]*call{},
		qcalls:   map[uint64]*qcall{},
		spools:   map[uint64]string{},
		changedC: make(chan struct{}),
	}
	ch := l.changedC // a copy: see notifyChanged
	n.changed.Store(&ch)
	applied, err := loadApplied(n.db)
	if err != nil {
		return nil, err
	}
	n.applied.Store(applied)
	if err := l.dedup.load(n.db); err != nil {
		return nil, err
	}
	// Applied entries were committed, but a hard state whose commit index
	// alone moved is not written (store): raise the commit index to the
	// applied one, so that raft does not hand those entries again. Their
	// conf changes are in the conf state already; applied twice, a
	// LeaveJoint would find no joint config and halt the peer.
	l.st.raiseCommit(applied)
	hs, cs, _ := l.st.InitialState()
	rcfg := &raft.Config{
		ID:                        n.cfg.ID,
		ElectionTick:              n.cfg.ElectionTicks,
		HeartbeatTick:             n.cfg.HeartbeatTicks,
		Storage:                   l.st,
		Applied:                   min(applied, hs.GetCommit()),
		MaxSizePerMsg:             n.cfg.MaxSizePerMsg,
		MaxCommittedSizePerReady:  4 << 20,
		MaxUncommittedEntriesSize: 1 << 30,
		MaxInflightMsgs:           n.cfg.MaxInflightMsgs,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		StepDownOnRemoval:         true,
		AsyncStorageWrites:        true,
		Logger:                    newSlogAdapter(n.cfg.Logger, n.cfg.ID, "raft"),
	}
	rn, err := raft.NewRawNode(rcfg)
	if err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	l.rn = rn
	l.snapIdx = l.st.snap.GetIndex()
	l.confIdx = applied
	fresh := raft.IsEmptyHardState(hs) && l.st.last == 0
	if fresh && len(n.cfg.Peers) > 0 {
		peers := make([]raft.Peer, len(n.cfg.Peers))
		for i, p := range n.cfg.Peers {
			peers[i] = raft.Peer{ID: p.ID, Context: []byte(p.Addr)}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return nil, fmt.Errorf("raftnode: bootstrap: %w", err)
		}
		cs = &pb.ConfState{}
		for _, p := range n.cfg.Peers {
			cs.Voters = append(cs.Voters, p.ID)
		}
	}
	// A lone voter needs no election timeout: it is the whole quorum. raft
	// refuses to campaign while conf changes wait to be applied, so run
	// tries again after each Ready until it leads.
	l.lone = len(cs.GetVoters()) == 1 && cs.GetVoters()[0] == n.cfg.ID && len(cs.GetVotersOutgoing()) == 0
	l.campaignLone()
	return l, nil
}

func (l *loop) campaignLone() {
	if !l.lone {
		return
	}
	switch l.rn.BasicStatus().RaftState {
	case raft.StateLeader:
		l.lone = false
	case raft.StateFollower:
		_ = l.rn.Campaign() // a no-op while conf changes are unapplied
	}
}

func loadApplied(db *badger.DB) (uint64, error) {
	var applied uint64
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(schema.Applied)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			var ok bool
			if applied, ok = schema.ParseU64(v); !ok {
				return fmt.Errorf("raftnode: corrupt applied index %x", v)
			}
			return nil
		})
	})
	return applied, err
}

// run is the raft goroutine.
func (l *loop) run() {
	n := l.n
	defer close(n.doneC)
	defer l.stopReads()
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		// raft panics on state it cannot reconcile (a log that lost
		// entries, a forged message); the peer halts, not the process
		// that embeds it.
		if p, ok := r.(raftPanic); ok {
			n.fail(fmt.Errorf("%w: %s", ErrHalted, string(p)))
			return
		}
		n.fail(fmt.Errorf("%w: panic: %v\n%s", ErrHalted, r, debug.Stack()))
	}()
	// Join addresses first: those replicated in the DB, if any, are newer.
	for _, p := range n.cfg.Join {
		if p.ID != n.cfg.ID && p.ID != 0 {
			n.tr.AddPeer(p.ID, p.Addr)
		}
	}
	for id, addr := range n.Peers() {
		if id != n.cfg.ID {
			n.tr.AddPeer(id, addr)
		}
	}
	for _, p := range n.cfg.Peers {
		if p.ID != n.cfg.ID {
			n.tr.AddPeer(p.ID, p.Addr)
		}
	}
	if !n.db.Opts().InMemory {
		l.sy = newSyncer(n, l.st.savedTerm()) // Start synced what is on disk
		go l.sy.run()
		defer l.sy.stop()
	}
	var synced chan struct{}
	if l.sy != nil {
		synced = l.sy.ready
	}
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		if l.rn.HasReady() {
			if err := l.handleReady(); err != nil {
				n.fail(err)
				return
			}
			if l.removed {
				n.fail(ErrRemoved)
				return
			}
			l.campaignLone()
			continue
		}
		propC := n.propC
		if l.lead == raft.None {
			propC = nil // hold proposals until a leader is known
		}
		select {
		case <-ticker.C:
			l.onTick()
		case p := <-propC:
			l.addProposal(p)
			for i := 0; i < 4096; i++ {
				select {
				case p := <-propC:
					l.addProposal(p)
					continue
				default:
				}
				break
			}
		case m := <-n.recvC:
			l.step(m)
			for i := 0; i < 1024; i++ {
				select {
				case m := <-n.recvC:
					l.step(m)
					continue
				default:
				}
				break
			}
		case <-synced:
			msgs, err := l.sy.take()
			if err != nil {
				n.fail(fmt.Errorf("raftnode: sync: %w", err))
				return
			}
			l.stepLocal(msgs)
		case <-n.readKick:
			l.takeReads()
		case f := <-n.ctlC:
			f(l)
		case <-n.stopC:
			return
		}
		l.flushProposals()
		l.flushCalls()
		l.startRead()
	}
}

func (l *loop) step(m *pb.Message) {
	if m.GetType() == callMsgType {
		l.onPeerCall(m)
		return
	}
	if m.GetType() == pb.MsgHeartbeat {
		if last, _ := l.st.LastIndex(); m.GetCommit() > last {
			// The leader counts entries here that this peer no longer
			// has: its data was lost (see incarnation.go). raft would
			// halt on the commit index; ignore it until the leader adds
			// this peer back with a fresh progress.
			m.Commit = nil
		}
	}
	if err := l.rn.Step(m); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) && !errors.Is(err, raft.ErrStepLocalMsg) {
		l.n.log.Debug("raft step", "err", err)
	}
}

func (l *loop) onTick() {
	l.tick++
	l.rn.Tick()
	if l.transferring && l.rn.BasicStatus().LeadTransferee == raft.None {
		// The transfer ended (raft gave it up): resend the proposals it
		// dropped now, not after the retry timeout.
		l.transferring = false
		l.resendProposals()
	}
	retry := uint64(retryElections * l.n.cfg.ElectionTicks)
	for seq, p := range l.pending {
		switch {
		case p.canceled.Load():
			delete(l.pending, seq)
		case l.tick-p.proposedAt >= retry && !p.queued:
			p.queued = true
			l.toSend = append(l.toSend, p)
		}
	}
	l.reads.expire(l.tick, retry)
	l.tickCalls()
	l.tickQuorumCalls()
}

// onLeaderChange resends what the old leader may have dropped.
func (l *loop) onLeaderChange() {
	l.transferring = false
	l.resendProposals()
	l.reads.retryInflight()
	l.resendCalls()
}

// resendProposals queues every pending proposal to be proposed again
// (the dedup table applies each once).
func (l *loop) resendProposals() {
	for _, p := range l.pending {
		if !p.queued && !p.canceled.Load() {
			p.queued = true
			l.toSend = append(l.toSend, p)
		}
	}
}

// transfer starts a leadership transfer to peer to and reports whether
// it did. A leader that has not heard from to lately does not: raft drops
// every proposal while a transfer is pending (up to an election timeout),
// and a transfer to a peer that is down would stall all writes.
func (l *loop) transfer(to uint64) bool {
	if l.state == raft.StateLeader {
		if pr, ok := l.rn.Status().Progress[to]; ok && !pr.RecentActive {
			return false
		}
		l.transferring = true
	}
	l.rn.TransferLeader(to)
	return true
}

// notifyChanged wakes waiters on the leader or term; call it after
// publishStatus so that they see the new status.
func (l *loop) notifyChanged() {
	close(l.changedC)
	l.changedC = make(chan struct{})
	// Publish a pointer to a copy, never to l.changedC itself: readers
	// dereference it on their goroutines while the next call rewrites the
	// field (a data race).
	ch := l.changedC
	l.n.changed.Store(&ch)
}

// handleReady does one Ready's work. raft runs with AsyncStorageWrites:
// the Ready's messages to peers may go at once; what must wait for the
// disk comes inside its MsgStorageAppend, whose responses the syncer
// releases once the append is durable (syncer.go); its MsgStorageApply
// carries committed entries, all durable here already.
func (l *loop) handleReady() error {
	rd := l.rn.Ready()
	changed := false
	if ss := rd.SoftState; ss != nil {
		changed = ss.Lead != l.lead || ss.RaftState != l.state
		if ss.Lead != l.lead {
			l.onLeaderChange()
		}
		l.lead, l.state = ss.Lead, ss.RaftState
	}
	changed = changed || (rd.HardState != nil && rd.HardState.GetTerm() != l.n.Status().Term)
	confIdx := l.confIdx
	var app, apply *pb.Message
	out := rd.Messages[:0:0]
	for _, m := range rd.Messages {
		switch m.GetTo() {
		case raft.LocalAppendThread:
			app = m
		case raft.LocalApplyThread:
			apply = m
		default:
			out = append(out, m)
		}
	}
	l.send(out)
	if err := l.store(app, apply); err != nil {
		return err
	}
	if l.removed {
		return nil // it applied its own removal: it serves nothing more (run stops it)
	}
	l.serveParked()
	l.reads.indexed(rd.ReadStates, l.n.origin, l.n.applied.Load())
	l.reads.release(l.n.applied.Load())
	if err := l.maybeCompact(); err != nil {
		return fmt.Errorf("raftnode: compact: %w", err)
	}
	l.publishStatus()
	if changed || l.confIdx != confIdx {
		l.dropQuorumCalls()
		l.notifyChanged()
	}
	return nil
}

// store does a Ready's MsgStorageAppend (app) and MsgStorageApply
// (apply), either may be nil, in one badger commit, unsynced (but for the
// cases chain and apply sync: a value in the value log, a large apply):
//   - app's snapshot is installed first (synced), as the applies build on
//     it; then its entries and hard state are written, and its responses
//     go to the syncer, released once they are durable (or now, in
//     memory, or when nothing they vouch for is unsynced);
//   - apply's entries, committed and on disk here already, are applied;
//     their results are delivered and its responses stepped once the
//     commit is done. A crash before the next sync replays them from the
//     log.
//
// A hard state whose commit index alone moved is not written: raft learns
// the commit index again, and entries applied past it are skipped on
// replay. It goes with the next write that must be synced.
func (l *loop) store(app, apply *pb.Message) error {
	if snap := app.GetSnapshot(); !raft.IsEmptySnap(snap) {
		if err := l.installSnapshot(snap.GetMetadata()); err != nil {
			return fmt.Errorf("raftnode: install snapshot: %w", err)
		}
	}
	c := l.n.newChain()
	defer c.discard()
	a, err := l.apply(c, apply.GetEntries(), l.n.applied.Load())
	if err != nil {
		return fmt.Errorf("raftnode: apply: %w", err)
	}
	var hs *pb.HardState
	if app != nil && app.Term != nil {
		hs = &pb.HardState{Term: app.Term, Vote: app.Vote, Commit: app.Commit}
	}
	ents := app.GetEntries()
	if err := l.st.stage(c, ents); err != nil {
		return fmt.Errorf("raftnode: persist: %w", err)
	}
	save, mustSync := l.st.unsaved(hs)
	if len(ents) == 0 && !mustSync {
		save = nil
	}
	if save != nil {
		if err := c.setProto(schema.RaftHardState, save); err != nil {
			return fmt.Errorf("raftnode: persist: %w", err)
		}
	}
	if a.last != 0 || len(ents) > 0 || save != nil {
		commit := c.commitOnly
		if c.vlog && a.last != 0 {
			commit = c.done // an applied value in the value log is synced before it is relied on
		}
		if err := commit(); err != nil {
			return fmt.Errorf("raftnode: persist: %w", err)
		}
		l.st.markSaved(save)
		if len(ents) > 0 || mustSync {
			l.unsynced++
		}
	}
	l.st.appended(ents, hs)
	l.finishApply(a)
	l.stepLocal(apply.GetResponses())
	if len(app.GetResponses()) == 0 {
		return nil
	}
	r := syncReq{need: l.unsynced, term: l.st.savedTerm(), fid: l.n.w.target(), vlog: c.vlog}
	for _, m := range app.GetResponses() {
		if m.GetTo() == l.n.cfg.ID {
			r.local = append(r.local, m)
		} else {
			r.remote = append(r.remote, m)
		}
	}
	if l.sy == nil || l.sy.add(r) { // in memory, or nothing to sync
		l.send(r.remote)
		l.stepLocal(r.local)
	}
	return nil
}

// stepLocal steps raft's responses from its local storage threads.
func (l *loop) stepLocal(msgs []*pb.Message) {
	for _, m := range msgs {
		if err := l.rn.Step(m); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
			l.n.log.Debug("raft step local", "type", m.GetType().String(), "err", err)
		}
	}
}

func (l *loop) send(msgs []*pb.Message) {
	if len(msgs) == 0 {
		return
	}
	out := msgs[:0:0]
	for _, m := range msgs {
		if m.GetType() == pb.MsgSnap {
			l.sendSnapshot(m)
			continue
		}
		out = append(out, m)
	}
	if len(out) > 0 {
		l.n.tr.Send(out)
	}
}

func (l *loop) publishStatus() {
	bs := l.rn.BasicStatus()
	cs := l.st.confState()
	s := &Status{
		// After a restart the applied index may be past the commit index
		// raft read from disk (a commit index alone is not written): those
		// entries are committed all the same.
		ID: bs.ID, Term: bs.HardState.GetTerm(), Vote: bs.HardState.GetVote(), Commit: max(bs.HardState.GetCommit(), l.n.applied.Load()),
		Applied: l.n.applied.Load(), Leader: bs.Lead, State: bs.RaftState,
		Voters: slices.Clone(cs.GetVoters()), Learners: slices.Clone(cs.GetLearners()),
		LeadTransferee: bs.LeadTransferee, ConfIndex: l.confIdx, Joint: len(cs.GetVotersOutgoing()) > 0,
	}
	l.n.status.Store(s)
}

// maybeCompact moves the log's start up once enough entries were applied,
// keeping SnapshotCatchUpEntries for slow followers. The compaction point
// is never before the newest conf change, so the current conf state is the
// conf state at that point.
func (l *loop) maybeCompact() error {
	applied := l.n.applied.Load()
	cfg := l.n.cfg
	if applied < l.snapIdx+cfg.SnapshotEntries {
		return nil
	}
	point := max(applied-cfg.SnapshotCatchUpEntries, l.confIdx)
	if point <= l.snapIdx || point > applied {
		return nil
	}
	term, err := l.st.Term(point)
	if err != nil {
		return err
	}
	meta := &pb.SnapshotMetadata{Index: new(point), Term: new(term), ConfState: l.st.confState()}
	c := l.n.newChain()
	defer c.discard()
	if err := l.st.compact(c, meta); err != nil {
		return err
	}
	l.snapIdx = point
	return nil
}
