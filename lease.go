package concord

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
	"github.com/concordkv/concord/internal/wire"
)

// LeaseKeepAliveResponse is one renewal of a lease.
type LeaseKeepAliveResponse struct {
	ID LeaseID
	// TTL is the time the lease has to live from the renewal: its granted
	// TTL.
	TTL time.Duration
}

// LeaseStatus is a lease as the leader sees it.
type LeaseStatus struct {
	ID LeaseID
	// TTL is the time the lease has left, at full precision, > 0 while it
	// lives.
	TTL time.Duration
	// GrantedTTL is the TTL it was granted with.
	GrantedTTL time.Duration
	// Keys are the keys attached to it, with TimeToLive's withKeys.
	Keys [][]byte
}

// minTTL is the shortest TTL a lease may have: the election timeout.
func (n *Node) minTTL() time.Duration { return n.cfg.electionTimeout() }

// checkTTL refuses a TTL that is not positive or under the floor.
func (n *Node) checkTTL(ttl time.Duration) error {
	if ttl < n.minTTL() {
		return fmt.Errorf("%w: lease TTL %v is under the minimum of %v (the election timeout, Config.TickInterval × ElectionTicks)", ErrInvalidRequest, ttl, n.minTTL())
	}
	return nil
}

// Grant creates a lease that lives ttl unless kept alive (KeepAlive,
// KeepAliveOnce, a Session) and returns its id. Keys put WithLease(id) are
// deleted, all in one revision, when it expires or is revoked. ttl must be
// at least the election timeout (Config.TickInterval × ElectionTicks: 1 s
// by default, 100 ms with DefaultLocalConfig), else ErrInvalidRequest and
// nothing is granted. Granting writes no revision.
func (n *Node) Grant(ctx context.Context, ttl time.Duration) (LeaseID, error) {
	id, err := n.grant(ctx, ttl)
	if err != nil {
		return NoLease, fmt.Errorf("concord.Grant: %w", err)
	}
	return id, nil
}

func (n *Node) grant(ctx context.Context, ttl time.Duration) (LeaseID, error) {
	if err := n.alive(); err != nil {
		return NoLease, err
	}
	if err := n.checkTTL(ttl); err != nil {
		return NoLease, err
	}
	for {
		// The proposer picks the id; the state machine refuses one taken.
		id := rand.Int64N(math.MaxInt64) + 1
		req := &command.Request{Request: &command.Request_LeaseGrant{LeaseGrant: &command.LeaseGrantRequest{Id: id, Ttl: int64(ttl)}}}
		resp, err := n.write(ctx, req)
		switch {
		case err == nil:
			return LeaseID(id), nil
		case resp.GetCode() == command.Code_LEASE_EXISTS:
			continue
		case errors.Is(err, ErrResultUnknown):
			if ok, lerr := n.leaseExists(id); lerr != nil || ok {
				return LeaseID(id), lerr
			}
		}
		return NoLease, err
	}
}

// leaseExists tells whether lease id exists in this node's state.
func (n *Node) leaseExists(id int64) (bool, error) {
	var found bool
	err := n.view(func(txn *badger.Txn) error {
		var err error
		_, found, err = fsm.ReadLease(txn, id)
		return err
	})
	return found, err
}

// Revoke deletes lease id and every key attached to it, in one revision
// (none if it holds no key). An unknown lease gets ErrLeaseNotFound.
func (n *Node) Revoke(ctx context.Context, id LeaseID) error {
	if err := n.revoke(ctx, id); err != nil {
		return fmt.Errorf("concord.Revoke: %w", err)
	}
	return nil
}

func (n *Node) revoke(ctx context.Context, id LeaseID) error {
	if err := n.alive(); err != nil {
		return err
	}
	if id <= 0 {
		return fmt.Errorf("%w: %d", ErrLeaseNotFound, id)
	}
	req := &command.Request{Request: &command.Request_LeaseRevoke{LeaseRevoke: &command.LeaseRevokeRequest{Id: int64(id)}}}
	_, err := n.write(ctx, req)
	if errors.Is(err, ErrResultUnknown) {
		if ok, lerr := n.leaseExists(int64(id)); lerr == nil && !ok {
			return nil // gone either way
		}
	}
	return err
}

// KeepAliveOnce renews lease id once: it has its whole TTL again from now.
// An unknown or expired lease gets ErrLeaseNotFound. It works on any node:
// a follower asks the leader, which answers once a quorum of members holds
// the renewal, so that a new leader keeps it too. No raft entry is written
// (except when the lease had missed its renewals long enough to be
// checkpointed: then one entry clears that first).
func (n *Node) KeepAliveOnce(ctx context.Context, id LeaseID) (*LeaseKeepAliveResponse, error) {
	resp, err := n.keepAliveOnce(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("concord.KeepAliveOnce: %w", err)
	}
	return resp, nil
}

