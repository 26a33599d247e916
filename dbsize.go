package concord

import (
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// dbSize measures the disk space a node's badger files take, as du counts
// it: badger preallocates its value-log and memtable files sparsely, so
// their lengths say little, and its own Size is first measured a minute
// after it opens. Each measure serves for a second; Status is on hot
// paths (Queue.Enqueue reads the revision from it), so reading a fresh
// measure takes two atomic loads, and one caller at a time measures
// while the others take the last measure.
type dbSize struct {
	dir  string    // "" in memory
	base time.Time // at is counted from base, on the monotonic clock

	mu sync.Mutex   // held while measuring
	at atomic.Int64 // nanoseconds from base to the last measure, plus 1; 0 before the first
	n  atomic.Int64
}

func newDBSize(dir string) *dbSize { return &dbSize{dir: dir, base: time.Now()} }

const dbSizeEvery = time.Second

func (d *dbSize) get() int64 {
	if d.dir == "" {
		return 0
	}
	at := d.at.Load()
	if at != 0 && time.Since(d.base)-time.Duration(at-1) < dbSizeEvery {
		return d.n.Load()
	}
	if at != 0 && !d.mu.TryLock() {
		return d.n.Load() // another caller is measuring
	}
	if at == 0 {
		d.mu.Lock() // the first measure: wait for it rather than report 0
	}
	defer d.mu.Unlock()
	if at2 := d.at.Load(); at2 != at {
		return d.n.Load() // measured meanwhile
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
		d.n.Store(n)
		d.at.Store(int64(time.Since(d.base)) + 1)
	}
	return d.n.Load()
}
