package fsm

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/btree"

	"github.com/concordkv/concord/internal/schema"
)

// liveIndex is the ordered set of the keys live in the current state, as
// applied. Range reads of the current state list their keys from it and
// read each one by a point lookup, instead of walking badger's iterator
// over the deleted keys of the range: a prefix that saw many puts and
// deletes (a queue's head, a lock's waiters) keeps those deletions in
// badger's levels until compaction, and an iterator steps over every one.
//
// Apply builds it from badger when it loads its state, keeps it exact
// through exec's puts and deletes (the only writers under s/k/), and gives
// the readCache a copy-on-write clone at each commit for other goroutines.
type liveIndex struct {
	t     *btree.BTreeG[string] // nil until built
	dirty bool                  // changed since the last clone
}

func lessString(a, b string) bool { return a < b }

// build loads every live key from r.
func (l *liveIndex) build(r *badger.Txn) error {
	t := btree.NewG(32, lessString)
	it := r.NewIterator(badger.IteratorOptions{Prefix: schema.StateKV})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		t.ReplaceOrInsert(string(it.Item().Key()[len(schema.StateKV):]))
	}
	l.t, l.dirty = t, true
	return nil
}

func (l *liveIndex) reset() { l.t, l.dirty = nil, false }

// created records that key became live; deleted that it is gone.
func (l *liveIndex) created(key []byte) {
	if l.t != nil {
		l.t.ReplaceOrInsert(string(key))
		l.dirty = true
	}
}

func (l *liveIndex) deleted(key []byte) {
	if l.t != nil {
		l.t.Delete(string(key))
		l.dirty = true
	}
}

// clone returns a copy for readers, or nil if there is no index.
func (l *liveIndex) clone() *btree.BTreeG[string] {
	if l.t == nil {
		return nil
	}
	l.dirty = false
	return l.t.Clone()
}

// maxListed caps the keys listKeys returns: past it, an iterator over the
// range costs less than a point lookup per key.
const maxListed = 1024

// listKeys returns the live keys of the range (key, end) in t, in order;
// ok is false if t is nil or the range holds more than maxListed keys.
func listKeys(t *btree.BTreeG[string], key, end []byte) (keys []string, ok bool) {
	if t == nil {
		return nil, false
	}
	if isSingle(end) {
		if t.Has(string(key)) {
			return []string{string(key)}, true
		}
		return nil, true
	}
	if emptyRange(key, end) {
		return nil, true
	}
	ok = true
	visit := func(k string) bool {
		if len(keys) == maxListed {
			ok = false
			return false
		}
		keys = append(keys, k)
		return true
	}
	if isFromKey(end) {
		t.AscendGreaterOrEqual(string(key), visit)
	} else {
		t.AscendRange(string(key), string(end), visit)
	}
	return keys, ok
}

// scanListed calls fn, as scanCurrent does, for each of keys, read from r
// by point lookups. keys must be live in r's view.
func scanListed(r *badger.Txn, keys []string, fn func(k []byte, item *badger.Item) error) error {
	for _, k := range keys {
		bk := schema.KVKey(nil, []byte(k)) // badger may keep it until the txn ends
		item, err := getListed(r, bk)
		if err != nil {
			return err
		}
		if err := fn(bk[len(schema.StateKV):], item); err != nil {
			return err
		}
	}
	return nil
}

// getListed reads the item of bk, a key under s/k/ the live index lists.
func getListed(r *badger.Txn, bk []byte) (*badger.Item, error) {
	item, err := r.Get(bk)
	if err != nil {
		return nil, fmt.Errorf("fsm: live index out of step at %q: %w", bk[len(schema.StateKV):], err)
	}
	return item, nil
}

// scan calls fn for each live key of the range in the state exec sees,
// listing the keys from the live index when it can.
func (e *exec) scan(key, end []byte, fn func(k []byte, item *badger.Item) error) error {
	if keys, ok := listKeys(e.f.live.t, key, end); ok {
		return scanListed(e.r, keys, fn)
	}
	return scanCurrent(e.r, key, end, fn)
}

// countKeys counts the live keys of the range (key, end) in t.
func countKeys(t *btree.BTreeG[string], key, end []byte) int64 {
	if isSingle(end) {
		if t.Has(string(key)) {
			return 1
		}
		return 0
	}
	if emptyRange(key, end) {
		return 0
	}
	var n int64
	count := func(string) bool { n++; return true }
	if isFromKey(end) {
		t.AscendGreaterOrEqual(string(key), count)
	} else {
		t.AscendRange(string(key), string(end), count)
	}
	return n
}
