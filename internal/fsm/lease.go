package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/schema"
)

// Lease is a lease as the state machine holds it.
type Lease struct {
	ID  int64
	TTL time.Duration
	// Remaining is what was left of TTL when a lessor last checkpointed the
	// lease; 0 when it was not checkpointed since it was granted or renewed.
	Remaining time.Duration
	// Keys and KeyBytes count the keys attached to the lease and their
	// total length.
	Keys, KeyBytes int64
}

// Limits of what one lease holds, so that its revoke, which deletes every
// key attached in one command, always fits one command's budget: a put
// that would go over them is refused with TOO_LARGE.
const (
	MaxLeaseKeys     = 2048
	MaxLeaseKeyBytes = 256 << 10
)

// LeaseChangeKind says what a LeaseChange is.
type LeaseChangeKind int

// Kinds of lease changes.
const (
	LeaseGranted      LeaseChangeKind = iota + 1 // ID, TTL
	LeaseRemoved                                 // ID: revoked or expired
	LeaseCheckpointed                            // ID, Remaining
)

// LeaseChange is one change to the lease table, for the lessor's mirror.
type LeaseChange struct {
	Kind           LeaseChangeKind
	ID             int64
	TTL, Remaining time.Duration
}

// LeaseCommit is what one committed batch changed in the lease table.
type LeaseCommit struct {
	Changes []LeaseChange
	// Restored tells that a snapshot replaced the whole state: read the
	// lease table again with ScanLeases.
	Restored bool
}

// leaseLen bounds the encoded length of a lease record.
const leaseLen = 4 * binary.MaxVarintLen64

func appendLease(dst []byte, l *Lease) []byte {
	dst = binary.AppendUvarint(dst, uint64(l.TTL))
	dst = binary.AppendUvarint(dst, uint64(l.Remaining))
	dst = binary.AppendUvarint(dst, uint64(l.Keys))
	return binary.AppendUvarint(dst, uint64(l.KeyBytes))
}

func parseLease(id int64, b []byte) (Lease, error) {
	d := decoder{b: b}
	l := Lease{ID: id}
	l.TTL = time.Duration(d.uvarint())
	l.Remaining = time.Duration(d.uvarint())
	l.Keys = int64(d.uvarint())
	l.KeyBytes = int64(d.uvarint())
	if d.bad || len(d.b) != 0 {
		return l, errBadRecord
	}
	return l, nil
}

// ReadLease reads lease id as seen by txn.
func ReadLease(txn *badger.Txn, id int64) (Lease, bool, error) {
	item, err := txn.Get(schema.LeaseKey(nil, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Lease{}, false, nil
	}
	if err != nil {
		return Lease{}, false, err
	}
	var l Lease
	err = item.Value(func(v []byte) error {
		l, err = parseLease(id, v)
		return err
	})
	return l, err == nil, err
}

// ScanLeases calls fn for every lease as seen by txn, in id order; an error
// from fn stops the scan and is returned.
func ScanLeases(txn *badger.Txn, fn func(Lease) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.StateLease})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		id, ok := schema.ParseLeaseKey(it.Item().Key())
		if !ok {
			return errBadRecord
		}
		var l Lease
		err := it.Item().Value(func(v []byte) error {
			var err error
			l, err = parseLease(id, v)
			return err
		})
		if err != nil {
			return err
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}

// LeaseKeys calls fn, in key order, with every key attached to lease id as
// seen by txn; key is valid only during the call.
func LeaseKeys(txn *badger.Txn, id int64, fn func(key []byte) error) error {
	prefix := schema.LeasedPrefix(nil, id)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := fn(it.Item().Key()[len(prefix):]); err != nil {
			return err
		}
	}
	return nil
}

// leaseState is a lease record a command reads or changes; exec writes the
// changed ones back once, when the command ends.
type leaseState struct {
	l       Lease
	found   bool
	changed bool
}

