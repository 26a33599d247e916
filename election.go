package concord

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
)

// ElectionOption configures NewElection.
type ElectionOption func(*electionOptions)

type electionOptions struct {
	codec any // a Codec[T] for the election's T
}

// WithElectionCodec sets the Codec of the election's values. Default
// JSON[T](). Its T must be the election's: with a codec of another type,
// Campaign and Proclaim fail with ErrInvalidRequest and write nothing, and
// Leader fails likewise, whether anyone leads or not.
func WithElectionCodec[T any](c Codec[T]) ElectionOption {
	return func(o *electionOptions) { o.codec = c }
}

// Leader is an election's leader as Leader and Observe report it. The
// zero Leader means "no leader".
type Leader[T any] struct {
	// Value is the leader's value: the one it campaigned with or last
	// proclaimed (the zero T if it does not decode).
	Value T
	// Key is the leader's key in the store.
	Key string
	// Token is the create revision of the leader's key: a fencing token
	// that strictly increases from one leader to the next.
	Token int64
}

// Election is a leader election among the campaigners of one name, as
// etcd's concurrency.Election: each campaigner puts a key under name+"/"
// bound to its session's lease, and the key with the lowest create
// revision leads. A waiting campaigner watches only the key just before
// its own. An Election value is one campaigner; it is safe for concurrent
// use, and may campaign again after it resigned or lost its session.
//
// The campaign key is name+"/"+ the session's lease in hex, so one session
// is one campaigner per name (as in etcd): two Election values on the
// same session and name share the key.
type Election[T any] struct {
	s      *Session
	n      *Node
	prefix string
	codec  Codec[T]
	err    error // a bad name: every call returns it

	mu     sync.Mutex
	key    string // our key while campaigning or leading; guarded by mu
	rev    int64  // its create revision; guarded by mu
	leader bool   // Campaign won and nothing since said otherwise; guarded by mu
}

// NewElection returns a campaigner of the election name on session s. An
// empty name makes Campaign, Proclaim and Leader fail with ErrEmptyKey,
// and Observe's channel close at once (as a codec of the wrong type does).
func NewElection[T any](s *Session, name string, opts ...ElectionOption) *Election[T] {
	var o electionOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	codec := optionCodec[T](o.codec, "WithElectionCodec")
	e := &Election[T]{s: s, n: s.n, prefix: name + "/", codec: codec}
	e.err = emptyName("Election", name)
	return e
}

// Campaign puts val as this campaigner's value and blocks until it leads
// the election (campaigners are served in the order they campaigned), ctx
// ends, or the session ends. It returns nil once elected.
//
// When Campaign fails it leaves nothing behind: a cancelled ctx, an ended
// session (an error wrapping ErrSessionExpired) or any other error
// removes the campaign key before Campaign returns (trying for at most
// the session's TTL). A Resign while Campaign waits makes it return an
// error wrapping ErrNotLeader. Campaigning again while already campaigning
// or leading keeps the key (and the Token) and only updates the value; if
// that Campaign fails, the key goes too.
//
// Campaign on a closed node or an ended session returns at once; a value
// the codec cannot encode gets an error wrapping ErrInvalidRequest, and
// nothing is written.
func (e *Election[T]) Campaign(ctx context.Context, val T) error {
	if err := e.campaign(ctx, val); err != nil {
		return fmt.Errorf("concord.Election.Campaign: %w", err)
	}
	return nil
}

