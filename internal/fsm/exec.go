package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/schema"
	"github.com/concordkv/concord/raftnode"
)

// One command's writes are kept within a budget, so that it fits in one
// badger transaction (about 5 MB and 52k entries with raftnode's options)
// beside what raftnode lets accumulate before it: raftnode commits between
// commands once a transaction holds about 1 MiB. Costs are estimated before
// anything is written; a command over budget is refused with TOO_LARGE, the
// same way on every peer. A put of the largest key and value fits.
const (
	maxCommandWrites = 16 << 10
	maxCommandBytes  = 5 << 19 // 2.5 MiB
)

// putCost and delCost estimate the entries and bytes a put or a delete of
// one key adds to the transaction.
// Both count the key's detaching from (and a put's attaching to) a lease.
func putCost(key, value []byte) (int, int) { return 6, 2*len(value) + 6*len(key) + 160 }
func delCost(key []byte) (int, int)        { return 5, 5*len(key) + 112 }

// budget accumulates a command's estimated writes.
type budget struct{ writes, bytes int }

func (b *budget) add(writes, bytes int) bool {
	b.writes += writes
	b.bytes += bytes
	return b.writes <= maxCommandWrites && b.bytes <= maxCommandBytes
}

// errOverBudget is returned by scans that stop at the budget.
var errOverBudget = errors.New("fsm: over budget")

const tooLargeMsg = "the command writes too much for one transaction"

// exec runs one command inside an Apply.
type exec struct {
	f     *FSM
	txn   *raftnode.Txn
	r     *badger.Txn
	next  int64 // the revision the command's writes get
	wrote bool
	evAt  int // the command's first event in f.events

	leases   map[int64]*leaseState // lease records read or changed
	revoking int64                 // the lease being revoked, if any
	picks    []pick                // what Claims and Adds chose (claim.go)
}

// viewRev is the revision of the current state exec sees: its own writes
// are visible.
func (e *exec) viewRev() int64 {
	if e.wrote {
		return e.next
	}
	return e.f.rev
}

// apply executes req, filling resp. Only badger failures are errors.
func (f *FSM) apply(txn *raftnode.Txn, req *command.Request, resp *command.Response) error {
	e := &exec{f: f, txn: txn, r: txn.Badger(), next: f.rev + 1, evAt: len(f.events)}
	var (
		code command.Code
		msg  string
		err  error
	)
	switch r := req.GetRequest().(type) {
	case *command.Request_Range:
		var rr *command.RangeResponse
		rr, code, msg, err = rangeKeys(e.r, r.Range, e.viewRev(), f.compact, f.live.t)
		resp.Response = &command.Response_Range{Range: rr}
	case *command.Request_Put:
		var pr *command.PutResponse
		pr, code, msg, err = e.put(r.Put, true)
		resp.Response = &command.Response_Put{Put: pr}
	case *command.Request_DeleteRange:
		var dr *command.DeleteRangeResponse
		dr, code, msg, err = e.deleteRange(r.DeleteRange)
		resp.Response = &command.Response_DeleteRange{DeleteRange: dr}
	case *command.Request_Txn:
		var tr *command.TxnResponse
		tr, code, msg, err = e.txnTop(r.Txn)
		resp.Response = &command.Response_Txn{Txn: tr}
	case *command.Request_Claim:
		var cr *command.ClaimResponse
		cr, code, msg, err = e.claimTop(r.Claim)
		resp.Response = &command.Response_Claim{Claim: cr}
	case *command.Request_Add:
		var ar *command.AddResponse
		ar, code, msg, err = e.addTop(r.Add)
		resp.Response = &command.Response_Add{Add: ar}
	case *command.Request_Compaction:
		code, msg, err = e.compaction(r.Compaction)
		resp.Response = &command.Response_Compaction{Compaction: &command.CompactionResponse{}}
	case *command.Request_LeaseGrant:
		var gr *command.LeaseGrantResponse
		gr, code, msg, err = e.grant(r.LeaseGrant)
		resp.Response = &command.Response_LeaseGrant{LeaseGrant: gr}
	case *command.Request_LeaseRevoke:
		var rr *command.LeaseRevokeResponse
		rr, code, msg, err = e.revoke(r.LeaseRevoke.GetId())
		resp.Response = &command.Response_LeaseRevoke{LeaseRevoke: rr}
	case *command.Request_LeaseExpire:
		var rr *command.LeaseRevokeResponse
		rr, code, msg, err = e.expire(r.LeaseExpire)
		resp.Response = &command.Response_LeaseExpire{LeaseExpire: rr}
	case *command.Request_LeaseCheckpoint:
		code, msg, err = e.checkpoint(r.LeaseCheckpoint)
		resp.Response = &command.Response_LeaseCheckpoint{LeaseCheckpoint: &command.LeaseCheckpointResponse{}}
	default:
		code, msg = command.Code_BAD_REQUEST, "unknown or empty command"
	}
	if err != nil {
		return err
	}
	if code != command.Code_OK {
		refuse(resp, code, msg)
	}
	return e.finish()
}

