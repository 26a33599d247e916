package concord

import (
	"bytes"
	"slices"
)

// A primitive named "a" keeps its participants' keys one segment under
// its prefix ("a/<id>"); keys deeper under it belong to primitives whose
// names extend "a" ("a/b/<id>" is the Mutex "a/b"'s), which must not count
// as "a"'s waiters, campaigners or leaders. Registry documents the same
// rule for its instances.

// ownKey reports whether key is pfx plus one segment with no "/".
func ownKey(key []byte, pfx string) bool {
	return len(key) > len(pfx) && string(key[:len(pfx)]) == pfx && bytes.IndexByte(key[len(pfx):], '/') < 0
}

// ownKeys returns the keys of kvs that are pfx's own (ownKey), in order;
// kvs itself when all are.
func ownKeys(kvs []*KeyValue, pfx string) []*KeyValue {
	for i, kv := range kvs {
		if ownKey(kv.Key, pfx) {
			continue
		}
		out := slices.Clone(kvs[:i])
		for _, kv := range kvs[i+1:] {
			if ownKey(kv.Key, pfx) {
				out = append(out, kv)
			}
		}
		return out
	}
	return kvs
}
