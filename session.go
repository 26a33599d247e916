package concord

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultSessionTTL is the TTL of a Session's lease unless WithSessionTTL
// says otherwise: etcd's 60 seconds. A shorter TTL notices a dead holder
// sooner; it should stay well above the time a leader change takes (a few
// election timeouts), or sessions end on every leader change.
const DefaultSessionTTL = 60 * time.Second

// SessionOption configures NewSession.
type SessionOption func(*sessionOptions)

type sessionOptions struct {
	ttl   time.Duration
	lease LeaseID
	ctx   context.Context
}

// WithSessionTTL sets the TTL of the lease the session grants. Default
// DefaultSessionTTL; at least the election timeout.
func WithSessionTTL(ttl time.Duration) SessionOption {
	return func(o *sessionOptions) { o.ttl = ttl }
}

// WithSessionLease makes the session keep lease id alive instead of
// granting one. It must exist.
func WithSessionLease(id LeaseID) SessionOption {
	return func(o *sessionOptions) { o.lease = id }
}

// WithSessionContext bounds the session's life: NewSession's grant and
// the keep-alives use ctx, and when it ends the session stops renewing
// (as Orphan: its lease is left to expire) and Done closes.
func WithSessionContext(ctx context.Context) SessionOption {
	return func(o *sessionOptions) { o.ctx = ctx }
}

// Session is a lease kept alive for as long as its holder lives: the
// liveness handle of locks, elections and registrations (etcd's
// concurrency.Session). Keys attached to its lease vanish when it ends.
type Session struct {
	n      *Node
	id     LeaseID
	ttl    time.Duration
	cancel context.CancelFunc
	donec  chan struct{}
}

// NewSession grants a lease (or takes WithSessionLease's) and keeps it
// alive from this node until Close, Orphan or the end of
// WithSessionContext's ctx. The grant waits for the cluster, bounded by
// that ctx only (none by default).
func NewSession(n *Node, opts ...SessionOption) (*Session, error) {
	s, err := newSession(n, opts)
	if err != nil {
		return nil, fmt.Errorf("concord.NewSession: %w", err)
	}
	return s, nil
}

func newSession(n *Node, opts []SessionOption) (*Session, error) {
	o := sessionOptions{ttl: DefaultSessionTTL, ctx: context.Background()}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.ctx == nil {
		return nil, fmt.Errorf("%w: WithSessionContext(nil)", ErrInvalidRequest)
	}
	id, ttl := o.lease, o.ttl
	if id == NoLease {
		var err error
		if id, err = n.grant(o.ctx, ttl); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(o.ctx)
	ch, err := n.keepAlive(ctx, id)
	if err != nil {
		cancel()
		return nil, err
	}
	ttl = (<-ch).TTL
	s := &Session{n: n, id: id, ttl: ttl, cancel: cancel, donec: make(chan struct{})}
	err = n.withDB(func() error {
		n.wg.Go(func() {
			for range ch {
			}
			close(s.donec)
		})
		return nil
	})
	if err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

// Lease returns the session's lease.
func (s *Session) Lease() LeaseID { return s.id }

// TTL returns the TTL of the session's lease.
func (s *Session) TTL() time.Duration { return s.ttl }

// errSessionNodeClosed is what a call waiting on a session gets when the
// session ended because its node closed: it is both ErrSessionExpired and
// ErrClosed.
var errSessionNodeClosed = fmt.Errorf("%w (%w)", ErrSessionExpired, ErrClosed)

// expired is the error of a call that found s ended.
func (s *Session) expired() error {
	if s.n.closed.Load() {
		return errSessionNodeClosed
	}
	return ErrSessionExpired
}

// Done is closed when the session ends: its lease was revoked (from any
// node) or expired, this node could not renew it for a whole TTL (less a
// tick, at most a twentieth of the TTL: so that Done closes before the
// leader can expire the lease and another take what it held), its
// context ended, or Close or Orphan was called, or the node closed. It
// closes within about a second of the lease's removal, whatever the TTL.
func (s *Session) Done() <-chan struct{} { return s.donec }

// Orphan stops keeping the lease alive without revoking it: it expires
// after its TTL, unless someone else keeps it alive. Done closes.
func (s *Session) Orphan() {
	s.cancel()
	<-s.donec
}

// Close stops keeping the lease alive and revokes it, deleting the keys
// attached to it, before it returns; it waits at most the lease's TTL for
// the revoke. A lease already gone is not an error.
func (s *Session) Close() error {
	s.Orphan()
	ctx, cancel := context.WithTimeout(context.Background(), s.ttl)
	defer cancel()
	if err := s.n.revoke(ctx, s.id); err != nil && !errors.Is(err, ErrLeaseNotFound) {
		return fmt.Errorf("concord.Session.Close: %w", err)
	}
	return nil
}