// lease returns lease id's state within the command.
func (e *exec) lease(id int64) (*leaseState, error) {
	if s, ok := e.leases[id]; ok {
		return s, nil
	}
	l, found, err := ReadLease(e.r, id)
	if err != nil {
		return nil, err
	}
	if e.leases == nil {
		e.leases = map[int64]*leaseState{}
	}
	s := &leaseState{l: l, found: found}
	e.leases[id] = s
	return s, nil
}

// leaseChange records a change for OnLeases.
func (e *exec) leaseChange(c LeaseChange) {
	if e.f.cfg.OnLeases != nil {
		e.f.leaseChanges = append(e.f.leaseChanges, c)
	}
}

// writeLeases writes back the lease records the command changed.
func (e *exec) writeLeases() error {
	for id, s := range e.leases {
		if !s.changed {
			continue
		}
		k := schema.LeaseKey(e.f.arena.alloc(len(schema.StateLease)+8), id)
		if !s.found {
			if err := e.txn.Delete(k); err != nil {
				return err
			}
			continue
		}
		if err := e.txn.Set(k, appendLease(e.f.arena.alloc(leaseLen), &s.l)); err != nil {
			return err
		}
	}
	e.leases = nil
	return nil
}

// leaseUse counts the keys a txn attaches to each lease, for the limits.
type leaseUse map[int64][2]int64

// checkAttach tells whether key, attached to lease cur now, may be put
// with lease id, counting what the txn attached before (use, may be nil).
func (e *exec) checkAttach(id, cur int64, key []byte, use leaseUse) (command.Code, string, error) {
	s, err := e.lease(id)
	if err != nil {
		return 0, "", err
	}
	if !s.found {
		return command.Code_LEASE_NOT_FOUND, fmt.Sprintf("lease %d not found", id), nil
	}
	if cur == id {
		return command.Code_OK, "", nil
	}
	u := use[id]
	u[0]++
	u[1] += int64(len(key))
	if s.l.Keys+u[0] > MaxLeaseKeys || s.l.KeyBytes+u[1] > MaxLeaseKeyBytes {
		return command.Code_TOO_LARGE, fmt.Sprintf("lease %d would hold more than %d keys or %d key bytes", id, MaxLeaseKeys, MaxLeaseKeyBytes), nil
	}
	if use != nil {
		use[id] = u
	}
	return command.Code_OK, "", nil
}

// relink moves key from lease old to lease id (either may be 0).
func (e *exec) relink(key []byte, old, id int64) error {
	if old == id {
		return nil
	}
	if old != 0 {
		if err := e.detach(old, key); err != nil {
			return err
		}
	}
	if id == 0 {
		return nil
	}
	s, err := e.lease(id)
	if err != nil {
		return err
	}
	s.l.Keys++
	s.l.KeyBytes += int64(len(key))
	s.changed = true
	return e.txn.Set(schema.LeasedKey(e.f.arena.alloc(len(schema.StateLeased)+8+len(key)), id, key), nil)
}

// detach removes key from lease id.
func (e *exec) detach(id int64, key []byte) error {
	if id == e.revoking {
		return nil // the whole lease goes
	}
	s, err := e.lease(id)
	if err != nil {
		return err
	}
	if s.found {
		s.l.Keys--
		s.l.KeyBytes -= int64(len(key))
		s.changed = true
	}
	return e.txn.Delete(schema.LeasedKey(e.f.arena.alloc(len(schema.StateLeased)+8+len(key)), id, key))
}

