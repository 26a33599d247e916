package raftnode

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/internal/schema"
	"github.com/concordkv/concord/internal/wire"
)

// The incarnation guard keeps a member that lost its data from counting
// as a voter. A member whose data dir was wiped (or kept in memory) comes
// back under its old raft id with an empty log and no vote: as a voter it
// could grant a second vote in a term it already voted in, or help elect
// a peer that lacks entries it had acknowledged, and a committed write
// would be lost. raft cannot tell; etcd refuses such a member at start
// ("member has already been bootstrapped") and leaves the rest to an
// operator.
//
// Each data dir has an incarnation (Config.Incarnation), sent in every
// transport hello. A member records its incarnation in the replicated
// state once it has a leader (schema.MemberKey). A peer refuses the
// connections of a member whose hello names another incarnation than the
// one it knows the member by (see accepted), so that its votes and
// acknowledgements never arrive. The leader then removes it and adds it
// back as a learner, with a fresh raft progress (a voter is marked to
// rejoin first). As a learner with its new incarnation accepted, it
// catches up and records that incarnation; the leader then promotes it
// back to a voter. No operator step is needed. A peer that sends a
// heartbeat's commit index past this peer's log (the leader still counts
// entries this peer lost) has that commit index ignored (loop.step), so
// the lost peer waits to be added back instead of halting.
//
// The guard needs someone to know the old incarnation: a member whose data
// is lost before its record is committed, or that comes back while only
// peers that never applied its record can reach it, is not recognised.

// ErrNewIncarnation is returned by Admit for a member that came back with
// other data than the cluster knows it by.
var ErrNewIncarnation = errors.New("raftnode: member came back with new data; it is added back as a learner first")

// memberState is a member's replicated record.
type memberState struct {
	inc    uint64 // incarnation of its data; 0 = none recorded
	rejoin bool   // demoted for new data: promote once it caught up
}

func encodeMember(m memberState) []byte {
	b := schema.U64(m.inc)
	if m.rejoin {
		return append(b, 1)
	}
	return append(b, 0)
}

func decodeMember(b []byte) (memberState, error) {
	if len(b) != 9 {
		return memberState{}, fmt.Errorf("raftnode: corrupt member record %x", b)
	}
	inc, _ := schema.ParseU64(b[:8])
	return memberState{inc: inc, rejoin: b[8] == 1}, nil
}

// loadMembers reads the member records into n.members.
func (n *Node) loadMembers() error {
	m := map[uint64]memberState{}
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.MemberPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			s, err := decodeMember(v)
			if err != nil {
				return err
			}
			m[schema.MemberKeyID(it.Item().Key())] = s
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n.members.Load() == nil {
		n.members.Store(&m)
		return nil
	}
	n.setMembers(m)
	return nil
}

// applyMember stages the record update r into c; the loop publishes the
// new records (l.members) once c is committed.
func (l *loop) applyMember(c *chain, r *wire.MemberRecord) error {
	if l.members == nil {
		l.members = maps.Clone(*l.n.members.Load())
	}
	s := l.members[r.GetId()]
	if r.GetIncarnation() != 0 {
		s.inc = r.GetIncarnation()
	}
	switch r.GetRejoin() {
	case wire.MemberRecord_SET:
		s.rejoin = true
	case wire.MemberRecord_CLEAR:
		s.rejoin = false
	}
	l.members[r.GetId()] = s
	return c.set(schema.MemberKey(r.GetId()), encodeMember(s))
}

// publishMembers makes the records staged by applyMember visible.
func (l *loop) publishMembers() {
	if l.members == nil {
		return
	}
	l.n.setMembers(l.members)
	l.members = nil
}

// setMembers publishes m as the member records. A member whose recorded
// incarnation changed is known by the record from now on.
func (n *Node) setMembers(m map[uint64]memberState) {
	old := *n.members.Load()
	n.members.Store(&m)
	n.helloMu.Lock()
	for id, s := range m {
		if s.inc != old[id].inc {
			delete(n.basis, id) // the record rules from now on
			if n.pending[id] == s.inc {
				delete(n.pending, id)
			}
		}
	}
	n.helloMu.Unlock()
}

// accepted returns the incarnation this peer accepts for member id: the
// one the leader added it back with, or the first one seen of a member
// with no record, else the recorded one; 0 if none is known. Call it
// with helloMu held.
func (n *Node) accepted(id uint64) uint64 {
	if inc, ok := n.basis[id]; ok {
		return inc
	}
	return (*n.members.Load())[id].inc
}

// Admit decides on an inbound connection from peer from whose hello names
// incarnation inc (transport.Admitter). It refuses a member that presents
// another incarnation than the accepted one (see accepted), voter or
// learner, and wakes the guard so that the leader adds it back with a
// fresh raft progress. A hello without an incarnation is admitted.
func (n *Node) Admit(from, inc uint64) error {
	if inc == 0 {
		return nil
	}
	n.helloMu.Lock()
	defer n.helloMu.Unlock()
	switch acc := n.accepted(from); acc {
	case inc:
		delete(n.pending, from)
		return nil
	case 0:
		n.basis[from] = inc
		return nil
	default:
		n.pending[from] = inc
		select {
		case n.guardKick <- struct{}{}:
		default:
		}
		return fmt.Errorf("%w: member %x presents incarnation %x, known by %x", ErrNewIncarnation, from, inc, acc)
	}
}