func (e *Election[T]) campaign(ctx context.Context, val T) error {
	if e.err != nil {
		return e.err
	}
	b, err := e.codec.Encode(val)
	if err != nil {
		return fmt.Errorf("%w: value does not encode: %w", ErrInvalidRequest, err)
	}
	if electSessionDone(e.s) {
		return e.s.expired()
	}
	key := e.prefix + fmt.Sprintf("%x", int64(e.s.Lease()))
	resp, err := e.n.Txn(ctx).
		If(Compare(CreateRevision(key), "=", 0)).
		Then(OpPut(key, string(b), WithLease(e.s.Lease()))).
		Else(OpPut(key, string(b), WithIgnoreLease()), OpGet(key)).
		Commit()
	if err != nil {
		// The put's outcome is unknown: remove the key if it is ours.
		e.cleanup(ctx, key, 0)
		return electSessionErr("put", err)
	}
	rev := resp.Revision
	if !resp.Succeeded {
		rev = resp.Responses[1].Get().Kvs[0].CreateRevision
	}
	e.mu.Lock()
	e.key, e.rev = key, rev
	e.mu.Unlock()
	if err := e.waitFirst(ctx, key, rev); err != nil {
		e.cleanup(ctx, key, rev)
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.key != key || e.rev != rev {
		return fmt.Errorf("%w: resigned while campaigning", ErrNotLeader)
	}
	e.leader = true
	return nil
}

// waitFirst waits until key (created at rev) has the lowest create
// revision under the prefix, watching only its predecessor and itself.
func (e *Election[T]) waitFirst(ctx context.Context, key string, rev int64) error {
	for {
		resp, err := e.n.Get(ctx, e.prefix, WithPrefix(), WithKeysOnly(), WithSort(SortByCreateRevision, SortAscend))
		if err != nil {
			return err
		}
		var pred *KeyValue
		mine := false
		for _, kv := range ownKeys(resp.Kvs, e.prefix) {
			if kv.CreateRevision < rev {
				pred = kv
			} else if string(kv.Key) == key && kv.CreateRevision == rev {
				mine = true
			}
		}
		switch {
		case !mine:
			return e.keyGone(ctx)
		case pred == nil:
			return nil
		}
		err = electWaitFor(ctx, e.n, resp.Revision, e.s.Done(), EventTypeDelete, string(pred.Key), key)
		if err != nil {
			return err
		}
	}
}

// keyGone tells why our campaign key vanished: its lease ended (the
// session's end may not have reached Done yet), or it was deleted.
func (e *Election[T]) keyGone(ctx context.Context) error {
	if electSessionDone(e.s) {
		return e.s.expired()
	}
	if _, err := e.n.TimeToLive(ctx, e.s.Lease(), false); errors.Is(err, ErrLeaseNotFound) {
		return e.s.expired()
	}
	return fmt.Errorf("%w: campaign key deleted (resigned) while campaigning", ErrNotLeader)
}

// cleanup removes key after a failed Campaign: the one created at rev, or
// (rev 0, the put's outcome unknown) the one bound to our lease.
func (e *Election[T]) cleanup(ctx context.Context, key string, rev int64) {
	e.mu.Lock()
	if e.key == key && (rev == 0 || e.rev == rev) {
		e.key, e.rev, e.leader = "", 0, false
	}
	e.mu.Unlock()
	cmp := Compare(CreateRevision(key), "=", rev)
	if rev == 0 {
		cmp = Compare(LeaseValue(key), "=", int64(e.s.Lease()))
	}
	cctx, cancel := electCleanupCtx(ctx, e.s)
	defer cancel()
	e.n.Txn(cctx).If(cmp).Then(OpDelete(key)).Commit() //nolint:errcheck // best effort; the lease bounds the rest
}

// Proclaim sets the leader's value to val without a new election. It
// returns an error wrapping ErrNotLeader unless this campaigner leads:
// the write is guarded on the leader key's create revision, so a
// campaigner that lost its key (session expired, Resign) never writes.
func (e *Election[T]) Proclaim(ctx context.Context, val T) error {
	if err := e.proclaim(ctx, val); err != nil {
		return fmt.Errorf("concord.Election.Proclaim: %w", err)
	}
	return nil
}

func (e *Election[T]) proclaim(ctx context.Context, val T) error {
	if e.err != nil {
		return e.err
	}
	b, err := e.codec.Encode(val)
	if err != nil {
		return fmt.Errorf("%w: value does not encode: %w", ErrInvalidRequest, err)
	}
	e.mu.Lock()
	key, rev, leader := e.key, e.rev, e.leader
	e.mu.Unlock()
	if !leader {
		return ErrNotLeader
	}
	resp, err := e.n.Txn(ctx).
		If(Compare(CreateRevision(key), "=", rev)).
		Then(OpPut(key, string(b), WithIgnoreLease())).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		e.forget(key, rev)
		return ErrNotLeader
	}
	return nil
}

// forget clears the campaign state if it is still key at rev.
func (e *Election[T]) forget(key string, rev int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.key == key && e.rev == rev {
		e.key, e.rev, e.leader = "", 0, false
	}
}

// Resign gives up leadership, or a campaign in progress (whose Campaign
// then returns ErrNotLeader): it deletes the campaign key, guarded on its
// create revision so that it never deletes a later campaign's key. Without
// a key it does nothing.
func (e *Election[T]) Resign(ctx context.Context) error {
	e.mu.Lock()
	key, rev := e.key, e.rev
	e.mu.Unlock()
	if key == "" {
		return nil
	}
	_, err := e.n.Txn(ctx).If(Compare(CreateRevision(key), "=", rev)).Then(OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("concord.Election.Resign: %w", err)
	}
	e.forget(key, rev)
	return nil
}

// IsLeader reports whether this campaigner won its Campaign and has not
// resigned, seen a failed Proclaim or lost its session since. It does no
// I/O: a leader whose key was deleted by someone else learns it at its
// next Proclaim.
func (e *Election[T]) IsLeader() bool {
	if electSessionDone(e.s) {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// Key returns this campaigner's key, or "" when it neither campaigns nor
// leads, or its session has ended.
func (e *Election[T]) Key() string {
	if electSessionDone(e.s) {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.key
}

// Token returns the create revision of this campaigner's key (its
// fencing token once elected), or 0 when it neither campaigns nor leads,
// or its session has ended. It does no I/O.
func (e *Election[T]) Token() int64 {
	if electSessionDone(e.s) {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rev
}

// first returns the leader's key with its value: the oldest campaign key
// (one linearizable read), ErrNoLeader if none. The keys of an election
// whose name extends this one's lie deeper under the prefix and do not
// count.
func (e *Election[T]) first(ctx context.Context) (*KeyValue, error) {
	resp, err := e.n.Get(ctx, e.prefix, WithPrefix(), WithSort(SortByCreateRevision, SortAscend))
	if err != nil {
		return nil, err
	}
	kvs := ownKeys(resp.Kvs, e.prefix)
	if len(kvs) == 0 {
		return nil, ErrNoLeader
	}
	return kvs[0], nil
}

// Leader returns the current leader (a linearizable read), or an error
// wrapping ErrNoLeader when there is none. A value that does not decode
// gives an error wrapping ErrDecode. A codec of another type than the
// election's (WithElectionCodec) gives an error wrapping
// ErrInvalidRequest, leader or not, without a read.
func (e *Election[T]) Leader(ctx context.Context) (Leader[T], error) {
	if err := cmp.Or(e.err, codecErr(e.codec)); err != nil {
		return Leader[T]{}, fmt.Errorf("concord.Election.Leader: %w", err)
	}
	kv, err := e.first(ctx)
	if err != nil {
		return Leader[T]{}, fmt.Errorf("concord.Election.Leader: %w", err)
	}
	l := Leader[T]{Key: string(kv.Key), Token: kv.CreateRevision}
	if l.Value, err = e.codec.Decode(kv.Value); err != nil {
		return l, fmt.Errorf("concord.Election.Leader: %w: key %q: %w", ErrDecode, kv.Key, err)
	}
	return l, nil
}
