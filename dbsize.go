package concord

import (
	"io/fs"
	"path/filepath"
	"sync"
	"time"
)

// dbSize measures the disk space a node's badger files take, as du counts
// it: badger preallocates its value-log and memtable files sparsely, so
// their lengths say little, and its own Size is first measured a minute
// after it opens. Each measure serves for a second.
type dbSize struct {
	dir string // "" in memory

	mu sync.Mutex
	at time.Time // of the last measure
	n  int64
}

const dbSizeEvery = time.Second

func (d *dbSize) get() int64 {
	if d.dir == "" {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.at.IsZero() && time.Since(d.at) < dbSizeEvery {
		return d.n
	}
	var n int64
	err := filepath.WalkDir(d.dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil // a file removed meanwhile (a compaction) counts nothing
		}
		if fi, err := e.Info(); err == nil {
			n += allocated(fi)
		}
		return nil
	})
	if err == nil {
		d.n, d.at = n, time.Now()
	}
	return d.n
}
