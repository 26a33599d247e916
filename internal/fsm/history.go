package fsm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/schema"
)

// ErrCompacted is returned by History for a start below the compact
// revision.
var ErrCompacted = errors.New("fsm: revision compacted")

// History calls fn with every event of revision >= from on a key of the
// range (key, end: as in a RangeRequest), as seen by txn, in revision
// order and within a revision in key order: what a watch from revision
// from replays. With prevKV each event carries the key's previous state.
// It scans the history since from, whatever the range: its cost is the
// number of changes since from, not the size of the keyspace. It returns
// ErrCompacted if from is below the compact revision; an error from fn
// stops it and is returned.
func (f *FSM) History(txn *badger.Txn, from int64, key, end []byte, prevKV bool, fn func(*command.Event) error) error {
	_, compact, err := ReadRevisions(txn)
	if err != nil {
		return err
	}
	if from < compact {
		return fmt.Errorf("%w: %d is below the compact revision %d", ErrCompacted, from, compact)
	}
	if from < 1 {
		from = 1
	}
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
		k = bytes.Clone(k)
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
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}