// guard runs the incarnation guard until the loop ends: every election
// timeout, and when Admit refused a member.
func (n *Node) guard() {
	every := n.cfg.TickInterval * time.Duration(n.cfg.ElectionTicks)
	t := time.NewTicker(every)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-n.doneC
		cancel()
	}()
	for {
		select {
		case <-n.doneC:
			return
		case <-t.C:
		case <-n.guardKick:
		}
		actx, acancel := context.WithTimeout(ctx, 4*every)
		if err := n.guardOnce(actx); err != nil {
			n.log.Debug("incarnation guard", "err", err)
		}
		acancel()
	}
}

// guardOnce takes at most one step: this peer records its incarnation;
// the leader adds back one member that came with new data, or promotes
// one such learner whose new incarnation is recorded, or clears the mark
// of one promoted.
func (n *Node) guardOnce(ctx context.Context) error {
	st := n.Status()
	if st.Leader == raft.None {
		return nil
	}
	recs := *n.members.Load()
	if inc := n.cfg.Incarnation; inc != 0 && recs[n.cfg.ID].inc != inc {
		return n.recordMember(ctx, &wire.MemberRecord{Id: n.cfg.ID, Incarnation: inc})
	}
	if st.State != raft.StateLeader || st.Joint {
		return nil
	}
	n.helloMu.Lock()
	pending := maps.Clone(n.pending)
	for id, inc := range pending {
		if n.accepted(id) == inc {
			delete(n.pending, id) // stale: accepted since
			delete(pending, id)
		}
	}
	n.helloMu.Unlock()
	member := func(id uint64) bool { return slices.Contains(st.Voters, id) || slices.Contains(st.Learners, id) }
	for id, inc := range pending {
		if !member(id) {
			n.helloMu.Lock()
			delete(n.pending, id) // gone for good, or added back with this data already
			n.helloMu.Unlock()
			continue
		}
		return n.addBack(ctx, id, inc, slices.Contains(st.Voters, id) || recs[id].rejoin)
	}
	for _, id := range st.Learners {
		rec := recs[id]
		n.helloMu.Lock()
		ours := rec.rejoin && rec.inc != 0 && n.accepted(id) == rec.inc
		n.helloMu.Unlock()
		if !ours {
			continue // not ours to promote, or its new incarnation is not recorded yet
		}
		if err := n.PromoteLearner(ctx, id); err != nil {
			return err // ErrLearnerNotReady until it caught up
		}
		n.log.Info("promoted a member that came back with new data", "member", id, "incarnation", rec.inc)
		return n.recordMember(ctx, &wire.MemberRecord{Id: id, Rejoin: wire.MemberRecord_CLEAR})
	}
	for _, id := range st.Voters {
		if _, refused := pending[id]; recs[id].rejoin && !refused {
			return n.recordMember(ctx, &wire.MemberRecord{Id: id, Rejoin: wire.MemberRecord_CLEAR})
		}
	}
	// A member marked to rejoin whose removal committed but not its
	// addition (a leader lost in between).
	for id, rec := range recs {
		if rec.rejoin && !member(id) {
			if addr := n.rejoinAddr(id); addr != "" {
				return n.AddLearner(ctx, id, addr)
			}
		}
	}
	return nil
}

// addBack removes member id, which came back with data of incarnation
// inc, and adds it back as a learner, marked to rejoin as a voter if
// voter says so. Not merely demoted: raft keeps a member's progress
// through a role change, and would count entries it no longer has.
func (n *Node) addBack(ctx context.Context, id, inc uint64, voter bool) error {
	addr := n.rejoinAddr(id)
	if addr == "" {
		return fmt.Errorf("raftnode: no address to add member %x back at", id)
	}
	if voter && !(*n.members.Load())[id].rejoin {
		if err := n.recordMember(ctx, &wire.MemberRecord{Id: id, Rejoin: wire.MemberRecord_SET}); err != nil {
			return err
		}
	}
	n.log.Info("adding back a member that came back with new data", "member", id, "incarnation", inc, "voter", voter)
	if err := n.confChange(ctx, pb.ConfChangeRemoveNode, id, rejoinRemoval); err != nil {
		return err
	}
	if err := n.AddLearner(ctx, id, addr); err != nil {
		return err
	}
	n.helloMu.Lock()
	n.basis[id] = inc
	if n.pending[id] == inc {
		delete(n.pending, id)
	}
	n.helloMu.Unlock()
	return nil
}

// rejoinAddr returns the address of member id: the replicated one, else
// the initial one.
func (n *Node) rejoinAddr(id uint64) string {
	if addr, ok := n.Peers()[id]; ok {
		return addr
	}
	for _, p := range n.cfg.Peers {
		if p.ID == id {
			return p.Addr
		}
	}
	return ""
}

// rejoinRemoval, as a removal's address, marks the removal addBack makes:
// the member keeps its replicated address and, if it is this peer, runs
// on to be added back. Any other removal is for good and clears the
// member's rejoin mark.
const rejoinRemoval = "\x00rejoin"

// memberRecords returns the member records as staged by the apply in
// progress.
func (l *loop) memberRecords() map[uint64]memberState {
	if l.members != nil {
		return l.members
	}
	return *l.n.members.Load()
}

// Incarnation returns member id's recorded incarnation (0 if none) and
// whether it is to rejoin as a voter, as applied here.
func (n *Node) Incarnation(id uint64) (inc uint64, rejoin bool) {
	s := (*n.members.Load())[id]
	return s.inc, s.rejoin
}

// recordMember replicates r and waits until it is applied here.
func (n *Node) recordMember(ctx context.Context, r *wire.MemberRecord) error {
	p := &proposal{seq: n.seq.Add(1), member: r, resC: make(chan result, 1)}
	_, err := n.propose(ctx, p)
	return err
}
