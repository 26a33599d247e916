package fsm

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/schema"
)

// ErrCompacted is returned by History for a start below the compact
// revision.
var ErrCompacted = errors.New("fsm: revision compacted")

// historyIndexBudget is how many index keys History may visit looking for
// a range's events since a revision before it scans the history instead;
// since is the number of revisions since then, a lower bound of the scan's
// cost. A variable for tests.
var historyIndexBudget = func(since int64) int64 { return min(since, 1<<14) }

// History calls fn with every event of revision >= from on a key of the
// range (key, end: as in a RangeRequest), as seen by txn, in revision
// order and within a revision in key order: what a watch from revision
// from replays. With prevKV each event carries the key's previous state.
// It returns ErrCompacted if from is below the compact revision; an error
// from fn stops it and is returned.
//
// It reads whichever is cheaper: the range's revision index (cost: the
// revisions of the range's keys, older ones skipped a key at a time) or
// the history since from (cost: every change since from, whatever its
// key). It tries the index first, within a budget of the number of
// revisions since from, and scans the history past it. So a watch on a
// quiet key of a busy store replays from far back cheaply, and a wide
// range costs at most about twice the scan.
func (f *FSM) History(txn *badger.Txn, from int64, key, end []byte, prevKV bool, fn func(*command.Event) error) error {
	cur, compact, err := ReadRevisions(txn)
	if err != nil {
		return err
	}
	if from < compact {
		return fmt.Errorf("%w: %d is below the compact revision %d", ErrCompacted, from, compact)
	}
	if from < 1 {
		from = 1
	}
	if from > cur {
		return nil
	}
	evs, ok, err := historyByIndex(txn, from, historyIndexBudget(cur-from+1), key, end)
	if err != nil {
		return err
	}
	if !ok {
		return historyScan(txn, from, key, end, prevKV, fn)
	}
	for _, e := range evs {
		item, err := txn.Get(schema.HistoryKey(nil, e.rev, e.key))
		if err != nil {
			return fmt.Errorf("fsm: history of %q at %d: %w", e.key, e.rev, err)
		}
		if err := emitEvent(txn, e.rev, e.key, item, prevKV, fn); err != nil {
			return err
		}
	}
	return nil
}

// historyScan is History by a scan of the history since from.
func historyScan(txn *badger.Txn, from int64, key, end []byte, prevKV bool, fn func(*command.Event) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.StateHistory})
	defer it.Close()
	for it.Seek(schema.HistoryKey(nil, from, nil)); it.Valid(); it.Next() {
		item := it.Item()
		rev, k, ok := schema.ParseHistoryKey(item.Key())
		if !ok {
			return errBadRecord
		}
		if !InRange(k, key, end) {
			continue
		}
		if err := emitEvent(txn, rev, bytes.Clone(k), item, prevKV, fn); err != nil {
			return err
		}
	}
	return nil
}

// revKey names one event: key's at rev.
type revKey struct {
	rev int64
	key []byte
}

// historyByIndex returns the events of revision >= from on the range's
// keys, in History's order, read from the revision index. It gives up
// (ok false) once it has visited more than budget index keys.
func historyByIndex(txn *badger.Txn, from, budget int64, key, end []byte) (evs []revKey, ok bool, err error) {
	if emptyRange(key, end) {
		return nil, true, nil
	}
	it, stop := indexRange(txn, key, end)
	defer it.Close()
	var (
		group []byte // the escaped key whose revisions are being read
		ukey  []byte // its user key
		steps int64
	)
	for it.Valid() {
		if steps++; steps > budget {
			return nil, false, nil
		}
		k := it.Item().Key()
		if stop != nil && bytes.Compare(k, stop) >= 0 {
			break
		}
		g := schema.IndexGroup(k)
		if g == nil {
			return nil, false, errBadRecord
		}
		rev := int64(binary.BigEndian.Uint64(k[len(k)-8:]))
		if !bytes.Equal(g, group) {
			group = append(group[:0], g...)
			if ukey, _, ok = schema.ParseIndexKey(nil, k); !ok {
				return nil, false, errBadRecord
			}
			if rev < from {
				// Revisions ascend: skip this key's older ones.
				it.Seek(binary.BigEndian.AppendUint64(bytes.Clone(group), uint64(from)))
				continue
			}
		}
		if rev >= from {
			evs = append(evs, revKey{rev, ukey})
		}
		it.Next()
	}
	slices.SortFunc(evs, func(a, b revKey) int {
		return cmp.Or(cmp.Compare(a.rev, b.rev), bytes.Compare(a.key, b.key))
	})
	return evs, true, nil
}

// emitEvent calls fn with the event whose history record is item: key's
// at rev. k must not alias badger's buffers.
func emitEvent(txn *badger.Txn, rev int64, k []byte, item *badger.Item, prevKV bool, fn func(*command.Event) error) error {
	var rec record
	err := item.Value(func(v []byte) error {
		var err error
		rec, err = parseRecord(v)
		rec.value = bytes.Clone(rec.value)
		return err
	})
	if err != nil {
		return err
	}
	ev := &command.Event{Type: command.Event_PUT, Kv: rec.kv(k, rec.value)}
	if rec.kind == kindDelete {
		ev.Type, ev.Kv = command.Event_DELETE, &command.KeyValue{Key: k, ModRevision: rev}
	}
	if prevKV && rec.prev != 0 {
		// The predecessor of an event at or above the compact
		// revision is never swept.
		p, err := recordAt(txn, k, rec.prev, true)
		if err != nil {
			return fmt.Errorf("fsm: previous state of %q at %d: %w", k, rec.prev, err)
		}
		ev.PrevKv = p.kv(k, p.value)
	}
	return fn(ev)
}
