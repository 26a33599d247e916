package fsm

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/btree"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/schema"
)

// Range answers req from the state txn sees (a read-only db.View after a
// ReadIndex, say), without raft, or from memory as Cached does. Outcomes such as COMPACTED are in the
// response's code; the error is badger's. The response's revision is the
// current one, whatever revision req reads at, as in etcd.
func (f *FSM) Range(txn *badger.Txn, req *command.RangeRequest) (*command.Response, error) {
	if resp, ok := f.Cached(req); ok {
		return resp, nil
	}
	single := cacheable(req)
	rev, compact, err := ReadRevisions(txn)
	if err != nil {
		return nil, err
	}
	resp := &command.Response{Revision: rev, CompactRevision: compact}
	rr, code, msg, err := rangeKeys(txn, req, rev, compact, f.reads.liveAt(rev))
	if err != nil {
		return nil, err
	}
	if code != command.Code_OK {
		refuse(resp, code, msg)
		return resp, nil
	}
	if single {
		if e, ok := cachedFrom(req, rr); ok {
			f.reads.fill(req.GetKey(), e, rev)
		}
	}
	resp.Response = &command.Response_Range{Range: rr}
	return resp, nil
}

// Cached answers req from memory if it reads one key at the current
// revision and the key's committed state is cached; ok is false otherwise.
// CachedPoint is the same answer without the Response.
// It needs no transaction: the answer is the state as of the newest
// commit CommitNotifier saw (so at least as new as any result already
// handed out).
func (f *FSM) Cached(req *command.RangeRequest) (resp *command.Response, ok bool) {
	if !cacheable(req) {
		return nil, false
	}
	e, rev, compact, ok := f.reads.get(req.GetKey())
	if !ok {
		return nil, false
	}
	resp = &command.Response{Revision: rev, CompactRevision: compact}
	resp.Response = &command.Response_Range{Range: rangeCached(req, e)}
	return resp, true
}

// CachedPoint is Cached's answer as a Point, with the revisions it is
// valid at.
func (f *FSM) CachedPoint(req *command.RangeRequest) (p Point, rev, compact int64, ok bool) {
	if !cacheable(req) {
		return Point{}, 0, 0, false
	}
	e, rev, compact, ok := f.reads.get(req.GetKey())
	if !ok {
		return Point{}, 0, 0, false
	}
	return pointOf(req, e), rev, compact, true
}

// checkRev tells whether revision rev (<= 0: current) may be read when the
// current revision is cur.
func checkRev(rev, cur, compact int64) (command.Code, string) {
	switch {
	case rev > cur:
		return command.Code_FUTURE_REV, fmt.Sprintf("revision %d is above the current revision %d", rev, cur)
	case rev > 0 && rev < compact:
		return command.Code_COMPACTED, fmt.Sprintf("revision %d is below the compact revision %d", rev, compact)
	}
	return command.Code_OK, ""
}

// rangeKeys answers req from r, whose current state (under s/k/) is at
// revision cur. live, if not nil, holds the live keys of that state.
func rangeKeys(r *badger.Txn, req *command.RangeRequest, cur, compact int64, live *btree.BTreeG[string]) (*command.RangeResponse, command.Code, string, error) {
	if len(req.GetKey()) == 0 && isSingle(req.GetRangeEnd()) {
		return nil, command.Code_BAD_REQUEST, "empty key", nil
	}
	if code, msg := checkRev(req.GetRevision(), cur, compact); code != command.Code_OK {
		return nil, code, msg, nil
	}
	// Sort as etcd does: KEY ASCEND is the scan order; any other target
	// with NONE means ASCEND.
	order, target := req.GetSortOrder(), req.GetSortTarget()
	if target != command.RangeRequest_KEY && order == command.RangeRequest_NONE {
		order = command.RangeRequest_ASCEND
	}
	if target == command.RangeRequest_KEY && order == command.RangeRequest_ASCEND {
		order = command.RangeRequest_NONE
	}
	sorted := order != command.RangeRequest_NONE
	limit := req.GetLimit()
	// Unsorted, the scan stops decoding after limit+1 matches (the extra
	// one sets more); sorted with a limit, it keeps every match's metadata
	// and fetches the values of the survivors only. Sorted without one,
	// every match survives: its value is read in the scan, not again.
	withValue := !req.GetKeysOnly()
	if sorted {
		withValue = target == command.RangeRequest_VALUE || (withValue && limit == 0)
	}
	resp := &command.RangeResponse{}
	visit := func(k []byte, load func(withValue bool) (record, error)) error {
		resp.Count++
		if req.GetCountOnly() || (!sorted && limit > 0 && int64(len(resp.Kvs)) > limit) {
			return nil
		}
		rec, err := load(withValue)
		if err != nil {
			return err
		}
		if !filter(req, &rec) {
			return nil
		}
		resp.Kvs = append(resp.Kvs, rec.kv(bytes.Clone(k), rec.value))
		return nil
	}
	at := req.GetRevision()
	var err error
	current := at <= 0 || at == cur
	switch {
	case current && live != nil && req.GetCountOnly() && !hasBounds(req):
		resp.Count = countKeys(live, req.GetKey(), req.GetRangeEnd())
	case current:
		if keys, ok := listKeys(live, req.GetKey(), req.GetRangeEnd()); ok {
			// Each record is read only if visit needs it.
			var kb []byte
			for _, k := range keys {
				kb = append(kb[:0], k...)
				err = visit(kb, func(withValue bool) (record, error) {
					item, err := getListed(r, schema.KVKey(nil, kb))
					if err != nil {
						return record{}, err
					}
					return itemRecord(item, withValue)
				})
				if err != nil {
					break
				}
			}
			break
		}
		err = scanCurrent(r, req.GetKey(), req.GetRangeEnd(), func(k []byte, item *badger.Item) error {
			return visit(k, func(withValue bool) (record, error) { return itemRecord(item, withValue) })
		})
	default:
		err = scanAt(r, req.GetKey(), req.GetRangeEnd(), at, func(k []byte, ev int64) error {
			return visit(k, func(withValue bool) (record, error) { return recordAt(r, k, ev, withValue) })
		})
	}
	if err != nil {
		return nil, 0, "", err
	}
	if sorted {
		sortKVs(resp.Kvs, order, target)
	}
	if limit > 0 && int64(len(resp.Kvs)) > limit {
		resp.Kvs, resp.More = resp.Kvs[:limit:limit], true
	}
	switch {
	case req.GetKeysOnly():
		for _, kv := range resp.Kvs {
			kv.Value = nil
		}
	case sorted && !withValue:
		if err := fillValues(r, resp.Kvs, at <= 0 || at == cur); err != nil {
			return nil, 0, "", err
		}
	}
	return resp, command.Code_OK, "", nil
}

