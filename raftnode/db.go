package raftnode

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// openDB opens the peer's badger DB: on disk in cfg.DataDir, or in memory.
//
// badger does not sync by default; raftnode turns SyncWrites on, so that
// every commit is on disk when it returns. An explicit db.Sync after
// unsynced commits is not enough: it syncs only the active memtable's WAL
// and value-log file, so writes in a memtable or value-log file badger has
// moved past meanwhile could be lost to a power cut while later ones survive.
// Each Ready is written in one transaction (log, hard state, applied state),
// so SyncWrites costs one sync per Ready, which is the minimum anyway.
func openDB(cfg Config) (*badger.DB, error) {
	opts := badger.DefaultOptions(cfg.DataDir)
	if cfg.DataDir == "" {
		opts = opts.WithInMemory(true)
	}
	opts = opts.
		WithSyncWrites(cfg.DataDir != "").
		WithLogger(newSlogAdapter(cfg.Logger, cfg.ID, "badger")).
		WithMemTableSize(32 << 20).
		WithNumMemtables(3).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueLogFileSize(128 << 20).
		WithNumCompactors(2).
		WithDetectConflicts(false)
	if cfg.BadgerOptions != nil {
		opts = cfg.BadgerOptions(opts)
	}
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("raftnode: open badger: %w", err)
	}
	return db, nil
}
