package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/schema"
)

// Claim and Add are read-modify-write commands built from puts, so their
// writes, events, history and lease links are a put's. Like a txn's ops,
// each is first checked against the state before the command (and chooses
// what it writes: the claimed key, the new value), then run; a refused one
// writes nothing. The choice travels from check to run in exec.picks, in
// the order both passes walk the ops.

// pick is what the check of a Claim or Add chose for its run.
type pick struct {
	key    []byte // the key claimed or added to; nil = nothing free
	marker []byte // the claimed key's marker
	value  int64  // Add: the new value
	found  bool   // Add: the key exists
}

func (e *exec) pushPick(p pick) { e.picks = append(e.picks, p) }

func (e *exec) popPick() pick {
	p := e.picks[0]
	e.picks = e.picks[1:]
	return p
}

// ClaimOverlaps tells whether a claim's markers may fall in its range of
// candidates (key, end as in a RangeRequest; the candidates also start
// with key): for one key, whether marker is key; for a range, whether the
// keys starting with marker meet the candidates' span.
func ClaimOverlaps(key, end, marker []byte) bool {
	if isSingle(end) {
		return bytes.Equal(key, marker)
	}
	lo, hi := claimSpan(key, end)
	if hi != nil && bytes.Compare(lo, hi) >= 0 {
		return false // no candidate at all
	}
	mhi := prefixEnd(marker)
	return (hi == nil || bytes.Compare(marker, hi) < 0) && (mhi == nil || bytes.Compare(lo, mhi) < 0)
}

// claimSpan is the span [lo, hi) of a claim's candidates over a range:
// the range cut to the keys starting with key. hi nil = no end.
func claimSpan(key, end []byte) (lo, hi []byte) {
	hi = prefixEnd(key)
	if !isFromKey(end) && (hi == nil || bytes.Compare(end, hi) < 0) {
		hi = end
	}
	return key, hi
}

// prefixEnd is the end of the keys starting with p; nil if none (p empty
// or all 0xff).
func prefixEnd(p []byte) []byte {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] < 0xff {
			end := bytes.Clone(p[:i+1])
			end[i]++
			return end
		}
	}
	return nil
}

// checkAlone runs the check of a standalone Claim or Add on a plan of its
// own.
func checkAlone(check func(*plan) (command.Code, string, error)) (command.Code, string, error) {
	p := &plan{leased: leaseUse{}}
	p.b.add(1, 32) // the revision
	return check(p)
}

// claimTop runs a standalone Claim.
func (e *exec) claimTop(c *command.ClaimRequest) (*command.ClaimResponse, command.Code, string, error) {
	check := func(p *plan) (command.Code, string, error) { return e.checkClaim(c, p) }
	if code, msg, err := checkAlone(check); err != nil || code != command.Code_OK {
		return nil, code, msg, err
	}
	resp, err := e.runClaim(c)
	return resp, command.Code_OK, "", err
}

// checkClaim validates c and chooses its candidate, against the state
// before the command; it adds the writes to p.
func (e *exec) checkClaim(c *command.ClaimRequest, p *plan) (command.Code, string, error) {
	key, end, marker := c.GetKey(), c.GetRangeEnd(), c.GetMarker()
	switch {
	case len(key) == 0 && isSingle(end):
		return command.Code_BAD_REQUEST, "empty key", nil
	case len(marker) == 0:
		return command.Code_BAD_REQUEST, "empty marker", nil
	case len(key) > MaxKeySize || len(marker) > MaxKeySize:
		return command.Code_TOO_LARGE, fmt.Sprintf("key or marker over %d bytes", MaxKeySize), nil
	case len(c.GetValue()) > MaxValueSize:
		return command.Code_TOO_LARGE, fmt.Sprintf("value of %d bytes exceeds %d", len(c.GetValue()), MaxValueSize), nil
	case ClaimOverlaps(key, end, marker):
		return command.Code_BAD_REQUEST, "the claim's markers overlap its candidates", nil
	}
	if id := c.GetLease(); id != 0 {
		// Checked even when nothing is free: a claimer learns its lease is
		// gone rather than wait.
		s, err := e.lease(id)
		if err != nil {
			return 0, "", err
		}
		if !s.found {
			return command.Code_LEASE_NOT_FOUND, fmt.Sprintf("lease %d not found", id), nil
		}
	}
	k, m, kval, err := e.findFree(key, end, marker)
	if err != nil || k == nil {
		e.pushPick(pick{})
		return command.Code_OK, "", err
	}
	if len(m) > MaxKeySize {
		return command.Code_TOO_LARGE, fmt.Sprintf("marker of %d bytes exceeds %d", len(m), MaxKeySize), nil
	}
	if c.GetLease() != 0 {
		if code, msg, err := e.checkAttach(c.GetLease(), 0, m, p.leased); err != nil || code != command.Code_OK {
			return code, msg, err
		}
	}
	if !p.b.add(putCost(k, kval)) || !p.b.add(putCost(m, c.GetValue())) {
		return command.Code_TOO_LARGE, tooLargeMsg, nil
	}
	p.puts = append(p.puts, k, m)
	e.pushPick(pick{key: k, marker: m})
	return command.Code_OK, "", nil
}

