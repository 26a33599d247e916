package concord

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/concordkv/concord/internal/fsm"
	"github.com/concordkv/concord/internal/wire"
)

// keepAliveBuffer is the capacity of a KeepAlive channel; responses that
// find it full are dropped. A var so that tests can change it.
var keepAliveBuffer = 16

// KeepAlive keeps lease id alive until ctx ends: it renews it at once, then
// about every TTL/3, from this node (a follower asks the leader; no raft
// entry is written), and sends one response per renewal on the channel it
// returns. A response the reader is not ready for is dropped, not
// queued. An unknown lease gets ErrLeaseNotFound at once.
//
// The channel closes when ctx ends, when the node closes, when the lease
// is gone (revoked from any node, or expired), or when no renewal
// succeeded for the lease's TTL, measured from the last successful one's
// request: the lease may be gone then, and its holder must assume so.
func (n *Node) KeepAlive(ctx context.Context, id LeaseID) (<-chan LeaseKeepAliveResponse, error) {
	ch, err := n.keepAlive(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("concord.KeepAlive: %w", err)
	}
	return ch, nil
}

func (n *Node) keepAlive(ctx context.Context, id LeaseID) (<-chan LeaseKeepAliveResponse, error) {
	gone := n.watchGone(id)
	sent := time.Now()
	first, err := n.keepAliveOnce(ctx, id)
	if err != nil {
		n.unwatchGone(id, gone)
		return nil, err
	}
	ch := make(chan LeaseKeepAliveResponse, keepAliveBuffer)
	ch <- *first
	err = n.withDB(func() error {
		n.wg.Go(func() { n.keepAliveLoop(ctx, id, first.TTL, sent, ch, gone) })
		return nil
	})
	if err != nil {
		n.unwatchGone(id, gone)
		return nil, err
	}
	return ch, nil
}

