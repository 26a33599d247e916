package raftnode

import (
	"fmt"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/schema"
	"github.com/concordkv/concord/internal/wire"
)

// A transaction is committed early, between commands, once it holds about
// this much, to stay clear of badger's transaction size limit.
const (
	rotateBytes = 1 << 20
	rotateOps   = 4000
)

// commitApplied commits the chain's transaction with applied as the
// applied index and begins the next one.
func commitApplied(c *chain, applied uint64) error {
	if err := c.set(schema.Applied, schema.U64(applied)); err != nil {
		return err
	}
	return c.rotate()
}

type peerChange struct {
	id     uint64
	addr   string
	remove bool
}

// applied is what an apply hands out once its transaction commits.
type applied struct {
	last    uint64 // new applied index; 0 if unchanged
	seqs    []uint64
	results []result
	peers   []peerChange
}

// apply stages committed entries into c: commands to the Applier, conf
// changes to raft, and the new applied index. Entries at or below prev,
// the applied index (already in a restored snapshot, or replayed after a
// restart), are skipped, except that
// raft still learns their conf changes. The caller commits c, then calls
// l.finishApply with the result.
func (l *loop) apply(c *chain, ents []*pb.Entry, prev uint64) (applied, error) {
	var out applied
	if len(ents) == 0 {
		return out, nil
	}
	n := l.n
	last := ents[len(ents)-1].GetIndex()
	for _, e := range ents {
		idx := e.GetIndex()
		switch e.GetType() {
		case pb.EntryNormal:
			if idx <= prev || len(e.GetData()) == 0 {
				continue
			}
			var batch wire.ProposalBatch
			if err := proto.Unmarshal(e.GetData(), &batch); err != nil {
				return out, fmt.Errorf("entry %d: %w", idx, err)
			}
			for _, p := range batch.GetProposals() {
				id := pid{p.GetOrigin(), p.GetSeq()}
				if _, dup := l.dedup.seenBefore(id, idx); dup {
					continue
				}
				if f := p.GetFloor(); f != 0 && f+dedupWindow < idx {
					// A copy committed this late: an earlier one may have
					// been applied and left the window. Refused everywhere.
					if id.origin == n.origin {
						out.seqs = append(out.seqs, id.seq)
						out.results = append(out.results, result{err: ErrProposalExpired})
					}
					continue
				}
				if c.bytes > rotateBytes || c.ops > rotateOps {
					// Entries before idx are whole; proposals of idx
					// applied so far are in the dedup record.
					if err := l.dedup.stage(idx, c.set); err != nil {
						return out, err
					}
					if err := commitApplied(c, idx-1); err != nil {
						return out, err
					}
				}
				var res []byte
				var err error
				if m := p.GetMember(); m != nil {
					err = l.applyMember(c, m)
				} else {
					res, err = n.cfg.Applier.Apply(&Txn{txn: c.txn, c: c, term: e.GetTerm()}, idx, p.GetData())
				}
				if err != nil {
					return out, fmt.Errorf("entry %d: %w", idx, err)
				}
				l.dedup.add(idx, id)
				if id.origin == n.origin {
					out.seqs = append(out.seqs, id.seq)
					out.results = append(out.results, result{data: res})
				}
			}
			if err := l.dedup.stage(idx, c.set); err != nil {
				return out, err
			}
		case pb.EntryConfChange, pb.EntryConfChangeV2:
			pc, seq, err := l.applyConfChange(c, e, prev)
			if err != nil {
				return out, fmt.Errorf("entry %d: %w", idx, err)
			}
			out.peers = append(out.peers, pc...)
			if seq != 0 {
				out.seqs = append(out.seqs, seq)
				out.results = append(out.results, result{})
			}
		}
	}
	if last <= prev {
		return out, nil
	}
	if err := l.dedup.prune(last, 1000, c.delete); err != nil {
		return out, err
	}
	if err := c.set(schema.Applied, schema.U64(last)); err != nil {
		return out, err
	}
	out.last = last
	return out, nil
}