func (n *Node) keepAliveOnce(ctx context.Context, id LeaseID) (*LeaseKeepAliveResponse, error) {
	if err := n.alive(); err != nil {
		return nil, err
	}
	if id <= 0 {
		return nil, fmt.Errorf("%w: %d", ErrLeaseNotFound, id)
	}
	if err := n.waitReady(ctx); err != nil {
		return nil, err
	}
	ttl, err := n.renew(ctx, id)
	if err != nil {
		return nil, err
	}
	return &LeaseKeepAliveResponse{ID: id, TTL: ttl}, nil
}

// TimeToLive tells what lease id has left as the leader sees it, and, with
// withKeys, the keys attached to it. An unknown lease gets
// ErrLeaseNotFound.
func (n *Node) TimeToLive(ctx context.Context, id LeaseID, withKeys bool) (*LeaseStatus, error) {
	st, err := n.timeToLive(ctx, id, withKeys)
	if err != nil {
		return nil, fmt.Errorf("concord.TimeToLive: %w", err)
	}
	return st, nil
}

func (n *Node) timeToLive(ctx context.Context, id LeaseID, withKeys bool) (*LeaseStatus, error) {
	if err := n.alive(); err != nil {
		return nil, err
	}
	if id <= 0 {
		return nil, fmt.Errorf("%w: %d", ErrLeaseNotFound, id)
	}
	ans, err := n.callLessor(ctx, &wire.LeaseCall{TimeToLive: []int64{int64(id)}})
	if err != nil {
		return nil, err
	}
	if len(ans) != 1 || ans[0].GetTtl() <= 0 {
		return nil, fmt.Errorf("%w: %d", ErrLeaseNotFound, id)
	}
	st := &LeaseStatus{ID: id, TTL: time.Duration(ans[0].GetTtl()), GrantedTTL: time.Duration(ans[0].GetGrantedTtl())}
	if !withKeys {
		return st, nil
	}
	if err := n.rn.ReadIndex(ctx); err != nil {
		return nil, n.raftErr(err)
	}
	found := false
	err = n.view(func(txn *badger.Txn) error {
		var err error
		if _, found, err = fsm.ReadLease(txn, int64(id)); err != nil || !found {
			return err
		}
		return fsm.LeaseKeys(txn, int64(id), func(key []byte) error {
			st.Keys = append(st.Keys, slices.Clone(key))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: %d", ErrLeaseNotFound, id)
	}
	return st, nil
}

// Leases returns every lease, by id, with what it has left as the leader
// sees it (not its keys).
func (n *Node) Leases(ctx context.Context) ([]LeaseStatus, error) {
	if err := n.alive(); err != nil {
		return nil, fmt.Errorf("concord.Leases: %w", err)
	}
	ans, err := n.callLessor(ctx, &wire.LeaseCall{All: true})
	if err != nil {
		return nil, fmt.Errorf("concord.Leases: %w", err)
	}
	out := make([]LeaseStatus, 0, len(ans))
	for _, t := range ans {
		out = append(out, LeaseStatus{ID: LeaseID(t.GetId()), TTL: time.Duration(t.GetTtl()), GrantedTTL: time.Duration(t.GetGrantedTtl())})
	}
	slices.SortFunc(out, func(a, b LeaseStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// callLessor asks the leader's lessor, waiting while it is not ready (a
// new leader loads its leases first).
func (n *Node) callLessor(ctx context.Context, call *wire.LeaseCall) ([]*wire.LeaseTTL, error) {
	if err := n.waitReady(ctx); err != nil {
		return nil, err
	}
	req, err := proto.Marshal(call)
	if err != nil {
		return nil, err
	}
	for {
		out, err := n.rn.CallLeader(ctx, req)
		if err != nil {
			return nil, n.raftErr(err)
		}
		var ans wire.LeaseAnswer
		if err := proto.Unmarshal(out, &ans); err != nil {
			return nil, fmt.Errorf("concord: undecodable answer from the leader: %w", err)
		}
		if !ans.GetNotReady() {
			return ans.GetLeases(), nil
		}
		if err := n.pause(ctx, n.cfg.TickInterval); err != nil {
			return nil, err
		}
	}
}

// pause waits d, unless ctx ends, or the node closes or stops on its own,
// first.
func (n *Node) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx.Err())
	case <-n.closingC:
		return ErrClosed
	case <-n.rn.Done(): // stopped on its own
		return n.stoppedErr()
	}
}
