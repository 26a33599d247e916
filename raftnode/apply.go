package raftnode

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
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

// applyBatch is the badger transaction one Ready's committed entries are
// applied in, together with the applied index.
type applyBatch struct {
	db         *badger.DB
	txn        *badger.Txn
	bytes, ops int
}

func (b *applyBatch) set(k, v []byte) error {
	b.bytes += len(k) + len(v)
	b.ops++
	return b.txn.Set(k, v)
}

func (b *applyBatch) delete(k []byte) error {
	b.bytes += len(k)
	b.ops++
	return b.txn.Delete(k)
}

// commit writes the batch with applied as the applied index and opens a new
// transaction.
func (b *applyBatch) commit(applied uint64) error {
	if err := b.txn.Set(schema.Applied, schema.U64(applied)); err != nil {
		return err
	}
	if err := b.txn.Commit(); err != nil {
		return err
	}
	b.txn, b.bytes, b.ops = b.db.NewTransaction(true), 0, 0
	return nil
}

type peerChange struct {
	id     uint64
	addr   string
	remove bool
}

// apply applies committed entries: commands to the Applier, conf changes to
// raft, all in one transaction with the new applied index. Entries at or
// below the applied index (already in a restored snapshot, or replayed after
// a restart) are skipped, except that raft still learns their conf changes.
func (l *loop) apply(ents []*pb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	n := l.n
	applied := n.applied.Load()
	last := ents[len(ents)-1].GetIndex()
	b := &applyBatch{db: n.db, txn: n.db.NewTransaction(true)}
	defer func() { b.txn.Discard() }()
	var results []result
	var seqs []uint64
	var peers []peerChange
	for _, e := range ents {
		idx := e.GetIndex()
		switch e.GetType() {
		case pb.EntryNormal:
			if idx <= applied || len(e.GetData()) == 0 {
				continue
			}
			var batch wire.ProposalBatch
			if err := proto.Unmarshal(e.GetData(), &batch); err != nil {
				return fmt.Errorf("entry %d: %w", idx, err)
			}
			for _, p := range batch.GetProposals() {
				id := pid{p.GetOrigin(), p.GetSeq()}
				if _, dup := l.dedup.appliedAt(id); dup {
					continue
				}
				if b.bytes > rotateBytes || b.ops > rotateOps {
					if err := b.commit(idx - 1); err != nil {
						return err
					}
				}
				res, err := n.cfg.Applier.Apply(&Txn{txn: b.txn}, idx, p.GetData())
				if err != nil {
					return fmt.Errorf("entry %d: %w", idx, err)
				}
				b.bytes += 2*len(p.GetData()) + 128
				b.ops += 4
				if err := b.set(schema.DedupKey(idx, id.origin, id.seq), nil); err != nil {
					return err
				}
				l.dedup.add(idx, id)
				if id.origin == n.origin {
					seqs = append(seqs, id.seq)
					results = append(results, result{data: res})
				}
			}
		case pb.EntryConfChange, pb.EntryConfChangeV2:
			pc, seq, err := l.applyConfChange(b, e, applied)
			if err != nil {
				return fmt.Errorf("entry %d: %w", idx, err)
			}
			peers = append(peers, pc...)
			if seq != 0 {
				seqs = append(seqs, seq)
				results = append(results, result{})
			}
		}
	}
	if last <= applied {
		return nil
	}
	if err := l.dedup.prune(last, 1000, b.delete); err != nil {
		return err
	}
	if err := b.commit(last); err != nil {
		return err
	}
	n.applied.Store(last)
	if cn, ok := n.cfg.Applier.(CommitNotifier); ok {
		cn.Committed(last)
	}
	for i, seq := range seqs {
		l.deliver(seq, results[i])
	}
	for _, pc := range peers {
		switch {
		case pc.id == n.cfg.ID:
		case pc.remove:
			n.tr.RemovePeer(pc.id)
		case pc.addr != "":
			n.tr.AddPeer(pc.id, pc.addr)
		}
	}
	return nil
}

// applyConfChange applies the conf change entry e. It returns the address
// changes for the transport and, if this peer proposed it, its sequence.
func (l *loop) applyConfChange(b *applyBatch, e *pb.Entry, applied uint64) ([]peerChange, uint64, error) {
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
	at, seen := l.dedup.appliedAt(id)
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
			if err := b.delete(schema.PeerKey(nid)); err != nil {
				return nil, 0, err
			}
			out = append(out, peerChange{id: nid, remove: true})
			if nid == l.n.cfg.ID {
				l.removed = true
			}
		}
	}
	var seq uint64
	if id.origin != 0 {
		if err := b.set(schema.DedupKey(idx, id.origin, id.seq), nil); err != nil {
			return nil, 0, err
		}
		l.dedup.add(idx, id)
		if id.origin == l.n.origin {
			seq = id.seq
		}
	}
	return out, seq, nil
}
