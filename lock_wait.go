package concord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The queue shared by Mutex, RWMutex and Semaphore. A lock named name keeps
// its waiters under name + "/": one key per participant,
// name/<16-hex lease>-<16-hex instance id>, attached to the session's
// lease, ordered by create revision (the oldest holds). Keys starting
// with name + "/~" are the lock's bookkeeping (the lock-delay record),
// outside the waiters' range.
//
// Waiting needs no re-read: the keys older than a waiter can only go away
// (a key created later has a higher create revision), so the list read
// once after queuing, at revision R, holds every key that can block it.
// The waiter watches the `slots` youngest of them for their delete from
// R+1 on (history replays a delete it missed), checks the keys moving into
// that window by local reads, and holds once fewer than `slots` remain.
// For a Mutex that is its predecessor alone: a release wakes one waiter,
// one commit then one watch notification (then a local read or two).

// lockCleanupTimeout bounds the delete of a waiting key after its Lock
// failed or was cancelled (the caller's ctx is over by then).
const lockCleanupTimeout = 5 * time.Second

// lockQueue is one participant's place in a lock's queue.
type lockQueue struct {
	s   *Session
	pfx string // name + "/"
	key string // this participant's key
	err error  // a bad name: every acquire returns it

	onWatch func(key string) // tests: called for each key watched
}

// newLockQueue returns the place of a participant of the lock name, of
// kind ("Mutex", "RWMutex", "Semaphore"). An empty name is refused, as a
// Queue's: the keys would lie under "/".
func newLockQueue(s *Session, kind, name string) lockQueue {
	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	pfx := name + "/"
	q := lockQueue{s: s, pfx: pfx, key: fmt.Sprintf("%s%016x-%s", pfx, int64(s.Lease()), hex.EncodeToString(id[:]))}
	q.err = emptyName(kind, name)
	return q
}

// waitersEnd is the end of the waiters' range [pfx, pfx+"~").
func (q *lockQueue) waitersEnd() string { return q.pfx + "~" }

// enqueue puts the participant's key with value val and returns its
// create revision and the txn's response, whose Responses[2:] answer
// extra, run in the same txn. A key left by an earlier attempt with the
// same value keeps its place; one with another value (an RWMutex's read
// key, now wanted for writing) is removed and queued afresh, since later
// readers may hold beside it.
func (q *lockQueue) enqueue(ctx context.Context, val string, extra ...Op) (rev int64, resp *TxnResponse, err error) {
	for {
		select {
		case <-q.s.Done():
			return 0, nil, q.s.expired()
		default:
		}
		ops := append([]Op{OpPut(q.key, val, WithLease(q.s.Lease()), WithPrevKV()), OpGet(q.key)}, extra...)
		resp, err = q.s.n.Txn(ctx).Then(ops...).Commit()
		if err != nil && !errors.Is(err, ErrInvalidRequest) && !errors.Is(err, ErrKeyTooLarge) {
			q.remove(ctx, 0) // the put may have happened
		}
		if err != nil {
			if errors.Is(err, ErrLeaseNotFound) {
				err = fmt.Errorf("%w: %w", ErrSessionExpired, err)
			}
			return 0, nil, err
		}
		kvs := resp.Responses[1].Get().Kvs
		if len(kvs) == 0 {
			return 0, nil, q.s.expired()
		}
		if prev := resp.Responses[0].Put().PrevKv; prev == nil || string(prev.Value) == val {
			return kvs[0].CreateRevision, resp, nil
		}
		q.remove(ctx, kvs[0].CreateRevision)
		if err := ctx.Err(); err != nil {
			return 0, nil, err
		}
	}
}

