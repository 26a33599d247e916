package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/schema"
)

// Ranges of keys follow etcd: an empty end names key alone, end "\x00"
// every key >= key, and any other end the keys in [key, end).

// isSingle tells whether (key, end) names key alone.
func isSingle(end []byte) bool { return len(end) == 0 }

// isFromKey tells whether end means "no end".
func isFromKey(end []byte) bool { return len(end) == 1 && end[0] == 0 }

// InRange tells whether k is in the range (key, end), as a RangeRequest
// names it.
func InRange(k, key, end []byte) bool {
	switch {
	case isSingle(end):
		return bytes.Equal(k, key)
	case bytes.Compare(k, key) < 0:
		return false
	case isFromKey(end):
		return true
	}
	return bytes.Compare(k, end) < 0
}

// emptyRange tells whether a range with an end holds no key at all.
func emptyRange(key, end []byte) bool {
	return !isSingle(end) && !isFromKey(end) && bytes.Compare(key, end) >= 0
}

// scanCurrent calls fn, in key order, for each live key of the range in
// the current state txn sees. k aliases badger's buffer and item is valid
// only during the call; an error from fn stops the scan and is returned.
func scanCurrent(r *badger.Txn, key, end []byte, fn func(k []byte, item *badger.Item) error) error {
	if isSingle(end) {
		item, err := r.Get(schema.KVKey(nil, key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(key, item)
	}
	if emptyRange(key, end) {
		return nil
	}
	var stop []byte
	prefix := schema.StateKV
	if !isFromKey(end) {
		stop = schema.KVKey(nil, end)
		prefix = commonPrefix(schema.KVKey(nil, key), stop)
	}
	// The prefix also bounds badger's own stepping over deleted keys: an
	// iterator skips them one by one inside Seek and Next, and without it
	// a range that holds nothing live would walk on past its end.
	it := r.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Seek(schema.KVKey(nil, key)); it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		if stop != nil && bytes.Compare(k, stop) >= 0 {
			return nil
		}
		if err := fn(k[len(schema.StateKV):], item); err != nil {
			return err
		}
	}
	return nil
}

// scanAt calls fn, in key order, for each key of the range that is live
// at revision rev, with the revision of its event at or before rev (its
// record is at schema.HistoryKey(at, k)). k is valid only during the call.
// It reads the index, which compaction keeps complete for revisions at or
// above the compact revision.
func scanAt(r *badger.Txn, key, end []byte, rev int64, fn func(k []byte, at int64) error) error {
	if emptyRange(key, end) {
		return nil
	}
	it, stop := indexRange(r, key, end)
	defer it.Close()
	var (
		group []byte // the escaped key whose revisions are being read
		ukey  []byte // its user key
		at    int64  // its newest revision <= rev, 0 if none
		live  bool   // whether that revision is a put
	)
	flush := func() error {
		if at != 0 && live {
			return fn(ukey, at)
		}
		return nil
	}
	for it.Valid() {
		item := it.Item()
		k := item.Key()
		if stop != nil && bytes.Compare(k, stop) >= 0 {
			break
		}
		g := schema.IndexGroup(k)
		if g == nil {
			return errBadRecord
		}
		if !bytes.Equal(g, group) {
			if err := flush(); err != nil {
				return err
			}
			group = append(group[:0], g...)
			var ok bool
			if ukey, _, ok = schema.ParseIndexKey(ukey[:0], k); !ok {
				return errBadRecord
			}
			at, live = 0, false
		}
		er := int64(binary.BigEndian.Uint64(k[len(k)-8:]))
		if er > rev {
			// Revisions ascend: skip the rest of this key's.
			it.Seek(append(bytes.Clone(group[:len(group)-1]), 0x02))
			continue
		}
		var kind byte
		if err := item.Value(func(v []byte) error {
			if len(v) == 1 {
				kind = v[0]
			}
			return nil
		}); err != nil {
			return err
		}
		at, live = er, kind == kindPut
		it.Next()
	}
	return flush()
}

// indexRange returns an iterator over the revision index of the range's
// keys (not empty), at its first key, and the index key the range ends
// before (nil: the iterator's prefix ends it). The caller closes it.
func indexRange(r *badger.Txn, key, end []byte) (it *badger.Iterator, stop []byte) {
	prefix := schema.StateIndex
	switch {
	case isSingle(end):
		prefix = schema.IndexPrefix(nil, key)
	case !isFromKey(end):
		stop = schema.IndexBound(nil, end)
	}
	it = r.NewIterator(badger.IteratorOptions{Prefix: prefix})
	it.Seek(schema.IndexBound(nil, key))
	return it, stop
}

// recordAt reads the history record of key's event at rev; the value is
// copied if withValue.
func recordAt(r *badger.Txn, key []byte, rev int64, withValue bool) (record, error) {
	item, err := r.Get(schema.HistoryKey(nil, rev, key))
	if err != nil {
		return record{}, err
	}
	return itemRecord(item, withValue)
}

// commonPrefix returns the longest common prefix of a and b.
func commonPrefix(a, b []byte) []byte {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	return a[:i]
}
