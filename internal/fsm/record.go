package fsm

import (
	"encoding/binary"
	"errors"

	"github.com/concordkv/concord/internal/command"
)

// Kinds of a record (and values of an index entry).
const (
	kindPut    byte = 1
	kindDelete byte = 2
)

// Index entry values, shared by every write: badger does not change them.
var (
	putMark = []byte{kindPut}
	delMark = []byte{kindDelete}
)

var errBadRecord = errors.New("fsm: corrupt state record")

// record is a decoded state record (layout in internal/schema). value
// aliases the bytes it was parsed from.
type record struct {
	kind                 byte
	create, mod, version int64
	lease, prev          int64
	value                []byte
}

// recordLen bounds the encoded length of a record holding value.
func recordLen(value []byte) int { return 1 + 5*binary.MaxVarintLen64 + len(value) }

// appendRecord appends r's encoding to dst.
func appendRecord(dst []byte, r *record) []byte {
	dst = append(dst, r.kind)
	dst = binary.AppendUvarint(dst, uint64(r.create))
	dst = binary.AppendUvarint(dst, uint64(r.mod))
	dst = binary.AppendUvarint(dst, uint64(r.version))
	dst = binary.AppendVarint(dst, r.lease)
	dst = binary.AppendUvarint(dst, uint64(r.prev))
	return append(dst, r.value...)
}

// parseRecord decodes b; the record's value aliases b.
func parseRecord(b []byte) (record, error) {
	var r record
	if len(b) == 0 || (b[0] != kindPut && b[0] != kindDelete) {
		return r, errBadRecord
	}
	r.kind = b[0]
	d := decoder{b: b[1:]}
	r.create = int64(d.uvarint())
	r.mod = int64(d.uvarint())
	r.version = int64(d.uvarint())
	r.lease = d.varint()
	r.prev = int64(d.uvarint())
	if d.bad {
		return r, errBadRecord
	}
	r.value = d.b
	return r, nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// kv returns the KeyValue of a put record on key. key and the value are
// used as they are: pass copies where they alias badger's buffers.
func (r *record) kv(key []byte, value []byte) *command.KeyValue {
	return &command.KeyValue{
		Key:            key,
		CreateRevision: r.create,
		ModRevision:    r.mod,
		Version:        r.version,
		Value:          value,
		Lease:          r.lease,
	}
}

// arena hands out byte slices for keys and values given to the apply
// transaction. Badger keeps them until the commit, so memory is never
// reused: a full chunk is left to the garbage collector.
type arena struct{ buf []byte }

const (
	arenaChunk = 32 << 10
	arenaLarge = 2 << 10 // larger requests get their own allocation
)

// alloc returns an empty slice with capacity n.
func (a *arena) alloc(n int) []byte {
	if n > arenaLarge {
		return make([]byte, 0, n)
	}
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, arenaChunk)
	}
	l := len(a.buf)
	a.buf = a.buf[:l+n]
	return a.buf[l : l : l+n]
}
