package fsm

// kvCache remembers the current record of recently written or read keys,
// so that a put need not look its key up in badger (the larger part of a
// put's apply otherwise). It is exact, as seen by Apply: every change
// under s/k/ goes through exec, which updates it, and load and Restore
// clear it. It may forget anything at any time.
type kvCache struct {
	m     map[string]cached
	bytes int
	log   []logged // every put since the last Committed, for the readCache
}

// logged is one kvCache.put, in apply order.
type logged struct {
	key []byte
	e   cached
}

type cached struct {
	rec      record // value set only if hasValue; never changed
	found    bool
	hasValue bool
}

// Bounds of the cache; values above cacheMaxValue are not kept.
const (
	cacheMaxKeys  = 64 << 10
	cacheMaxBytes = 32 << 20
	cacheMaxValue = 4 << 10
)

func (c *kvCache) reset() { c.m, c.bytes, c.log = nil, 0, nil }

// put records key's current state. rec.value must not change afterwards.
func (c *kvCache) put(key []byte, rec record, found, hasValue bool) {
	if hasValue && len(rec.value) > cacheMaxValue {
		rec.value, hasValue = nil, false
	}
	c.log = append(c.log, logged{key: key, e: cached{rec: rec, found: found, hasValue: hasValue}})
	if c.m == nil || len(c.m) >= cacheMaxKeys || c.bytes >= cacheMaxBytes {
		c.m, c.bytes = make(map[string]cached, 1024), 0
	}
	if old, ok := c.m[string(key)]; ok {
		c.bytes -= len(key) + len(old.rec.value) + 64
	}
	c.m[string(key)] = cached{rec: rec, found: found, hasValue: hasValue}
	c.bytes += len(key) + len(rec.value) + 64
}

// current returns key's current record, from the cache or from r; the
// value is set if withValue.
func (e *exec) current(key []byte, withValue bool) (record, bool, error) {
	c := &e.f.cache
	if v, ok := c.m[string(key)]; ok && (!withValue || v.hasValue || !v.found) {
		return v.rec, v.found, nil
	}
	rec, found, err := current(e.r, &e.f.arena, key, true)
	if err != nil {
		return record{}, false, err
	}
	c.put(key, rec, found, true)
	return rec, found, nil
}