// finishApply publishes an apply whose transaction is committed: the
// applied index, results to proposers, peer addresses to the transport.
func (l *loop) finishApply(a applied) {
	n := l.n
	if a.last == 0 {
		return
	}
	n.applied.Store(a.last)
	l.publishMembers()
	if cn, ok := n.cfg.Applier.(CommitNotifier); ok {
		cn.Committed(a.last)
	}
	for i, seq := range a.seqs {
		l.deliver(seq, a.results[i])
	}
	for _, pc := range a.peers {
		switch {
		case pc.id == n.cfg.ID:
		case pc.remove:
			n.tr.RemovePeer(pc.id)
		case pc.addr != "":
			n.tr.AddPeer(pc.id, pc.addr)
		}
	}
}

// applyConfChange applies the conf change entry e. It returns the address
// changes for the transport and, if this peer proposed it, its sequence.
func (l *loop) applyConfChange(b *chain, e *pb.Entry, applied uint64) ([]peerChange, uint64, error) {
	var cc pb.ConfChangeI
	var id pid
	var addr string
	if e.GetType() == pb.EntryConfChange {
		var c pb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &c); err != nil {
			return nil, 0, err
		}
		cc, addr = &c, string(c.GetContext()) // bootstrap entries carry the address
	} else {
		var c pb.ConfChangeV2
		if err := proto.Unmarshal(e.GetData(), &c); err != nil {
			return nil, 0, err
		}
		var p wire.Proposal
		if err := proto.Unmarshal(c.GetContext(), &p); err != nil {
			return nil, 0, err
		}
		cc, id, addr = &c, pid{p.GetOrigin(), p.GetSeq()}, string(p.GetData())
	}
	idx := e.GetIndex()
	at, seen := l.dedup.seenBefore(id, idx)
	if id.origin != 0 && seen && at != idx {
		return nil, 0, nil // a retried copy: applied once already, everywhere
	}
	cs := l.rn.ApplyConfChange(cc)
	if idx <= applied {
		return nil, 0, nil // its effects are in the state already
	}
	l.st.setConfState(cs)
	l.confIdx = idx
	csb, err := proto.Marshal(cs)
	if err != nil {
		return nil, 0, err
	}
	if err := b.set(schema.ConfState, csb); err != nil {
		return nil, 0, err
	}
	var out []peerChange
	for _, ch := range cc.AsV2().GetChanges() {
		nid := ch.GetNodeId()
		switch ch.GetType() {
		case pb.ConfChangeAddNode, pb.ConfChangeAddLearnerNode:
			if addr != "" {
				if err := b.set(schema.PeerKey(nid), []byte(addr)); err != nil {
					return nil, 0, err
				}
			}
			out = append(out, peerChange{id: nid, addr: addr})
		case pb.ConfChangeRemoveNode:
			if addr == rejoinRemoval {
				// The first half of adding a member back (addBack): it
				// keeps its address and runs on.
				continue
			}
			if err := b.delete(schema.PeerKey(nid)); err != nil {
				return nil, 0, err
			}
			out = append(out, peerChange{id: nid, remove: true})
			if nid == l.n.cfg.ID {
				l.removed = true
			}
			if l.memberRecords()[nid].rejoin { // removed for good: not to be added back
				if err := l.applyMember(b, &wire.MemberRecord{Id: nid, Rejoin: wire.MemberRecord_CLEAR}); err != nil {
					return nil, 0, err
				}
			}
		}
	}
	var seq uint64
	if id.origin != 0 {
		l.dedup.add(idx, id)
		if err := l.dedup.stage(idx, b.set); err != nil {
			return nil, 0, err
		}
		if id.origin == l.n.origin {
			seq = id.seq
		}
	}
	return out, seq, nil
}
