// Package schema is concord's badger keyspace, in one place.
//
// One badger DB holds everything a node persists. The first byte of every
// key names its owner:
//
//	'm'  meta      m/version                 -> uvarint schema version
//	'r'  raft log  r/hs                      -> raftpb.HardState
//	               r/snap                    -> raftpb.SnapshotMetadata of the
//	                                            newest compaction point
//	               r/e/<index:8 BE>          -> raftpb.Entry
//	'a'  applied   a/index                   -> 8-byte BE applied index
//	               a/cs                      -> raftpb.ConfState as of a/index
//	               a/peer/<id:8 BE>          -> peer address (from conf changes)
//	               a/dd/<index:8>            -> uvarint pairs origin, seq: the
//	                                            proposal ids applied at index
//	                                            (dedup window); versions before
//	                                            it wrote one key per id,
//	                                            a/dd/<index:8><origin:8><seq:8>
//	                                            -> empty, which are still read
//	               a/restoring               -> wire.RestoreMarker while a
//	                                            snapshot install runs
//	's'  state     s/...                     -> owned by the state machine
//	                                            (the raftnode.Applier)
//
// The state machine, internal/fsm, is an MVCC store like etcd's. Its
// keys (encoders in state.go):
//
//	s/m/rev                  -> rev:8, compact:8, credit:8 (BE): the current
//	                            and the compact revision (absent: 1 and 0),
//	                            and the compaction sweep's credit in bytes
//	s/m/sweep                -> <rev:8><key>: the history key the
//	                            compaction sweep visits next (absent: start)
//	s/k/<key>                -> record: the key's current KeyValue (live
//	                            keys only; current reads scan this)
//	s/h/<rev:8 BE><key>      -> record: the event of rev on key, a put or a
//	                            tombstone (history; revision order, so a
//	                            watch replays "since r" with one scan)
//	s/i/<esc(key)><rev:8 BE> -> kind (1 put, 2 delete): key's revisions,
//	                            contiguous per key, for reads at a past
//	                            revision and a narrow range's history (a
//	                            quiet key's since r, without a scan of all
//	                            changes since r); esc writes each 0x00 as
//	                            0x00 0xFF and ends with 0x00 0x01, which
//	                            keeps key order and makes no key a prefix
//	                            of another
//	s/l/<id:8 BE>            -> lease: uvarints ttl and remaining (ns; 0 =
//	                            not checkpointed), then the number and the
//	                            total bytes of the keys attached to it
//	s/lk/<id:8 BE><key>      -> empty: key is attached to lease id (the
//	                            key's record names the lease the other way)
//
// A record is: kind:1, then uvarints create_revision, mod_revision,
// version, zigzag lease and prev (the revision of the key's previous
// live put, 0 if none), then the value. Keys are written raw after fixed
// prefixes, so every range of user keys is a range of badger keys. One
// write transaction has one revision, so a key has at most one event per
// revision. After a compaction at c, its sweep leaves every event at or
// above c and, below c, at most the newest put of each key.
//
// Keys under 'r' change only with the raft log and are written synced.
// Keys under 'a' and 's' change together in the apply batch: the applied
// index never disagrees with the state. A snapshot carries 'a/cs', 'a/peer'
// and 'a/dd' (the replicated part of 'a') and the applier's 's' keys.
package schema

import (
	"encoding/binary"
)

// Version is the current schema version, stored under Meta.
const Version = 1

// Key prefixes and fixed keys.
var (
	MetaVersion = []byte("m/version")

	RaftHardState = []byte("r/hs")
	RaftSnapshot  = []byte("r/snap")
	RaftEntry     = []byte("r/e/")

	Applied      = []byte("a/index")
	ConfState    = []byte("a/cs")
	PeerPrefix   = []byte("a/peer/")
	DedupPrefix  = []byte("a/dd/")
	MemberPrefix = []byte("a/mem/")
	Restoring    = []byte("a/restoring")
	AppliedGroup = []byte("a/") // every applied-side key

	// State is the prefix the state machine owns.
	State = []byte("s/")
)

// EntryKey returns the key of log entry index.
func EntryKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), RaftEntry...), index)
}

// EntryIndex parses a key made by EntryKey.
func EntryIndex(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(RaftEntry):])
}

// PeerKey returns the key holding peer id's address.
func PeerKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), PeerPrefix...), id)
}

// MemberKey returns the key holding member id's record (raftnode's
// incarnation guard).
func MemberKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), MemberPrefix...), id)
}

// MemberKeyID parses a key made by MemberKey.
func MemberKeyID(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(MemberPrefix):])
}

// PeerID parses a key made by PeerKey.
func PeerID(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(PeerPrefix):])
}

// DedupEntryKey returns the key listing the proposal ids applied at
// index (see AppendDedupID).
func DedupEntryKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), DedupPrefix...), index)
}

// ParseDedupEntryKey parses a key made by DedupEntryKey.
func ParseDedupEntryKey(key []byte) (index uint64, ok bool) {
	b := key[len(DedupPrefix):]
	if len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

// AppendDedupID appends one proposal id of a DedupEntryKey's value to dst.
func AppendDedupID(dst []byte, origin, seq uint64) []byte {
	return binary.AppendUvarint(binary.AppendUvarint(dst, origin), seq)
}

// ParseDedupIDs calls fn with each id of a DedupEntryKey's value; ok is
// false if v is malformed.
func ParseDedupIDs(v []byte, fn func(origin, seq uint64)) (ok bool) {
	for len(v) > 0 {
		origin, n := binary.Uvarint(v)
		if n <= 0 {
			return false
		}
		seq, m := binary.Uvarint(v[n:])
		if m <= 0 {
			return false
		}
		fn(origin, seq)
		v = v[n+m:]
	}
	return true
}

// DedupKey returns the key, written by versions before DedupEntryKey,
// recording that proposal (origin, seq) was applied at index.
func DedupKey(index, origin, seq uint64) []byte {
	k := append([]byte(nil), DedupPrefix...)
	k = binary.BigEndian.AppendUint64(k, index)
	k = binary.BigEndian.AppendUint64(k, origin)
	return binary.BigEndian.AppendUint64(k, seq)
}

// ParseDedupKey parses a key made by DedupKey.
func ParseDedupKey(key []byte) (index, origin, seq uint64, ok bool) {
	b := key[len(DedupPrefix):]
	if len(b) != 24 {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint64(b[16:]), true
}

// U64 encodes v as 8 bytes big-endian.
func U64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// ParseU64 decodes 8 bytes big-endian; ok is false for another length.
func ParseU64(b []byte) (uint64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}
