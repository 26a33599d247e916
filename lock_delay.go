package concord

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The lock-delay record (WithLockDelay): the key name/~delay, outside the
// waiters' range and attached to no lease, holds "<delay ns> <holder
// key>". A holder with a delay writes it once its key is the oldest,
// before Lock returns (one more commit), and Unlock deletes it in the txn
// that deletes the holder's key: a record naming another key, found by
// the oldest waiter, means a holder that lost its session while holding.

func (m *Mutex) delayRecordKey() string { return m.q.pfx + "~delay" }

func (m *Mutex) delayRecordValue() string {
	return fmt.Sprintf("%d %s", m.delay.Nanoseconds(), m.q.key)
}

// lockDelayOf returns the delay a record asks for; fallback if it does
// not parse.
func lockDelayOf(val []byte, fallback time.Duration) time.Duration {
	ns, _, _ := strings.Cut(string(val), " ")
	d, err := strconv.ParseInt(ns, 10, 64)
	if err != nil || d < 0 {
		return fallback
	}
	return time.Duration(d)
}

// lockDelayNoticed ends the value of a record whose delay runs: the
// waiter that found it put the timer key name/~delay-timer, attached to a
// lease of the delay's length (the leader's clock times it; a leader
// change only lengthens it), in the same txn.
const lockDelayNoticed = " noticed"

func (m *Mutex) delayTimerKey() string { return m.q.pfx + "~delay-timer" }

// noticeDelay starts the delay of the record kv, found by the key created
// at rev, the oldest: it grants a lease of the delay and, in one txn,
// marks the record and puts the timer key with that lease.
func (m *Mutex) noticeDelay(ctx context.Context, rev int64, kv *KeyValue) error {
	n := m.q.s.n
	id, err := n.Grant(ctx, max(lockDelayOf(kv.Value, m.delay), n.cfg.electionTimeout()))
	if err != nil {
		return err
	}
	tr, err := n.Txn(ctx).
		If(m.q.ownerCmp(rev), Compare(ModRevision(string(kv.Key)), "=", kv.ModRevision)).
		Then(OpPut(string(kv.Key), string(kv.Value)+lockDelayNoticed), OpPut(m.delayTimerKey(), "", WithLease(id))).
		Else(OpGet(m.q.key)).
		Commit()
	if err == nil && tr.Succeeded {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockCleanupTimeout)
	defer cancel()
	n.Revoke(rctx, id)
	if err != nil {
		return err
	}
	if kvs := tr.Responses[0].Get().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != rev {
		return m.q.s.expired()
	}
	return nil // the record changed: the caller looks again
}

// awaitDelay returns once the timer key is gone; with !wait, ErrLocked
// while it is there.
func (m *Mutex) awaitDelay(ctx context.Context, wait bool) error {
	n := m.q.s.n
	resp, err := n.Get(ctx, m.delayTimerKey(), WithSerializable())
	if err != nil || len(resp.Kvs) == 0 {
		return err
	}
	if !wait {
		return ErrLocked
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan lockDeleted, 1)
	go func() { done <- lockWatchDelete(wctx, n, m.delayTimerKey(), resp.Revision) }()
	select {
	case d := <-done:
		if d.err != nil && ctx.Err() == nil && !errors.Is(d.err, ErrClosed) {
			return nil // the watch failed (compacted): the caller looks again
		}
		return d.err
	case <-m.q.s.Done():
		cancel()
		<-done
		return m.q.s.expired()
	}
}

// settleDelay runs once the key created at rev is the oldest waiter:
// it waits out a record left by a holder that lost its session, then
// clears it, or replaces it with this Mutex's own when it has a delay.
// first, if not nil, is the record as the queuing txn read it (valid
// when nothing was waited for). It returns the record it wrote, if any.
func (m *Mutex) settleDelay(ctx context.Context, rev int64, wait bool, first *GetResponse) (string, error) {
	rec, mine := m.delayRecordKey(), m.delayRecordValue()
	n := m.q.s.n
	for {
		resp := first
		first = nil
		if resp == nil {
			var err error
			// Local state is past the last delete waited for, and only
			// the oldest waiter writes the record: a local read is exact.
			if resp, err = n.Get(ctx, rec, WithSerializable()); err != nil {
				return "", err
			}
		}
		var cmp Cmp
		switch {
		case len(resp.Kvs) > 0 && string(resp.Kvs[0].Value) == mine:
			return mine, nil
		case len(resp.Kvs) > 0:
			kv := resp.Kvs[0]
			if !strings.HasSuffix(string(kv.Value), lockDelayNoticed) {
				if err := m.noticeDelay(ctx, rev, kv); err != nil {
					return "", err
				}
				continue
			}
			if err := m.awaitDelay(ctx, wait); err != nil {
				return "", err
			}
			cmp = Compare(ModRevision(rec), "=", kv.ModRevision)
		case m.delay > 0:
			cmp = Compare(CreateRevision(rec), "=", 0)
		default:
			return "", nil
		}
		then, out := OpDelete(rec), ""
		if m.delay > 0 {
			then, out = OpPut(rec, mine), mine
		}
		tr, err := n.Txn(ctx).If(m.q.ownerCmp(rev), cmp).Then(then).Else(OpGet(m.q.key)).Commit()
		if err != nil {
			return "", err
		}
		if tr.Succeeded {
			return out, nil
		}
		if kvs := tr.Responses[0].Get().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != rev {
			return "", m.q.s.expired()
		}
		// The record changed meanwhile: look again.
	}
}
