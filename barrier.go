package concord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
)

// Barrier blocks processes in Wait until a holder releases it: etcd's
// recipe barrier. It is one key, name+"/hold", not bound to a lease: a
// barrier held by a process that dies stays held until someone releases
// it.
type Barrier struct {
	n   *Node
	key string
	err error // a bad name: every call returns it
}

// NewBarrier returns the barrier name on n. An empty name makes every
// call fail with ErrEmptyKey.
func NewBarrier(n *Node, name string) *Barrier {
	return &Barrier{n: n, key: name + "/hold", err: emptyName("Barrier", name)}
}

// emptyName is the error of a primitive whose name is empty: its keys
// would lie under "/".
func emptyName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s name", ErrEmptyKey, kind)
	}
	return nil
}

// Hold raises the barrier, so that Wait blocks. It returns an error
// wrapping ErrKeyExists when the barrier is already held.
func (b *Barrier) Hold(ctx context.Context) error {
	if b.err != nil {
		return fmt.Errorf("concord.Barrier.Hold: %w", b.err)
	}
	if _, err := b.n.Create(ctx, b.key, ""); err != nil {
		return fmt.Errorf("concord.Barrier.Hold: %w", err)
	}
	return nil
}

// Release lowers the barrier, letting every Wait return. Releasing a
// barrier that is not held does nothing.
func (b *Barrier) Release(ctx context.Context) error {
	if b.err != nil {
		return fmt.Errorf("concord.Barrier.Release: %w", b.err)
	}
	if _, err := b.n.Delete(ctx, b.key); err != nil {
		return fmt.Errorf("concord.Barrier.Release: %w", err)
	}
	return nil
}