// itemRecord decodes the record of an s/k/ or s/h/ item; the value is
// copied if withValue, else dropped.
func itemRecord(item *badger.Item, withValue bool) (record, error) {
	var rec record
	err := item.Value(func(v []byte) error {
		var err error
		if rec, err = parseRecord(v); err != nil {
			return err
		}
		if withValue {
			rec.value = bytes.Clone(rec.value)
		} else {
			rec.value = nil
		}
		return nil
	})
	return rec, err
}

// hasBounds tells whether req filters by revisions.
func hasBounds(req *command.RangeRequest) bool {
	return req.GetMinModRevision() > 0 || req.GetMaxModRevision() > 0 ||
		req.GetMinCreateRevision() > 0 || req.GetMaxCreateRevision() > 0
}

// filter applies the request's revision bounds.
func filter(req *command.RangeRequest, rec *record) bool {
	out := func(v, lo, hi int64) bool { return (lo > 0 && v < lo) || (hi > 0 && v > hi) }
	return !out(rec.mod, req.GetMinModRevision(), req.GetMaxModRevision()) &&
		!out(rec.create, req.GetMinCreateRevision(), req.GetMaxCreateRevision())
}

// sortKVs sorts kvs, which are in key order, stably: ties keep key order.
func sortKVs(kvs []*command.KeyValue, order command.RangeRequest_SortOrder, target command.RangeRequest_SortTarget) {
	var c func(a, b *command.KeyValue) int
	switch target {
	case command.RangeRequest_KEY:
		c = func(a, b *command.KeyValue) int { return bytes.Compare(a.Key, b.Key) }
	case command.RangeRequest_VERSION:
		c = func(a, b *command.KeyValue) int { return cmp.Compare(a.Version, b.Version) }
	case command.RangeRequest_CREATE:
		c = func(a, b *command.KeyValue) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) }
	case command.RangeRequest_MOD:
		c = func(a, b *command.KeyValue) int { return cmp.Compare(a.ModRevision, b.ModRevision) }
	case command.RangeRequest_VALUE:
		c = func(a, b *command.KeyValue) int { return bytes.Compare(a.Value, b.Value) }
	default:
		return
	}
	if order == command.RangeRequest_DESCEND {
		asc := c
		c = func(a, b *command.KeyValue) int { return asc(b, a) }
	}
	slices.SortStableFunc(kvs, c)
}

// fillValues reads the values of kvs from the current state or from the
// history.
func fillValues(r *badger.Txn, kvs []*command.KeyValue, current bool) error {
	for _, kv := range kvs {
		var rec record
		var err error
		if current {
			var found bool
			rec, found, err = currentRecord(r, kv.Key)
			if err == nil && !found {
				err = errBadRecord
			}
		} else {
			rec, err = recordAt(r, kv.Key, kv.ModRevision, true)
		}
		if err != nil {
			return err
		}
		kv.Value = rec.value
	}
	return nil
}

// currentRecord reads key's current record with its value.
func currentRecord(r *badger.Txn, key []byte) (record, bool, error) {
	return current(r, nil, key, true)
}
