package raftnode

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/schema"
)

// dedupWindow is how many log entries a proposal id is remembered for. A
// retried proposal is mostly committed close to its first copy; one
// retried until the log moved further than this past its first proposal
// (a proposer cut off that long) is refused by its floor instead (apply.go),
// so no duplicate slips through.
var dedupWindow uint64 = 10000

type pid struct{ origin, seq uint64 }

// dedupEntry is the ids applied at one log index.
type dedupEntry struct {
	index  uint64
	ids    []pid // listed under schema.DedupEntryKey(index)
	legacy []pid // each under its own schema.DedupKey (older versions)
	dirty  bool  // ids changed since stage
}

// dedupTable remembers the ids of recently applied proposals and the index
// each was applied at. It is replicated state: the same on every peer at the
// same applied index, persisted under schema.DedupPrefix in the apply
// transaction (one key per entry) and carried in snapshots. Loop-owned.
type dedupTable struct {
	at  map[pid]uint64
	log []dedupEntry // ascending by index
}

func (d *dedupTable) load(db *badger.DB) error {
	d.at = map[pid]uint64{}
	d.log = d.log[:0]
	return db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.DedupPrefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if index, origin, seq, ok := schema.ParseDedupKey(k); ok {
				e := d.entry(index)
				e.legacy = append(e.legacy, pid{origin, seq})
				d.at[pid{origin, seq}] = index
				continue
			}
			index, ok := schema.ParseDedupEntryKey(k)
			if !ok {
				continue
			}
			err := it.Item().Value(func(v []byte) error {
				if !schema.ParseDedupIDs(v, func(origin, seq uint64) { d.add(index, pid{origin, seq}) }) {
					return fmt.Errorf("raftnode: corrupt dedup record at %d", index)
				}
				return nil
			})
			if err != nil {
				return err
			}
			d.entry(index).dirty = false
		}
		return nil
	})
}

// entry returns the newest entry, made for index if it is not index's.
// Indexes only grow.
func (d *dedupTable) entry(index uint64) *dedupEntry {
	if n := len(d.log); n == 0 || d.log[n-1].index != index {
		d.log = append(d.log, dedupEntry{index: index})
	}
	return &d.log[len(d.log)-1]
}

// add records id as applied at index; stage writes it.
func (d *dedupTable) add(index uint64, id pid) {
	d.at[id] = index
	e := d.entry(index)
	e.ids = append(e.ids, id)
	e.dirty = true
}

// stage writes, through set, index's record if ids were added to it since.
func (d *dedupTable) stage(index uint64, set func(k, v []byte) error) error {
	n := len(d.log)
	if n == 0 || d.log[n-1].index != index || !d.log[n-1].dirty {
		return nil
	}
	e := &d.log[n-1]
	var v []byte
	for _, id := range e.ids {
		v = schema.AppendDedupID(v, id.origin, id.seq)
	}
	if err := set(schema.DedupEntryKey(index), v); err != nil {
		return err
	}
	e.dirty = false
	return nil
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

// prune forgets the entries more than dedupWindow before index, deleting
// their keys through del (at most limit entries per call).
func (d *dedupTable) prune(index uint64, limit int, del func([]byte) error) error {
	if index <= dedupWindow {
		return nil
	}
	cut := index - dedupWindow
	n := 0
	for n < len(d.log) && n < limit && d.log[n].index < cut {
		e := &d.log[n]
		if len(e.ids) > 0 {
			if err := del(schema.DedupEntryKey(e.index)); err != nil {
				return err
			}
		}
		for _, id := range e.legacy {
			if err := del(schema.DedupKey(e.index, id.origin, id.seq)); err != nil {
				return err
			}
		}
		for _, ids := range [][]pid{e.ids, e.legacy} {
			for _, id := range ids {
				if d.at[id] == e.index {
					delete(d.at, id)
				}
			}
		}
		n++
	}
	d.log = d.log[n:]
	return nil
}