// finish writes back the changed lease records, records a written
// revision and orders its events.
func (e *exec) finish() error {
	if err := e.writeLeases(); err != nil {
		return err
	}
	if !e.wrote {
		return nil
	}
	e.f.rev, e.f.dirty = e.next, true
	if ev := e.f.events[e.evAt:]; len(ev) > 1 {
		slices.SortFunc(ev, func(a, b *command.Event) int { return bytes.Compare(a.Kv.Key, b.Kv.Key) })
	}
	return nil
}

// current reads key's current record; the value is copied if withValue.
func current(r *badger.Txn, a *arena, key []byte, withValue bool) (record, bool, error) {
	var k []byte
	if a != nil {
		k = schema.KVKey(a.alloc(len(schema.StateKV)+len(key)), key)
	} else {
		k = schema.KVKey(nil, key)
	}
	item, err := r.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, err
	}
	rec, err := itemRecord(item, withValue)
	return rec, err == nil, err
}

// checkPut tells whether p may run with the key's current state cur;
// use counts what a txn attached to leases before p (nil outside a txn).
func (e *exec) checkPut(p *command.PutRequest, cur record, found bool, use leaseUse) (command.Code, string, error) {
	if code, msg := e.checkPutArgs(p, found); code != command.Code_OK {
		return code, msg, nil
	}
	if p.GetLease() == 0 {
		return command.Code_OK, "", nil
	}
	return e.checkAttach(p.GetLease(), cur.lease, p.GetKey(), use)
}

// checkPutArgs checks what p says, the key's existence aside.
func (e *exec) checkPutArgs(p *command.PutRequest, found bool) (command.Code, string) {
	switch {
	case len(p.GetKey()) == 0:
		return command.Code_BAD_REQUEST, "empty key"
	case len(p.GetKey()) > MaxKeySize:
		return command.Code_TOO_LARGE, fmt.Sprintf("key of %d bytes exceeds %d", len(p.GetKey()), MaxKeySize)
	case len(p.GetValue()) > MaxValueSize:
		return command.Code_TOO_LARGE, fmt.Sprintf("value of %d bytes exceeds %d", len(p.GetValue()), MaxValueSize)
	case p.GetIgnoreValue() && len(p.GetValue()) != 0:
		return command.Code_BAD_REQUEST, "value given with ignore_value"
	case p.GetIgnoreLease() && p.GetLease() != 0:
		return command.Code_BAD_REQUEST, "lease given with ignore_lease"
	case (p.GetIgnoreValue() || p.GetIgnoreLease()) && !found:
		return command.Code_KEY_NOT_FOUND, "key not found"
	}
	return command.Code_OK, ""
}

// put runs p; check is false when a txn has checked it already.
func (e *exec) put(p *command.PutRequest, check bool) (*command.PutResponse, command.Code, string, error) {
	resp, _, code, msg, err := e.putRecord(p, check)
	return resp, code, msg, err
}

// putRecord runs p as put does and also returns the record written.
func (e *exec) putRecord(p *command.PutRequest, check bool) (*command.PutResponse, record, command.Code, string, error) {
	f := e.f
	withValue := p.GetPrevKv() || p.GetIgnoreValue() || f.cfg.OnCommit != nil
	cur, found, err := e.current(p.GetKey(), withValue)
	if err != nil {
		return nil, record{}, 0, "", err
	}
	if check {
		if code, msg, err := e.checkPut(p, cur, found, nil); err != nil || code != command.Code_OK {
			return nil, record{}, code, msg, err
		}
	}
	key := p.GetKey()
	rec := record{kind: kindPut, mod: e.next, lease: p.GetLease(), value: p.GetValue(), create: e.next, version: 1}
	if found {
		rec.create, rec.version, rec.prev = cur.create, cur.version+1, cur.mod
		if p.GetIgnoreValue() {
			rec.value = cur.value
		}
		if p.GetIgnoreLease() {
			rec.lease = cur.lease
		}
	}
	var old int64
	if found {
		old = cur.lease
	}
	if err := e.relink(key, old, rec.lease); err != nil {
		return nil, record{}, 0, "", err
	}
	b := appendRecord(f.arena.alloc(recordLen(rec.value)), &rec)
	if err := e.set(schema.KVKey(f.arena.alloc(len(schema.StateKV)+len(key)), key), b); err != nil {
		return nil, record{}, 0, "", err
	}
	if err := e.record(key, b, putMark); err != nil {
		return nil, record{}, 0, "", err
	}
	f.cache.put(key, rec, true, true)
	if !found {
		f.live.created(key)
	}
	resp := &command.PutResponse{}
	var prev *command.KeyValue
	if found {
		prev = cur.kv(key, cur.value)
	}
	if p.GetPrevKv() {
		resp.PrevKv = prev
	}
	if f.cfg.OnCommit != nil {
		f.events = append(f.events, &command.Event{Type: command.Event_PUT, Kv: rec.kv(key, rec.value), PrevKv: prev})
	}
	return resp, rec, command.Code_OK, "", nil
}

