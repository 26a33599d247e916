package concord

import (
	"context"
	"fmt"
)

// WaitLen blocks until at least n messages are ready (Len >= n), on a
// watch of the queue's keys, and returns nil, or the error that stopped
// it (ctx's, or one wrapping ErrSessionExpired when the queue's session
// ends). Like Dequeue, it moves delayed messages to the ready ones as
// they come due, so that they count.
//
// Consumers should not each wait for Len >= n before dequeuing: the first
// to start makes Len drop, and a late one would wait on. For the seeds'
// "condition queue" (consumers start only once n items are queued), gate
// the consumers with a Barrier that ReleaseWhenQueued releases.
func (q *Queue[T]) WaitLen(ctx context.Context, n int) error {
	if err := q.waitLen(ctx, n); err != nil {
		return fmt.Errorf("concord.Queue.WaitLen: %w", err)
	}
	return nil
}

func (q *Queue[T]) waitLen(ctx context.Context, n int) error {
	for {
		if err := q.live(ctx); err != nil {
			return err
		}
		promoted, next, err := q.promote(ctx)
		if err != nil {
			return err
		}
		l, rev, err := q.length(ctx)
		if err != nil {
			return err
		}
		if l >= n {
			return nil
		}
		if promoted > 0 {
			continue
		}
		if err := q.wait(ctx, rev, next); err != nil {
			return err
		}
	}
}

// ReleaseWhenQueued is the condition queue: it blocks until q holds at
// least n ready messages, then releases b. Consumers that call b.Wait
// before their first Dequeue thus start together once n items are queued,
// and consumers that come later pass at once. Hold b before the
// producers start:
//
//	gate := concord.NewBarrier(node, "jobs/gate")
//	gate.Hold(ctx)                                    // once, at setup
//	go concord.ReleaseWhenQueued(ctx, gate, q, 100)   // any one process
//	// each consumer:
//	gate.Wait(ctx)
//	for { m, err := q.Dequeue(ctx); ... }
//
// For a condition held by a key instead of a count, release the barrier
// where that key is written (in the same Txn: OpDelete(name+"/hold"), the
// barrier's key), or from a watch of the key.
func ReleaseWhenQueued[T any](ctx context.Context, b *Barrier, q *Queue[T], n int) error {
	if err := q.waitLen(ctx, n); err != nil {
		return fmt.Errorf("concord.ReleaseWhenQueued: %w", err)
	}
	if err := b.Release(ctx); err != nil {
		return fmt.Errorf("concord.ReleaseWhenQueued: %w", err)
	}
	return nil
}