// Wait blocks while the barrier is held, and returns nil once it is not
// (at once if it is not held), or ctx's error.
func (b *Barrier) Wait(ctx context.Context) error {
	if b.err != nil {
		return fmt.Errorf("concord.Barrier.Wait: %w", b.err)
	}
	for {
		resp, err := b.n.Get(ctx, b.key, WithKeysOnly())
		if err != nil {
			return fmt.Errorf("concord.Barrier.Wait: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		if err := electWaitFor(ctx, b.n, resp.Revision, nil, EventTypeDelete, b.key); err != nil {
			return fmt.Errorf("concord.Barrier.Wait: %w", err)
		}
	}
}

// DoubleBarrier lets count participants start and finish a computation
// together: Enter blocks until count participants have entered, Leave
// until every participant has left (etcd's recipe). A participant is a
// key under name+"/waiters/" bound to its session's lease, so one whose
// process dies counts as gone once its session expires. Each
// DoubleBarrier value is one participant; use one per goroutine.
type DoubleBarrier struct {
	s      *Session
	n      *Node
	name   string
	count  int
	ready  string // name+"/ready": put by the count-th participant
	prefix string // name+"/waiters/"
	key    string // our waiter key once entered
	err    error  // a bad name: Enter returns it
}

// NewDoubleBarrier returns a participant of the double barrier name for
// count participants, on session s. An empty name makes Enter fail with
// ErrEmptyKey.
func NewDoubleBarrier(s *Session, name string, count int) *DoubleBarrier {
	return &DoubleBarrier{s: s, n: s.n, name: name, count: count, ready: name + "/ready", prefix: name + "/waiters/", err: emptyName("DoubleBarrier", name)}
}

// Enter registers this participant and blocks until count participants
// have entered (a participant arriving after that returns at once). On a
// cancelled ctx, or when the session ends (an error wrapping
// ErrSessionExpired), it removes its key and returns the error; a count
// below 1 gets ErrInvalidRequest.
func (b *DoubleBarrier) Enter(ctx context.Context) error {
	if err := b.enter(ctx); err != nil {
		return fmt.Errorf("concord.DoubleBarrier.Enter: %w", err)
	}
	return nil
}

func (b *DoubleBarrier) enter(ctx context.Context) error {
	if b.err != nil {
		return b.err
	}
	if b.count < 1 {
		return fmt.Errorf("%w: double barrier count %d < 1", ErrInvalidRequest, b.count)
	}
	if b.key != "" {
		return fmt.Errorf("%w: entered already", ErrInvalidRequest)
	}
	if electSessionDone(b.s) {
		return b.s.expired()
	}
	var id [8]byte
	rand.Read(id[:])
	key := b.prefix + fmt.Sprintf("%x-", int64(b.s.Lease())) + hex.EncodeToString(id[:])
	resp, err := b.n.Txn(ctx).
		Then(OpPut(key, "", WithLease(b.s.Lease())), OpGet(b.prefix, WithPrefix(), WithKeysOnly()), OpGet(b.ready, WithKeysOnly())).
		Commit()
	if err != nil {
		b.removeKey(ctx, key)
		return electSessionErr("put", err)
	}
	b.key = key
	rev := resp.Revision
	ready := len(resp.Responses[2].Get().Kvs) > 0
	if !ready && len(ownKeys(resp.Responses[1].Get().Kvs, b.prefix)) >= b.count {
		// The count-th: open the barrier. The ready key lives as long as
		// this session, so that a crashed round does not leave it behind.
		if _, err := b.n.Put(ctx, b.ready, "", WithLease(b.s.Lease())); err != nil {
			b.removeKey(ctx, key)
			b.key = ""
			return electSessionErr("put ready", err)
		}
		return nil
	}
	for !ready {
		err := electWaitFor(ctx, b.n, rev, b.s.Done(), EventTypePut, b.ready)
		if err == nil {
			// A put of the ready key, or a watch that ended early (a
			// compaction, a closing node): look again.
			var got *GetResponse
			if got, err = b.n.Get(ctx, b.ready, WithKeysOnly()); err == nil {
				rev, ready = got.Revision, len(got.Kvs) > 0
			}
		}
		if err != nil {
			b.removeKey(ctx, key)
			b.key = ""
			return err
		}
	}
	return nil
}

// removeKey deletes our waiter key after a failed call.
func (b *DoubleBarrier) removeKey(ctx context.Context, key string) {
	cctx, cancel := electCleanupCtx(ctx, b.s)
	defer cancel()
	b.n.Delete(cctx, key) //nolint:errcheck // best effort; the lease bounds the rest
}

// Leave removes this participant and blocks until every participant has
// left (or, for one whose session ended, its key expired); the last one
// out removes the ready key, so the barrier can be used again (if the
// last one died instead, the Leave that finds everyone gone does). Each waiter watches one key only: the lowest participant
// waits for the highest to leave, the others for the lowest. When the
// session ends while waiting it returns an error wrapping
// ErrSessionExpired. Leave without Enter does nothing.
func (b *DoubleBarrier) Leave(ctx context.Context) error {
	if err := b.leave(ctx); err != nil {
		return fmt.Errorf("concord.DoubleBarrier.Leave: %w", err)
	}
	return nil
}

func (b *DoubleBarrier) leave(ctx context.Context) error {
	if b.key == "" {
		return nil
	}
	left := false // our key is deleted: we wait for the lowest
	for {
		resp, err := b.n.Get(ctx, b.prefix, WithPrefix(), WithKeysOnly(), WithSort(SortByCreateRevision, SortAscend))
		if err != nil {
			return err
		}
		kvs := ownKeys(resp.Kvs, b.prefix) // not a nested barrier's
		mine := slices.IndexFunc(kvs, func(kv *KeyValue) bool { return string(kv.Key) == b.key })
		switch {
		case mine < 0 && !left && electSessionDone(b.s):
			// Our key went with the lease while we were still in.
			b.key = ""
			return b.s.expired()
		case len(kvs) == 0:
			// Everyone left, but the last one out did not reopen the
			// barrier (its session ended first): remove a ready key from
			// this round, not one a new round put after our read.
			b.key = ""
			_, err := b.n.Txn(ctx).If(Compare(ModRevision(b.ready), "<", resp.Revision+1)).Then(OpDelete(b.ready)).Commit()
			return err
		case mine == 0 && len(kvs) == 1:
			// The last one out: leave and reopen the barrier at once.
			if _, err := b.n.Txn(ctx).Then(OpDelete(b.key), OpDelete(b.ready)).Commit(); err != nil {
				return err
			}
			b.key = ""
			return nil
		case mine > 0:
			if _, err := b.n.Delete(ctx, b.key); err != nil {
				return err
			}
			left = true
		case mine < 0:
			left = true
		}
		// The lowest waits for the highest to leave, the others (gone
		// from the set now) for the lowest, which leaves last.
		watch := string(kvs[0].Key)
		if mine == 0 {
			watch = string(kvs[len(kvs)-1].Key)
		}
		if err := electWaitFor(ctx, b.n, resp.Revision, b.s.Done(), EventTypeDelete, watch); err != nil {
			if !left {
				b.removeKey(ctx, b.key)
			}
			b.key = ""
			return err
		}
	}
}