// waiters reads the waiters, oldest first, and the revision they were read
// at: the keys one segment under the prefix (a lock named name/x keeps
// its own below name/x/). The read is local: this node applied the
// queuing txn, so it sees every key older than the caller's that is
// still there. (It runs here, not in the queuing txn, so that its range
// scan stays out of every node's apply loop.)
func (q *lockQueue) waiters(ctx context.Context) ([]*KeyValue, int64, error) {
	resp, err := q.s.n.Get(ctx, q.pfx, WithRange(q.waitersEnd()), WithSort(SortByCreateRevision, SortAscend), WithSerializable())
	if err != nil {
		return nil, 0, err
	}
	return ownKeys(resp.Kvs, q.pfx), resp.Revision, nil
}

// older returns the waiters created before rev that block the caller.
func lockOlder(waiters []*KeyValue, rev int64, blocks func(*KeyValue) bool) []*KeyValue {
	var out []*KeyValue
	for _, kv := range waiters {
		if kv.CreateRevision < rev && (blocks == nil || blocks(kv)) {
			out = append(out, kv)
		}
	}
	return out
}

// wait blocks until fewer than slots of blockers (read at revision rev,
// oldest first) remain, then checks that the key created at myRev is
// still there. It returns ErrSessionExpired when the session ends or the
// key is gone, and ctx's error when ctx ends.
func (q *lockQueue) wait(ctx context.Context, blockers []*KeyValue, slots int, rev, myRev int64, blocks func(*KeyValue) bool) error {
	if len(blockers) < slots {
		return nil
	}
	last, err := q.waitDeletes(ctx, blockers, slots, rev, myRev, blocks)
	if err != nil {
		return err
	}
	// The node delivered the delete at revision last, so its own state
	// is at least there: a local read tells whether the key lived on.
	resp, err := q.s.n.Get(ctx, q.key, WithSerializable())
	if err == nil && resp.Revision < last {
		resp, err = q.s.n.Get(ctx, q.key)
	}
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != myRev {
		return q.s.expired()
	}
	return nil
}

// lockDeleted reports one watched key's delete, or why its watch ended.
type lockDeleted struct {
	key string
	rev int64
	err error
}

// waitDeletes is wait's loop; it returns the revision of the last delete
// it needed.
func (q *lockQueue) waitDeletes(ctx context.Context, alive []*KeyValue, slots int, rev, myRev int64, blocks func(*KeyValue) bool) (int64, error) {
	last := rev
	for {
		if len(alive) < slots {
			return last, nil
		}
		var err error
		alive, last, err = q.watchRound(ctx, alive, slots, rev)
		if err == nil {
			continue
		}
		if !errors.Is(err, errLockRewatch) {
			return 0, err
		}
		// A watch failed (history compacted, ...): read the queue again.
		kvs, at, err := q.waiters(ctx)
		if err != nil {
			return 0, err
		}
		alive, rev, last = lockOlder(kvs, myRev, blocks), at, at
	}
}

var errLockRewatch = errors.New("concord: lock watch ended")

// watchRound watches the slots youngest of alive until fewer than slots
// remain; it returns the survivors and the revision by which the last
// delete it needed happened. Keys are watched for their first delete
// after rev, the revision alive was read at. When a watched key goes,
// the keys that move into the window are checked first by local reads
// (they may be long gone: a key ahead left before its successor did),
// rather than each watched in turn from rev.
func (q *lockQueue) watchRound(ctx context.Context, alive []*KeyValue, slots int, rev int64) ([]*KeyValue, int64, error) {
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	deleted := make(chan lockDeleted, len(alive))
	watched := map[string]bool{}
	last := rev
	// fill watches the window, dropping keys a local read finds gone.
	fill := func(checked bool) error {
		for i := len(alive) - 1; i >= 0 && i >= len(alive)-slots; i-- {
			kv := alive[i]
			key := string(kv.Key)
			if watched[key] {
				continue
			}
			since := rev
			if checked {
				r, err := q.s.n.Get(ctx, key, WithSerializable())
				if err != nil {
					return err
				}
				if len(r.Kvs) == 0 || r.Kvs[0].CreateRevision != kv.CreateRevision {
					alive = append(alive[:i:i], alive[i+1:]...)
					last = max(last, r.Revision)
					continue
				}
				since = r.Revision
			}
			watched[key] = true
			if q.onWatch != nil {
				q.onWatch(key)
			}
			wg.Go(func() { deleted <- lockWatchDelete(wctx, q.s.n, key, since) })
		}
		return nil
	}
	if err := fill(false); err != nil {
		return nil, 0, err
	}
	for {
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-q.s.Done():
			return nil, 0, q.s.expired()
		case d := <-deleted:
			if d.err != nil {
				if ctx.Err() != nil {
					return nil, 0, ctx.Err()
				}
				if errors.Is(d.err, ErrClosed) {
					return nil, 0, d.err
				}
				return nil, 0, errLockRewatch
			}
			for i, kv := range alive {
				if string(kv.Key) == d.key {
					alive = append(alive[:i:i], alive[i+1:]...)
					break
				}
			}
			last = max(last, d.rev)
			if err := fill(true); err != nil {
				return nil, 0, err
			}
			if len(alive) < slots {
				return alive, last, nil
			}
		}
	}
}

