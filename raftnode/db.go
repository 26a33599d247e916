package raftnode

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// openDB opens the peer's badger DB: on disk in cfg.DataDir, or in memory.
//
// badger runs without SyncWrites: raftnode decides which commits to sync
// and when (see writer.go).
func openDB(cfg Config) (*badger.DB, error) {
	opts := badger.DefaultOptions(cfg.DataDir)
	if cfg.DataDir == "" {
		opts = opts.WithInMemory(true)
	}
	opts = opts.
		WithSyncWrites(false).
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
