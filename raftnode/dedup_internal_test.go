package raftnode

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sync/errgroup"

	"github.com/concordkv/concord/internal/schema"
	"github.com/concordkv/concord/transport"
)

// TestDedupTableFormats: the table loads one record per entry and the
// one-key-per-id records of older versions, also both at one index;
// prune deletes either kind of key.
func TestDedupTableFormats(t *testing.T) {
	db, d := openDedup(t, "")
	txn := db.NewTransaction(true)
	// Older versions: ids (1,1) and (1,2) at 5, (2,7) at 6.
	for _, k := range [][]byte{schema.DedupKey(5, 1, 1), schema.DedupKey(5, 1, 2), schema.DedupKey(6, 2, 7)} {
		if err := txn.Set(k, nil); err != nil {
			t.Fatal(err)
		}
	}
	// This version: (3,1) at 6, then (3,2) and (3,3) at 7.
	d.add(6, pid{3, 1})
	if err := d.stage(6, txn.Set); err != nil {
		t.Fatal(err)
	}
	d.add(7, pid{3, 2})
	d.add(7, pid{3, 3})
	if err := d.stage(7, txn.Set); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	l := &dedupTable{}
	if err := l.load(db); err != nil {
		t.Fatal(err)
	}
	want := map[pid]uint64{{1, 1}: 5, {1, 2}: 5, {2, 7}: 6, {3, 1}: 6, {3, 2}: 7, {3, 3}: 7}
	for id, at := range want {
		if got, ok := l.seenBefore(id, 8); !ok || got != at {
			t.Errorf("seenBefore(%v) = %d, %v; want %d", id, got, ok, at)
		}
	}
	if _, ok := l.seenBefore(pid{3, 4}, 8); ok {
		t.Error("an id never applied is seen")
	}
	if len(l.log) != 3 {
		t.Fatalf("%d entries loaded, want 3: %+v", len(l.log), l.log)
	}
	// Prune everything up to 6: the keys of 5 and 6 go, in both formats.
	defer func(w uint64) { dedupWindow = w }(dedupWindow)
	dedupWindow = 1
	txn = db.NewTransaction(true)
	if err := l.prune(8, 1000, txn.Delete); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.DedupPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, string(it.Item().KeyCopy(nil)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != string(schema.DedupEntryKey(7)) {
		t.Fatalf("after prune: keys %q, want only the record of 7", keys)
	}
	if _, ok := l.appliedAt(pid{2, 7}); ok {
		t.Error("a pruned id is still remembered")
	}
	if at, ok := l.appliedAt(pid{3, 3}); !ok || at != 7 {
		t.Errorf("appliedAt(3,3) = %d, %v after prune", at, ok)
	}
}

// TestDedupRecordsPersisted: every proposal applied is in the dedup
// records on disk after a stop, at the index it was applied at, also when
// concurrent proposals share entries.
func TestDedupRecordsPersisted(t *testing.T) {
	dir := t.TempDir()
	net := transport.NewNetwork(1)
	defer net.Close()
	n, err := Start(Config{
		ID: 1, Peers: []Peer{{ID: 1, Addr: "mem://1"}}, DataDir: dir,
		Transport: net.Transport(1), Applier: nopApplier{},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var g errgroup.Group
	for i := range 64 {
		g.Go(func() error {
			_, err := n.Propose(ctx, fmt.Append(nil, i))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	origin, applied := n.origin, n.applied.Load()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	_, d := openDedup(t, dir)
	entries := map[uint64]bool{}
	for seq := uint64(1); seq <= 64; seq++ {
		at, ok := d.appliedAt(pid{origin, seq})
		if !ok || at == 0 || at > applied {
			t.Fatalf("proposal %d: recorded at %d, %v (applied index %d)", seq, at, ok, applied)
		}
		entries[at] = true
	}
	t.Logf("64 proposals in %d entries", len(entries))
}

// openDedup opens the badger DB in dir (in memory if "") until the test
// ends and loads its dedup table.
func openDedup(t *testing.T, dir string) (*badger.DB, *dedupTable) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithInMemory(dir == "").WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d := &dedupTable{}
	if err := d.load(db); err != nil {
		t.Fatal(err)
	}
	return db, d
}

// nopApplier applies every command as a no-op.
type nopApplier struct{}

func (nopApplier) Apply(*Txn, uint64, []byte) ([]byte, error) { return nil, nil }
func (nopApplier) Snapshot(*badger.Txn, io.Writer) error      { return nil }
func (nopApplier) Restore(*badger.DB, io.Reader) error        { return nil }
