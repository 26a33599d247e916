package fsm

import (
	"bytes"
	"sync"

	"github.com/google/btree"

	"github.com/concordkv/concord/internal/command"
)

// readCache answers single-key reads of the current state from memory, for
// any goroutine. It holds committed records of recently written or read
// keys, exact as of rev: Committed folds in, in apply order, every record
// the kvCache saw during the batch (a write or a read inside apply, both
// the key's state at that point), then moves rev. A key may be missing at
// any time; a read that misses goes to badger and may fill it in.
//
// A linearizable read runs only once the batch holding its read index is
// committed and folded (raftnode releases reads after CommitNotifier), so
// the cache is never behind what it must see.
type readCache struct {
	mu           sync.RWMutex
	rev, compact int64 // the committed revisions the entries describe; 0 = none yet
	m            map[string]cached
	bytes        int
	live         *btree.BTreeG[string] // the live keys at rev; nil if unknown; never changed
}

// liveAt returns the live keys of the state at revision rev, or nil if
// the cache does not know them at rev.
func (c *readCache) liveAt(rev int64) *btree.BTreeG[string] {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.rev != rev {
		return nil
	}
	return c.live
}

// get returns key's cached record with the revisions it is valid at.
func (c *readCache) get(key []byte) (e cached, rev, compact int64, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.rev == 0 {
		return cached{}, 0, 0, false
	}
	e, ok = c.m[string(key)]
	if ok && e.found && !e.hasValue {
		ok = false
	}
	return e, c.rev, c.compact, ok
}

// fill records key's state as read from badger at revision rev, unless the
// cache has moved past rev meanwhile or already knows the key (a fold
// put it there, newer than or as new as this read).
func (c *readCache) fill(key []byte, e cached, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rev != rev || c.rev == 0 {
		return
	}
	if _, ok := c.m[string(key)]; ok {
		return
	}
	c.setLocked(key, e)
}

// fold applies a batch's log, in order, and moves the cache to rev; if
// liveChanged, live is the set of live keys at rev.
func (c *readCache) fold(log []logged, rev, compact int64, live *btree.BTreeG[string], liveChanged bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if liveChanged {
		c.live = live
	}
	for i := range log {
		c.setLocked(log[i].key, log[i].e)
	}
	c.rev, c.compact = rev, compact
}

// reset forgets every entry and sets the revisions (0: unknown).
func (c *readCache) reset(rev, compact int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m, c.bytes, c.live = nil, 0, nil
	c.rev, c.compact = rev, compact
}

// start sets the revisions read at start-up, unless a fold came first.
func (c *readCache) start(rev, compact int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rev == 0 && len(c.m) == 0 {
		c.rev, c.compact = rev, compact
	}
}

func (c *readCache) setLocked(key []byte, e cached) {
	if e.found && !e.hasValue {
		// Only the metadata is known: forget the key rather than keep a
		// record that cannot answer a read.
		if old, ok := c.m[string(key)]; ok {
			c.bytes -= len(key) + len(old.rec.value) + 64
			delete(c.m, string(key))
		}
		return
	}
	if c.m == nil || len(c.m) >= cacheMaxKeys || c.bytes >= cacheMaxBytes {
		c.m, c.bytes = make(map[string]cached, 1024), 0
	}
	if old, ok := c.m[string(key)]; ok {
		c.bytes -= len(key) + len(old.rec.value) + 64
	}
	c.m[string(key)] = e
	c.bytes += len(key) + len(e.rec.value) + 64
}

// cacheable tells whether req reads one key at the current revision, which
// the readCache can answer.
func cacheable(req *command.RangeRequest) bool {
	return len(req.GetKey()) > 0 && isSingle(req.GetRangeEnd()) && req.GetRevision() <= 0
}

// Point is a single-key read's answer from the read cache.
type Point struct {
	Count int64 // 1 if the key exists
	// KV tells whether a key-value is returned: the key exists, passes
	// the request's revision filters and the request is not count-only.
	KV                          bool
	Create, Mod, Version, Lease int64
	// Value is the cache's own copy, to copy and never modify; nil with
	// keys-only.
	Value []byte
}

// pointOf answers a cacheable req from e, as rangeKeys would from badger.
func pointOf(req *command.RangeRequest, e cached) Point {
	if !e.found {
		return Point{}
	}
	p := Point{Count: 1}
	if req.GetCountOnly() || !filter(req, &e.rec) {
		return p
	}
	p.KV, p.Create, p.Mod, p.Version, p.Lease = true, e.rec.create, e.rec.mod, e.rec.version, e.rec.lease
	if !req.GetKeysOnly() {
		p.Value = e.rec.value
	}
	return p
}

// rangeCached answers a cacheable req from e, as rangeKeys would from
// badger.
func rangeCached(req *command.RangeRequest, e cached) *command.RangeResponse {
	p := pointOf(req, e)
	rr := &command.RangeResponse{Count: p.Count}
	if p.KV {
		// Callers own what they get.
		rr.Kvs = []*command.KeyValue{{Key: bytes.Clone(req.GetKey()), Value: bytes.Clone(p.Value),
			CreateRevision: p.Create, ModRevision: p.Mod, Version: p.Version, Lease: p.Lease}}
	}
	return rr
}

// cachedFrom is the cache entry for what a cacheable read of badger found,
// and whether it may be cached: only with the value.
func cachedFrom(req *command.RangeRequest, rr *command.RangeResponse) (cached, bool) {
	switch {
	case rr.GetCount() == 0:
		return cached{found: false, hasValue: true}, true
	case len(rr.GetKvs()) != 1 || req.GetKeysOnly():
		return cached{}, false
	}
	kv := rr.GetKvs()[0]
	if len(kv.GetValue()) > cacheMaxValue {
		return cached{}, false
	}
	rec := record{kind: kindPut, create: kv.GetCreateRevision(), mod: kv.GetModRevision(),
		version: kv.GetVersion(), lease: kv.GetLease(), value: bytes.Clone(kv.GetValue())}
	return cached{rec: rec, found: true, hasValue: true}, true
}
