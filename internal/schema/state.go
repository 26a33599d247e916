package schema

import (
	"encoding/binary"
)

// The state machine's keys, under State; the layout is in the package doc.
var (
	StateMeta    = []byte("s/m/rev")
	StateSweep   = []byte("s/m/sweep")
	StateKV      = []byte("s/k/")
	StateHistory = []byte("s/h/")
	StateIndex   = []byte("s/i/")
	StateLease   = []byte("s/l/")
	StateLeased  = []byte("s/lk/")
)

// LeaseKey appends the key of lease id's record to dst.
func LeaseKey(dst []byte, id int64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, StateLease...), uint64(id))
}

// ParseLeaseKey returns the lease id of a key made by LeaseKey.
func ParseLeaseKey(k []byte) (int64, bool) {
	b := k[len(StateLease):]
	if len(b) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), true
}

// LeasedPrefix appends the prefix of the attachment keys of lease id to
// dst.
func LeasedPrefix(dst []byte, id int64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, StateLeased...), uint64(id))
}

// LeasedKey appends the key recording that key is attached to lease id to
// dst.
func LeasedKey(dst []byte, id int64, key []byte) []byte {
	return append(LeasedPrefix(dst, id), key...)
}

// KVKey appends the current-value key of key to dst.
func KVKey(dst, key []byte) []byte {
	return append(append(dst, StateKV...), key...)
}

// HistoryKey appends the history key of key's event at rev to dst.
func HistoryKey(dst []byte, rev int64, key []byte) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, StateHistory...), uint64(rev))
	return append(dst, key...)
}

// ParseHistoryKey splits a key made by HistoryKey; key aliases k.
func ParseHistoryKey(k []byte) (rev int64, key []byte, ok bool) {
	b := k[len(StateHistory):]
	if len(b) < 8 {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(b)), b[8:], true
}

// IndexKey appends the index key of key's revision rev to dst.
func IndexKey(dst, key []byte, rev int64) []byte {
	dst = AppendEscaped(append(dst, StateIndex...), key)
	dst = append(dst, 0x00, 0x01)
	return binary.BigEndian.AppendUint64(dst, uint64(rev))
}

// IndexPrefix appends the prefix of every index key of key to dst: a
// seek target for key's revisions.
func IndexPrefix(dst, key []byte) []byte {
	return append(AppendEscaped(append(dst, StateIndex...), key), 0x00, 0x01)
}

// IndexBound appends the escaped key without its terminator to dst.
// Index keys of keys >= key sort at or after it and those of keys < key
// before it, so it serves both as a seek target and as a range end.
func IndexBound(dst, key []byte) []byte {
	return AppendEscaped(append(dst, StateIndex...), key)
}

// ParseIndexKey splits a key made by IndexKey. The user key is appended,
// unescaped, to dst.
func ParseIndexKey(dst, k []byte) (key []byte, rev int64, ok bool) {
	b := k[len(StateIndex):]
	if len(b) < 10 {
		return dst, 0, false
	}
	rev = int64(binary.BigEndian.Uint64(b[len(b)-8:]))
	b = b[:len(b)-8]
	if b[len(b)-2] != 0x00 || b[len(b)-1] != 0x01 {
		return dst, 0, false
	}
	b = b[:len(b)-2]
	for i := 0; i < len(b); i++ {
		dst = append(dst, b[i])
		if b[i] == 0x00 {
			if i+1 >= len(b) || b[i+1] != 0xFF {
				return dst, 0, false
			}
			i++
		}
	}
	return dst, rev, true
}

// IndexGroup returns the part of index key k that names its user key
// (escaped, terminator included): equal for all revisions of one key.
func IndexGroup(k []byte) []byte {
	if len(k) < len(StateIndex)+10 {
		return nil
	}
	return k[:len(k)-8]
}

// AppendEscaped appends key to dst with each 0x00 written as 0x00 0xFF.
func AppendEscaped(dst, key []byte) []byte {
	for _, c := range key {
		if c == 0x00 {
			dst = append(dst, 0x00, 0xFF)
			continue
		}
		dst = append(dst, c)
	}
	return dst
}