// lockWatchDelete waits for key's first delete after rev.
func lockWatchDelete(ctx context.Context, n *Node, key string, rev int64) lockDeleted {
	for wr := range n.Watch(ctx, key, WithRev(rev+1), WithFilterPut()) {
		if wr.Canceled {
			err := wr.Err()
			if err == nil {
				err = errLockRewatch
			}
			return lockDeleted{err: err}
		}
		for _, ev := range wr.Events {
			if ev.Type == EventTypeDelete {
				return lockDeleted{key: key, rev: ev.Kv.ModRevision}
			}
		}
	}
	if ctx.Err() != nil {
		return lockDeleted{err: ctx.Err()}
	}
	return lockDeleted{err: ErrClosed}
}

// remove deletes the participant's key if it is still the one created
// at rev (any, for rev 0: a queuing txn whose outcome is unknown), with a
// fresh bounded context: the caller's may be over. Best effort: a key
// left behind goes with the session, or is reused by the next attempt.
func (q *lockQueue) remove(ctx context.Context, rev int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockCleanupTimeout)
	defer cancel()
	t := q.s.n.Txn(ctx).Then(OpDelete(q.key))
	if rev != 0 {
		t = t.If(Compare(CreateRevision(q.key), "=", rev))
	}
	_, _ = t.Commit()
}

// ownerCmp returns the compare that holds while the key created at rev
// exists; for rev 0, one that never holds.
func (q *lockQueue) ownerCmp(rev int64) Cmp {
	if rev == 0 {
		return Compare(CreateRevision(q.key), "<", 0)
	}
	return Compare(CreateRevision(q.key), "=", rev)
}

// acquire queues with value val and waits until fewer than slots of the
// older keys that block (nil: all) remain; it returns the key's create
// revision. Any failure after queuing removes the key.
func (q *lockQueue) acquire(ctx context.Context, val string, slots int, blocks func(*KeyValue) bool) (int64, error) {
	rev, _, err := q.enqueue(ctx, val)
	if err != nil {
		return 0, err
	}
	waiters, at, err := q.waiters(ctx)
	if err == nil {
		err = q.wait(ctx, lockOlder(waiters, rev, blocks), slots, at, rev, blocks)
	}
	if err != nil {
		q.remove(ctx, rev)
		return 0, err
	}
	return rev, nil
}

// try queues and keeps the key only if fewer than slots older keys exist;
// else it removes it and returns ErrLocked.
func (q *lockQueue) try(ctx context.Context, slots int) (int64, error) {
	rev, _, err := q.enqueue(ctx, "")
	if err != nil {
		return 0, err
	}
	waiters, _, err := q.waiters(ctx)
	if err != nil || len(lockOlder(waiters, rev, nil)) >= slots {
		q.remove(ctx, rev)
		if err != nil {
			return 0, err
		}
		return 0, ErrLocked
	}
	return rev, nil
}
