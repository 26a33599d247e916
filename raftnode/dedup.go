package raftnode

import (
	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/schema"
)

// dedupWindow is how many log entries a proposal id is remembered for. A
// retried proposal is committed close to its first copy (both were in flight
// together), so a window this size catches every duplicate.
var dedupWindow uint64 = 10000

type pid struct{ origin, seq uint64 }

type dedupRec struct {
	index uint64
	id    pid
}

// dedupTable remembers the ids of recently applied proposals and the index
// each was applied at. It is replicated state: the same on every peer at the
// same applied index, persisted under schema.DedupPrefix in the apply
// transaction and carried in snapshots. Loop-owned.
type dedupTable struct {
	at  map[pid]uint64
	log []dedupRec // ascending by index
}

func (d *dedupTable) load(db *badger.DB) error {
	d.at = map[pid]uint64{}
	d.log = d.log[:0]
	return db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.DedupPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if index, origin, seq, ok := schema.ParseDedupKey(it.Item().Key()); ok {
				d.add(index, pid{origin, seq})
			}
		}
		return nil
	})
}

func (d *dedupTable) add(index uint64, id pid) {
	d.at[id] = index
	d.log = append(d.log, dedupRec{index, id})
}

// appliedAt returns the index id was applied at, if it is remembered.
func (d *dedupTable) appliedAt(id pid) (uint64, bool) {
	i, ok := d.at[id]
	return i, ok
}

// seenBefore returns where id was applied if that lies within the window
// before index. Every peer decides alike: the answer does not depend on how
// far this peer has pruned (pruning follows its own batch boundaries), only
// on the replicated record of where id was applied.
func (d *dedupTable) seenBefore(id pid, index uint64) (uint64, bool) {
	at, ok := d.at[id]
	if !ok || at+dedupWindow < index {
		return 0, false
	}
	return at, true
}

// prune forgets ids applied more than dedupWindow entries before index,
// deleting their keys through del (at most limit of them per call).
func (d *dedupTable) prune(index uint64, limit int, del func([]byte) error) error {
	if index <= dedupWindow {
		return nil
	}
	cut := index - dedupWindow
	n := 0
	for n < len(d.log) && n < limit && d.log[n].index < cut {
		r := d.log[n]
		if err := del(schema.DedupKey(r.index, r.id.origin, r.id.seq)); err != nil {
			return err
		}
		if d.at[r.id] == r.index {
			delete(d.at, r.id)
		}
		n++
	}
	d.log = d.log[n:]
	return nil
}
