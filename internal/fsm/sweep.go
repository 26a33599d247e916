package fsm

import (
	"bytes"
	"encoding/binary"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/schema"
	"github.com/concordkv/concord/raftnode"
)

// The sweep removes what a compaction made unreachable. It walks the
// history below the compact revision c in revision order and, for each
// event e (revision < c) on key k, deletes
//   - e's predecessor, the put at e.prev: e, below c, supersedes it for
//     every read at or above c;
//   - e itself if it is a tombstone: its predecessor is gone too, so reads
//     at or above c find nothing for k either way.
//
// Events at or above c stay, so a watch from c replays them all with
// their previous values; below c at most the newest put of each key is
// left. Reads never depend on the sweep's progress: they refuse
// revisions below c first.
//
// The sweep is part of apply, hence deterministic: every peer holds the
// same keys. Its work is paid for with credit, persisted with the
// revisions: each command that writes (or compacts) earns sweepCredit
// bytes, up to sweepMaxCredit, and the sweep runs in that command's
// transaction until the next event would cost more than is left. So a
// batch of n writing commands carries at most sweepMaxCredit +
// n*sweepCredit bytes of deletes besides its own writes, however large
// the compaction.
const (
	sweepCredit = 1 << 10
	// sweepMaxCredit is above the cost of one event on the costliest key
	// (MaxKeySize zero bytes, a tombstone with a predecessor: three
	// deletes at 3×MaxKeySize+64 each), so the sweep never stops for good.
	sweepMaxCredit = 2 * 3 * (3*MaxKeySize + 64)
)

// deleteCost estimates what deleting key's history and index entries of
// one revision adds to a transaction.
func deleteCost(key []byte) int64 {
	return int64(2*len(key) + bytes.Count(key, []byte{0}) + 64)
}

// sweep spends f.credit on the sweep.
func (f *FSM) sweep(txn *raftnode.Txn) error {
	if f.sweepRev >= f.compact {
		return nil
	}
	type gone struct {
		key       []byte
		rev, prev int64
		tombstone bool
	}
	var (
		victims []gone
		pos     []byte // where the next sweep starts
	)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.StateHistory})
	start := append(bytes.Clone(schema.StateHistory), f.sweepPos...)
	for it.Seek(start); it.Valid(); it.Next() {
		item := it.Item()
		rev, key, ok := schema.ParseHistoryKey(item.Key())
		if !ok {
			it.Close()
			return errBadRecord
		}
		if rev >= f.compact {
			break
		}
		var rec record
		if err := item.Value(func(v []byte) error {
			var err error
			rec, err = parseRecord(v)
			return err
		}); err != nil {
			it.Close()
			return err
		}
		g := gone{rev: rev, prev: rec.prev, tombstone: rec.kind == kindDelete}
		cost := deleteCost(key) // the new position
		if g.prev != 0 {
			cost += deleteCost(key)
		}
		if g.tombstone {
			cost += deleteCost(key)
		}
		if cost > f.credit {
			pos = bytes.Clone(item.Key()[len(schema.StateHistory):])
			break
		}
		f.credit -= cost
		g.key = append(f.arena.alloc(len(key)), key...)
		victims = append(victims, g)
	}
	it.Close()
	if pos == nil {
		pos = binary.BigEndian.AppendUint64(f.arena.alloc(8), uint64(f.compact))
	}
	del := func(key []byte, rev int64) error {
		a := &f.arena
		hk := schema.HistoryKey(a.alloc(len(schema.StateHistory)+8+len(key)), rev, key)
		if err := txn.Delete(hk); err != nil {
			return err
		}
		n := len(schema.StateIndex) + len(key) + bytes.Count(key, []byte{0}) + 10
		return txn.Delete(schema.IndexKey(a.alloc(n), key, rev))
	}
	for _, g := range victims {
		if g.prev != 0 {
			if err := del(g.key, g.prev); err != nil {
				return err
			}
		}
		if g.tombstone {
			if err := del(g.key, g.rev); err != nil {
				return err
			}
		}
	}
	if len(victims) == 0 && bytes.Equal(pos, f.sweepPos) {
		return nil
	}
	f.sweepPos, f.sweepRev = pos, int64(binary.BigEndian.Uint64(pos))
	return txn.Set(schema.StateSweep, pos)
}