// record writes the history and index entries of key's event at e.next.
func (e *exec) record(key, rec, mark []byte) error {
	a := &e.f.arena
	hk := schema.HistoryKey(a.alloc(len(schema.StateHistory)+8+len(key)), e.next, key)
	if err := e.set(hk, rec); err != nil {
		return err
	}
	n := len(schema.StateIndex) + len(key) + bytes.Count(key, []byte{0}) + 10
	e.wrote = true
	return e.set(schema.IndexKey(a.alloc(n), key, e.next), mark)
}

func (e *exec) set(k, v []byte) error { return e.txn.Set(k, v) }

// deleteRange runs a standalone delete: it collects the keys within the
// budget first, so that an oversized one writes nothing.
func (e *exec) deleteRange(d *command.DeleteRangeRequest) (*command.DeleteRangeResponse, command.Code, string, error) {
	if len(d.GetKey()) == 0 && len(d.GetRangeEnd()) == 0 {
		return nil, command.Code_BAD_REQUEST, "empty key", nil
	}
	var b budget
	b.add(1, 32) // the revision
	victims, err := e.collect(d.GetKey(), d.GetRangeEnd(), &b)
	if errors.Is(err, errOverBudget) {
		return nil, command.Code_TOO_LARGE, tooLargeMsg, nil
	}
	if err != nil {
		return nil, 0, "", err
	}
	resp, err := e.deleteKeys(victims, d.GetPrevKv())
	return resp, command.Code_OK, "", err
}

// victim is a key to delete and its current record (value copied).
type victim struct {
	key []byte
	rec record
}

// collect returns the live keys of the range with their records, adding
// their cost to b (if not nil); errOverBudget if it overflows.
func (e *exec) collect(key, end []byte, b *budget) ([]victim, error) {
	var out []victim
	err := e.scan(key, end, func(k []byte, item *badger.Item) error {
		if b != nil && !b.add(delCost(k)) {
			return errOverBudget
		}
		v := victim{key: append(e.f.arena.alloc(len(k)), k...)}
		return item.Value(func(val []byte) error {
			var err error
			if v.rec, err = parseRecord(val); err == nil {
				v.rec.value = bytes.Clone(v.rec.value)
				out = append(out, v)
			}
			return err
		})
	})
	return out, err
}

// deleteKeys deletes victims at e.next.
func (e *exec) deleteKeys(victims []victim, prevKV bool) (*command.DeleteRangeResponse, error) {
	f := e.f
	resp := &command.DeleteRangeResponse{Deleted: int64(len(victims))}
	for i := range victims {
		v := &victims[i]
		if err := e.txn.Delete(schema.KVKey(f.arena.alloc(len(schema.StateKV)+len(v.key)), v.key)); err != nil {
			return nil, err
		}
		if v.rec.lease != 0 {
			if err := e.detach(v.rec.lease, v.key); err != nil {
				return nil, err
			}
		}
		tomb := record{kind: kindDelete, mod: e.next, prev: v.rec.mod}
		if err := e.record(v.key, appendRecord(f.arena.alloc(recordLen(nil)), &tomb), delMark); err != nil {
			return nil, err
		}
		f.cache.put(v.key, record{}, false, true)
		f.live.deleted(v.key)
		prev := v.rec.kv(v.key, v.rec.value)
		if prevKV {
			resp.PrevKvs = append(resp.PrevKvs, prev)
		}
		if f.cfg.OnCommit != nil {
			kv := &command.KeyValue{Key: v.key, ModRevision: e.next}
			f.events = append(f.events, &command.Event{Type: command.Event_DELETE, Kv: kv, PrevKv: prev})
		}
	}
	return resp, nil
}

// compaction runs a Compact: it moves the compact revision; the sweep
// then removes the history below it, a little per write.
func (e *exec) compaction(c *command.CompactionRequest) (command.Code, string, error) {
	f := e.f
	rev := c.GetRevision()
	if rev <= f.compact {
		return command.Code_COMPACTED, fmt.Sprintf("revision %d is at or below the compact revision %d", rev, f.compact), nil
	}
	if rev > f.rev {
		return command.Code_FUTURE_REV, fmt.Sprintf("revision %d is above the current revision %d", rev, f.rev), nil
	}
	f.compact, f.dirty = rev, true
	return command.Code_OK, "", nil
}