// keepAliveLoop renews id every ttl/3 from the last renewal, at once when
// the leader changes, and sooner after a failure, until its deadline.
func (n *Node) keepAliveLoop(ctx context.Context, id LeaseID, ttl time.Duration, last time.Time, ch chan LeaseKeepAliveResponse, gone chan struct{}) {
	defer close(ch)
	defer n.unwatchGone(id, gone)
	timer := time.NewTimer(time.Until(last.Add(ttl / 3)))
	defer timer.Stop()
	leader := n.rn.Status().Leader
	for {
		changed := n.rn.Changed()
		select {
		case <-ctx.Done():
			return
		case <-n.closingC:
			return
		case <-gone:
			return
		case <-changed:
			// A new leader gives leases what they had left plus at least an
			// election timeout: renew within it, so that a renewal the old
			// leader lost costs nothing.
			if l := n.rn.Status().Leader; l == 0 || l == leader {
				continue
			}
			timer.Stop()
		case <-timer.C:
		}
		deadline := last.Add(ttl - lostMargin(ttl, n.cfg.TickInterval))
		if !time.Now().Before(deadline) {
			return // not renewed for (about) a whole TTL: assume it is gone
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(ctx, deadline)
		got, err := n.renew(rctx, id)
		cancel()
		switch {
		case err == nil:
			last, ttl, leader = sent, got, n.rn.Status().Leader
			select {
			case ch <- LeaseKeepAliveResponse{ID: id, TTL: got}:
			default:
			}
			timer.Reset(time.Until(sent.Add(ttl / 3))) // from the request: no drift
		case errors.Is(err, ErrLeaseNotFound), errors.Is(err, ErrClosed), errors.Is(err, ErrStopped):
			return
		default: // no leader, a timeout: try again soon, or give up at the deadline
			timer.Reset(min(max(n.cfg.TickInterval, time.Millisecond), max(time.Until(deadline), 0)))
		}
	}
}

// lostMargin is how long before a lease could expire (its TTL from the
// last renewal sent) its keep-alive gives it up: the leader counts the
// TTL from its own receipt of that renewal, later, so a holder that is
// told its session is lost is told before the lease goes and another can
// take what it held. A tick, at most a twentieth of the TTL.
func lostMargin(ttl, tick time.Duration) time.Duration {
	return min(tick, ttl/20)
}

// renewal is a keep-alive waiting for the renewer.
type renewal struct {
	id   LeaseID
	resC chan renewResult // buffered 1
}

type renewResult struct {
	ttl time.Duration
	err error
}

// renew renews id through the renewer, which batches the keep-alives of
// the whole node into one call to the leader.
func (n *Node) renew(ctx context.Context, id LeaseID) (time.Duration, error) {
	r := &renewal{id: id, resC: make(chan renewResult, 1)}
	select {
	case n.renewC <- r:
	case <-ctx.Done():
		return 0, ctxErr(ctx.Err())
	case <-n.closingC:
		return 0, ErrClosed
	}
	select {
	case res := <-r.resC:
		return res.ttl, res.err
	case <-ctx.Done():
		return 0, ctxErr(ctx.Err())
	case <-n.closingC:
		return 0, ErrClosed
	}
}

// maxRenewBatch caps the leases of one keep-alive call.
const maxRenewBatch = 4096

// renewer sends the keep-alives waiting in renewC to the leader, all of
// them in one call, while the previous call is in flight.
func (n *Node) renewer(ctx context.Context) {
	for {
		var batch []*renewal
		select {
		case r := <-n.renewC:
			batch = append(batch, r)
		case <-ctx.Done():
			return
		}
	drain:
		for len(batch) < maxRenewBatch {
			select {
			case r := <-n.renewC:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		seen := map[LeaseID]bool{}
		call := &wire.LeaseCall{}
		for _, r := range batch {
			if !seen[r.id] {
				seen[r.id] = true
				call.KeepAlive = append(call.KeepAlive, int64(r.id))
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*n.cfg.electionTimeout())
		var ans []*wire.LeaseTTL
		var err error
		if n.dropRenewals.Load() {
			err = ErrTimeout
		} else {
			ans, err = n.callLessor(cctx, call)
		}
		cancel()
		ttls := map[LeaseID]time.Duration{}
		for _, t := range ans {
			ttls[LeaseID(t.GetId())] = time.Duration(t.GetTtl())
		}
		for _, r := range batch {
			res := renewResult{ttl: ttls[r.id], err: err}
			if err == nil && res.ttl <= 0 {
				res.err = fmt.Errorf("%w: %d", ErrLeaseNotFound, r.id)
			}
			r.resC <- res
		}
	}
}

// watchGone returns a channel closed once lease id is removed from this
// node's state; unwatchGone releases it.
func (n *Node) watchGone(id LeaseID) chan struct{} {
	ch := make(chan struct{})
	n.goneMu.Lock()
	n.gone[id] = append(n.gone[id], ch)
	n.goneMu.Unlock()
	return ch
}

func (n *Node) unwatchGone(id LeaseID, ch chan struct{}) {
	n.goneMu.Lock()
	defer n.goneMu.Unlock()
	chs := n.gone[id]
	for i, c := range chs {
		if c == ch {
			chs = append(chs[:i], chs[i+1:]...)
			break
		}
	}
	if len(chs) == 0 {
		delete(n.gone, id)
	} else {
		n.gone[id] = chs
	}
}

// onLeases takes the lease changes of each committed batch (on the raft
// goroutine): the lessor's mirror, then the watchers of removed leases.
func (n *Node) onLeases(c fsm.LeaseCommit) {
	n.ls.Apply(n.rn.DB(), c)
	n.goneMu.Lock()
	defer n.goneMu.Unlock()
	closeAll := func(id LeaseID) {
		for _, ch := range n.gone[id] {
			close(ch)
		}
		delete(n.gone, id)
	}
	if c.Restored {
		for id := range n.gone {
			if !n.ls.Has(int64(id)) {
				closeAll(id)
			}
		}
	}
	for _, ch := range c.Changes {
		if ch.Kind == fsm.LeaseRemoved {
			closeAll(LeaseID(ch.ID))
		}
	}
}
