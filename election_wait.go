package concord

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// electWaitFor blocks until one of keys sees an event of type typ after
// revision rev (the revision its caller read the keys at), and returns
// nil; the caller then reads again and decides. It also returns nil when a
// watch ends early (a compaction, a closing node): the caller's next read
// tells what happened. It returns an error wrapping ErrSessionExpired when
// done closes first (nil done: never), and ctx's error when ctx ends.
// Each key gets its own watch, so a waiter watches only the keys it names
// (its predecessor, its own key), never a whole prefix.
func electWaitFor(ctx context.Context, n *Node, rev int64, done <-chan struct{}, typ EventType, keys ...string) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	filter := WithFilterDelete()
	if typ == EventTypeDelete {
		filter = WithFilterPut()
	}
	hit := make(chan struct{}, len(keys))
	for _, key := range keys {
		wc := n.Watch(wctx, key, WithRev(rev+1), filter)
		err := n.spawn(func() {
			for range wc {
				// Any response past rev is an event of typ, or the
				// watch's end: either way, time to look again.
				break
			}
			hit <- struct{}{}
		})
		if err != nil {
			return err
		}
	}
	select {
	case <-hit:
		return nil
	case <-done:
		if n.closed.Load() {
			return errSessionNodeClosed
		}
		return ErrSessionExpired
	case <-ctx.Done():
		return ctx.Err()
	}
}

// electCleanupCtx returns a context for removing a waiter's key after its
// call failed: not canceled with the call's ctx (keeping its values), and
// bounded by the session's TTL, after which the key goes with the lease
// anyway.
func electCleanupCtx(ctx context.Context, s *Session) (context.Context, context.CancelFunc) {
	ttl := s.TTL()
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	return context.WithTimeout(context.WithoutCancel(ctx), ttl)
}

// electSessionErr maps the error of a write made with the session's lease:
// a lease that is gone means the session expired.
func electSessionErr(op string, err error) error {
	if errors.Is(err, ErrLeaseNotFound) {
		return fmt.Errorf("%s: %w: %w", op, ErrSessionExpired, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// electSessionDone reports whether s has ended, without blocking.
func electSessionDone(s *Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}
