package raftnode

import (
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestRestoreChainBoundsTxn: a restore's chain commits every
// restoreTxnBytes even when badger would take everything in one transaction
// (values bound for the value log count as pointers in badger's limit), so
// a snapshot restore holds a bounded part of the state in memory.
func TestRestoreChainBoundsTxn(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithValueThreshold(1 << 10))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const n, size = 64, 256 << 10 // 16 MiB
	val := make([]byte, size)
	key := func(prefix string, i int) []byte { return fmt.Appendf(nil, "s/%s%03d", prefix, i) }

	plain := newChain(db, dbCommitter{db})
	for i := range n {
		if err := plain.set(key("plain", i), val); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("without a limit, one transaction took %d MiB", plain.bytes>>20)
	plain.discard()

	c := newRestoreChain(db)
	defer c.discard()
	for i := range n {
		if err := c.set(key("r", i), val); err != nil {
			t.Fatal(err)
		}
		if c.bytes > restoreTxnBytes {
			t.Fatalf("after %d values the transaction holds %d bytes, limit %d", i+1, c.bytes, restoreTxnBytes)
		}
	}
	if err := c.done(); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(txn *badger.Txn) error {
		for i := range n {
			item, err := txn.Get(key("r", i))
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(v) != size {
				return fmt.Errorf("value %d has %d bytes", i, len(v))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
