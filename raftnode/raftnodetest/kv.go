// Package raftnodetest is a harness for raftnode: clusters of in-process
// peers on the in-memory network or TCP loopback, with partitions, crashes
// and restarts, and a small key-value state machine to drive them.
package raftnodetest

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/schema"
	"github.com/concordkv/concord/raftnode"
)

// KV commands. Encode them with PutCmd and AppendCmd.
const (
	opPut    = 1 // key = value; result: the previous value
	opAppend = 2 // log the payload; result: 8-byte BE count of applied appends
)

var (
	kvPrefix  = append(append([]byte(nil), schema.State...), "kv/"...)
	chainKey  = append(append([]byte(nil), schema.State...), "chain"...)
	countKey  = append(append([]byte(nil), schema.State...), "count"...)
	errBadCmd = errors.New("raftnodetest: malformed command")
)

// PutCmd encodes "set key to value".
func PutCmd(key, value string) []byte {
	b := []byte{opPut}
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return append(b, value...)
}

// AppendCmd encodes "record payload in the applied sequence".
func AppendCmd(payload []byte) []byte { return append([]byte{opAppend}, payload...) }

// KV is a deterministic state machine: a key-value map plus a hash chain
// over every command applied, persisted under schema.State. It also keeps
// the applied commands in memory (since its creation) for tests to compare.
type KV struct {
	mu  sync.Mutex
	seq [][]byte // guarded by mu; commands applied since creation
	idx []uint64 // guarded by mu; their entry indexes
}

var _ raftnode.Applier = (*KV)(nil)

// Apply implements raftnode.Applier.
func (kv *KV) Apply(txn *raftnode.Txn, index uint64, cmd []byte) ([]byte, error) {
	if len(cmd) == 0 {
		return nil, nil // a deterministic no-op keeps peers in step
	}
	chain, err := txn.Get(chainKey)
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return nil, err
	}
	h := sha256.New()
	h.Write(chain)
	h.Write(cmd)
	if err := txn.Set(chainKey, h.Sum(nil)); err != nil {
		return nil, err
	}
	var count uint64
	if c, err := txn.Get(countKey); err == nil {
		count, _ = schema.ParseU64(c)
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return nil, err
	}
	count++
	if err := txn.Set(countKey, schema.U64(count)); err != nil {
		return nil, err
	}
	kv.mu.Lock()
	kv.seq = append(kv.seq, append([]byte(nil), cmd...))
	kv.idx = append(kv.idx, index)
	kv.mu.Unlock()
	switch cmd[0] {
	case opPut:
		key, val, err := parsePut(cmd[1:])
		if err != nil {
			return []byte(err.Error()), nil
		}
		k := append(append([]byte(nil), kvPrefix...), key...)
		prev, err := txn.Get(k)
		if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
			return nil, err
		}
		return prev, txn.Set(k, append([]byte(nil), val...))
	case opAppend:
		return schema.U64(count), nil
	}
	return nil, nil
}

func parsePut(b []byte) (key, val []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return nil, nil, errBadCmd
	}
	return b[w : w+int(n)], b[w+int(n):], nil
}

// Snapshot implements raftnode.Applier.
func (kv *KV) Snapshot(txn *badger.Txn, w io.Writer) error {
	return raftnode.StreamPrefix(txn, schema.State, w)
}

// Restore implements raftnode.Applier.
func (kv *KV) Restore(db *badger.DB, r io.Reader) error {
	kv.mu.Lock()
	kv.seq, kv.idx = nil, nil
	kv.mu.Unlock()
	return raftnode.LoadPrefix(db, schema.State, r)
}

// Applied returns the commands applied since the KV was created (or last
// restored from a snapshot), in order, with their entry indexes.
func (kv *KV) Applied() ([][]byte, []uint64) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return append([][]byte(nil), kv.seq...), append([]uint64(nil), kv.idx...)
}

// Get reads key from db's committed state (a local, serializable read).
func Get(db *badger.DB, key string) (string, bool, error) {
	var out []byte
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(append(append([]byte(nil), kvPrefix...), key...))
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", false, nil
	}
	return string(out), err == nil, err
}

// State returns the hash chain head and the count of applied commands, as
// committed in db: equal on peers that applied the same sequence.
func State(db *badger.DB) (chain []byte, count uint64, err error) {
	err = db.View(func(txn *badger.Txn) error {
		if item, err := txn.Get(chainKey); err == nil {
			chain, _ = item.ValueCopy(nil)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if item, err := txn.Get(countKey); err == nil {
			v, _ := item.ValueCopy(nil)
			count, _ = schema.ParseU64(v)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("raftnodetest: state: %w", err)
	}
	return chain, count, nil
}
