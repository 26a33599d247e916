package raftnode

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// maxPrefixRecord bounds one key or value read back by LoadPrefix.
const maxPrefixRecord = 64 << 20

// StreamPrefix writes every key under prefix, as seen by txn, to w as
// (uvarint len, key, uvarint len, value) records. It is a ready-made
// Applier.Snapshot for state machines that own one key prefix.
func StreamPrefix(txn *badger.Txn, prefix []byte, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	var lb []byte
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		err := item.Value(func(v []byte) error {
			k := item.Key()
			lb = binary.AppendUvarint(lb[:0], uint64(len(k)))
			bw.Write(lb)
			bw.Write(k)
			lb = binary.AppendUvarint(lb[:0], uint64(len(v)))
			bw.Write(lb)
			_, err := bw.Write(v)
			return err
		})
		if err != nil {
			return err
		}
	}
	return bw.Flush()
}

// LoadPrefix replaces every key under prefix in db with the records
// StreamPrefix wrote to r, streaming: memory stays bounded by one
// transaction. It is a ready-made Applier.Restore.
func LoadPrefix(db *badger.DB, prefix []byte, r io.Reader) error {
	if len(prefix) == 0 || reserved(prefix) || (len(prefix) == 1 && bytes.IndexByte([]byte("mra"), prefix[0]) >= 0) {
		return fmt.Errorf("%w: LoadPrefix(%q) would drop raftnode's own keys", ErrReservedKey, prefix)
	}
	if err := db.DropPrefix(prefix); err != nil {
		return err
	}
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	c := newRestoreChain(db)
	defer c.discard()
	for {
		k, err := readChunk(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		v, err := readChunk(br)
		if err != nil {
			return fmt.Errorf("raftnode: value of %q: %w", k, noEOF(err))
		}
		if len(k) < len(prefix) || string(k[:len(prefix)]) != string(prefix) {
			return fmt.Errorf("raftnode: snapshot key %q outside prefix %q", k, prefix)
		}
		if err := c.set(k, v); err != nil {
			return err
		}
	}
	return c.done()
}

func readChunk(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > maxPrefixRecord {
		return nil, fmt.Errorf("raftnode: snapshot record of %d bytes exceeds %d", n, maxPrefixRecord)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, noEOF(err)
	}
	return b, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
