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

	tick    uint64
	lone    bool // a lone voter that has not led yet: campaign at once
	lead    uint64
	state   raft.StateType
	removed bool

	pending      map[uint64]*proposal // by seq: proposed, result not yet delivered
	toSend       []*proposal          // to (re)propose once a leader is known
	calls        map[uint64]*call     // by seq: CallLeader calls not yet answered
	qcalls       map[uint64]*qcall    // by seq: CallQuorum calls not yet settled
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

// handleReady does one Ready's work in raft's required order.
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
	// The leader may send its appends while it writes them itself (raft
	// thesis 10.2.1): its own vote counts only once they are durable,
	// because entries are applied below only after this Ready is persisted.
	leader := l.state == raft.StateLeader
	if leader {
		l.send(rd.Messages)
	}
	// 1. Install a received snapshot.
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := l.installSnapshot(rd.Snapshot.GetMetadata()); err != nil {
			return fmt.Errorf("raftnode: install snapshot: %w", err)
		}
	}
	// 2. Persist Entries and HardState, and 4. apply CommittedEntries, in
	// one transaction chain with the applied index, so that one sync per
	// Ready covers both. Committed entries may be
	// among this Ready's Entries; they become durable together. A lone
	// voter also applies the entries this Ready persists (see ahead).
	var hs *pb.HardState
	if !raft.IsEmptyHardState(rd.HardState) {
		hs = rd.HardState
	}
	c := l.n.newChain()
	defer c.discard()
	if err := l.st.stage(c, rd.Entries); err != nil {
		return fmt.Errorf("raftnode: persist: %w", err)
	}
	prev := l.n.applied.Load()
	a, err := l.apply(c, rd.CommittedEntries, prev)
	if err != nil {
		return fmt.Errorf("raftnode: apply: %w", err)
	}
	ahead := l.ahead(&rd, max(prev, a.last))
	if len(ahead) > 0 {
		b, err := l.apply(c, ahead, max(prev, a.last))
		if err != nil {
			return fmt.Errorf("raftnode: apply: %w", err)
		}
		a.merge(b)
	}
	// A hard state whose commit index alone moved need not be durable
	// (raft learns the commit index again; entries applied past it are
	// skipped on replay): it is written with the next commit instead.
	save, mustSync := l.st.unsaved(hs)
	if len(rd.Entries) > 0 || mustSync || a.last != 0 {
		if save != nil {
			if err := c.setProto(schema.RaftHardState, save); err != nil {
				return fmt.Errorf("raftnode: persist: %w", err)
			}
		}
		// What this Ready's messages and results vouch for is synced now:
		// entries, a term or vote, entries applied ahead. An apply alone
		// is of entries already on disk (raft hands no other as
		// committed once the Ready that carried them is persisted): it
		// waits for the next sync, and a crash replays it from the log.
		commit := c.done
		if len(rd.Entries) == 0 && !mustSync && len(ahead) == 0 && !c.vlog {
			commit = c.commitOnly
		}
		if err := commit(); err != nil {
			return fmt.Errorf("raftnode: persist: %w", err)
		}
		l.st.markSaved(save)
	}
	l.st.appended(rd.Entries, hs)
	// 3. Send, now that what the messages promise is durable.
	if !leader {
		l.send(rd.Messages)
	}
	// Results reach proposers and reads are served only after the commit.
	l.reads.indexed(rd.ReadStates, l.n.origin, l.n.applied.Load())
	l.finishApply(a)
	l.reads.release(l.n.applied.Load())
	// 5. Advance.
	l.rn.Advance(rd)
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
		// A lone voter applies entries before raft counts them committed
		// (see ahead); they are committed all the same.
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