// findFree returns the first candidate of a claim whose marker does not
// exist, its marker and its value's length in bytes (as a slice, for
// putCost); k nil if none. k and m are the command's to keep.
//
// It walks the live keys of the claim's span in order, from the live
// index: never badger's deleted keys, which a queue's acked messages
// leave at its head, between its in-flight claims and between its
// priority bands.
func (e *exec) findFree(key, end, marker []byte) (k, m, kval []byte, err error) {
	var cands []string
	if isSingle(end) {
		if e.f.live.t.Has(string(key)) {
			cands = []string{string(key)}
		}
	} else {
		lo, hi := claimSpan(key, end) // hi nil: no end
		visit := func(cand string) bool {
			var mk []byte
			mk, err = e.freeMarker(cand, key, marker)
			if err != nil || mk == nil {
				return err == nil
			}
			cands, m = []string{cand}, mk
			return false
		}
		if hi == nil {
			e.f.live.t.AscendGreaterOrEqual(string(lo), visit)
		} else {
			e.f.live.t.AscendRange(string(lo), string(hi), visit)
		}
		if err != nil || cands == nil {
			return nil, nil, nil, err
		}
	}
	if len(cands) == 0 {
		return nil, nil, nil, nil
	}
	if m == nil {
		if m, err = e.freeMarker(cands[0], key, marker); err != nil || m == nil {
			return nil, nil, nil, err
		}
	}
	k = append(e.f.arena.alloc(len(cands[0])), cands[0]...)
	item, err := getListed(e.r, schema.KVKey(nil, k))
	if err != nil {
		return nil, nil, nil, err
	}
	return k, m, make([]byte, item.ValueSize()), nil // the value's size, an upper bound
}

// freeMarker returns candidate cand's marker if it does not exist, nil
// if it does.
func (e *exec) freeMarker(cand string, key, marker []byte) ([]byte, error) {
	mk := append(append(e.f.arena.alloc(len(marker)+len(cand)-len(key)), marker...), cand[len(key):]...)
	taken, err := e.exists(mk)
	if err != nil || taken {
		return nil, err
	}
	return mk, nil
}

// exists tells whether key is live, from the kvCache or badger.
func (e *exec) exists(key []byte) (bool, error) {
	if v, ok := e.f.cache.m[string(key)]; ok {
		return v.found, nil
	}
	_, err := e.r.Get(schema.KVKey(e.f.arena.alloc(len(schema.StateKV)+len(key)), key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// runClaim writes what checkClaim chose: the touch of the key, then its
// marker.
func (e *exec) runClaim(c *command.ClaimRequest) (*command.ClaimResponse, error) {
	pk := e.popPick()
	resp := &command.ClaimResponse{}
	if pk.key == nil {
		return resp, nil
	}
	touch := &command.PutRequest{Key: pk.key, IgnoreValue: true, IgnoreLease: true}
	_, rec, _, _, err := e.putRecord(touch, false)
	if err != nil {
		return nil, err
	}
	resp.Kv = rec.kv(pk.key, rec.value)
	mark := &command.PutRequest{Key: pk.marker, Value: c.GetValue(), Lease: c.GetLease()}
	if _, rec, _, _, err = e.putRecord(mark, false); err != nil {
		return nil, err
	}
	resp.Marker = rec.kv(pk.marker, rec.value)
	return resp, nil
}

// addTop runs a standalone Add.
func (e *exec) addTop(a *command.AddRequest) (*command.AddResponse, command.Code, string, error) {
	check := func(p *plan) (command.Code, string, error) { return e.checkAdd(a, p) }
	if code, msg, err := checkAlone(check); err != nil || code != command.Code_OK {
		return nil, code, msg, err
	}
	resp, err := e.runAdd(a)
	return resp, command.Code_OK, "", err
}

// checkAdd validates a and computes the new value, against the state
// before the command; it adds the write to p.
func (e *exec) checkAdd(a *command.AddRequest, p *plan) (command.Code, string, error) {
	key := a.GetKey()
	switch {
	case len(key) == 0:
		return command.Code_BAD_REQUEST, "empty key", nil
	case len(key) > MaxKeySize:
		return command.Code_TOO_LARGE, fmt.Sprintf("key of %d bytes exceeds %d", len(key), MaxKeySize), nil
	}
	cur, found, err := e.current(key, true)
	if err != nil {
		return 0, "", err
	}
	var old int64
	if found && len(cur.value) > 0 {
		if old, err = strconv.ParseInt(string(cur.value), 10, 64); err != nil {
			return command.Code_BAD_REQUEST, fmt.Sprintf("value of %q is not a base-10 int64", key), nil
		}
	}
	d := a.GetDelta()
	if (d > 0 && old > math.MaxInt64-d) || (d < 0 && old < math.MinInt64-d) {
		return command.Code_BAD_REQUEST, fmt.Sprintf("%d + %d overflows int64", old, d), nil
	}
	if id := a.GetLease(); id != 0 {
		if code, msg, err := e.checkAttach(id, cur.lease, key, p.leased); err != nil || code != command.Code_OK {
			return code, msg, err
		}
	}
	v := old + d
	if !p.b.add(putCost(key, strconv.AppendInt(nil, v, 10))) {
		return command.Code_TOO_LARGE, tooLargeMsg, nil
	}
	p.puts = append(p.puts, key)
	e.pushPick(pick{key: key, value: v, found: found})
	return command.Code_OK, "", nil
}

// runAdd writes what checkAdd computed.
func (e *exec) runAdd(a *command.AddRequest) (*command.AddResponse, error) {
	pk := e.popPick()
	v := strconv.AppendInt(e.f.arena.alloc(20), pk.value, 10)
	p := &command.PutRequest{Key: pk.key, Value: v, Lease: a.GetLease(), IgnoreLease: a.GetLease() == 0 && pk.found}
	_, rec, _, _, err := e.putRecord(p, false)
	if err != nil {
		return nil, err
	}
	return &command.AddResponse{Value: pk.value, Kv: rec.kv(pk.key, rec.value)}, nil
}