// grant runs a LeaseGrant.
func (e *exec) grant(g *command.LeaseGrantRequest) (*command.LeaseGrantResponse, command.Code, string, error) {
	switch {
	case g.GetId() <= 0:
		return nil, command.Code_BAD_REQUEST, fmt.Sprintf("lease id %d is not positive", g.GetId()), nil
	case g.GetTtl() <= 0:
		return nil, command.Code_BAD_REQUEST, fmt.Sprintf("lease ttl %v is not positive", time.Duration(g.GetTtl())), nil
	}
	s, err := e.lease(g.GetId())
	if err != nil {
		return nil, 0, "", err
	}
	if s.found {
		return nil, command.Code_LEASE_EXISTS, fmt.Sprintf("lease %d exists", g.GetId()), nil
	}
	s.l, s.found, s.changed = Lease{ID: g.GetId(), TTL: time.Duration(g.GetTtl())}, true, true
	e.leaseChange(LeaseChange{Kind: LeaseGranted, ID: g.GetId(), TTL: s.l.TTL})
	return &command.LeaseGrantResponse{Id: g.GetId(), Ttl: g.GetTtl()}, command.Code_OK, "", nil
}

// revoke deletes lease id and its keys, all in one revision.
func (e *exec) revoke(id int64) (*command.LeaseRevokeResponse, command.Code, string, error) {
	s, err := e.lease(id)
	if err != nil {
		return nil, 0, "", err
	}
	if !s.found {
		return nil, command.Code_LEASE_NOT_FOUND, fmt.Sprintf("lease %d not found", id), nil
	}
	// The lease's limits keep this within one command's budget.
	var attached [][]byte
	err = LeaseKeys(e.r, id, func(key []byte) error {
		attached = append(attached, append(e.f.arena.alloc(len(key)), key...))
		return nil
	})
	if err != nil {
		return nil, 0, "", err
	}
	var victims []victim
	for _, key := range attached {
		rec, found, err := current(e.r, &e.f.arena, key, true)
		if err != nil {
			return nil, 0, "", err
		}
		if found && rec.lease == id {
			rec.value = bytes.Clone(rec.value)
			victims = append(victims, victim{key: key, rec: rec})
		}
		k := schema.LeasedKey(e.f.arena.alloc(len(schema.StateLeased)+8+len(key)), id, key)
		if err := e.txn.Delete(k); err != nil {
			return nil, 0, "", err
		}
	}
	e.revoking = id
	_, err = e.deleteKeys(victims, false)
	e.revoking = 0
	if err != nil {
		return nil, 0, "", err
	}
	s.found, s.changed = false, true
	e.leaseChange(LeaseChange{Kind: LeaseRemoved, ID: id})
	return &command.LeaseRevokeResponse{Deleted: int64(len(victims))}, command.Code_OK, "", nil
}

// stale refuses a lessor command of term unless the entry holding it is
// of that term: only then did the lessor's own leader append it.
func (e *exec) stale(term uint64) (command.Code, string) {
	if term != e.txn.Term() {
		return command.Code_STALE, fmt.Sprintf("proposed in term %d, appended in term %d", term, e.txn.Term())
	}
	return command.Code_OK, ""
}

// expire runs a LeaseExpire: a revoke, if its lessor's leader appended it.
func (e *exec) expire(x *command.LeaseExpireRequest) (*command.LeaseRevokeResponse, command.Code, string, error) {
	if code, msg := e.stale(x.GetTerm()); code != command.Code_OK {
		return nil, code, msg, nil
	}
	return e.revoke(x.GetId())
}

// checkpoint records the remaining time of leases.
func (e *exec) checkpoint(c *command.LeaseCheckpointRequest) (command.Code, string, error) {
	if code, msg := e.stale(c.GetTerm()); code != command.Code_OK {
		return code, msg, nil
	}
	for _, cp := range c.GetCheckpoints() {
		s, err := e.lease(cp.GetId())
		if err != nil {
			return 0, "", err
		}
		if !s.found {
			continue
		}
		s.l.Remaining = min(max(time.Duration(cp.GetRemaining()), 0), s.l.TTL)
		s.changed = true
		e.leaseChange(LeaseChange{Kind: LeaseCheckpointed, ID: cp.GetId(), Remaining: s.l.Remaining})
	}
	return command.Code_OK, "", nil
}
