package concord

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/raftnode"
)

// write proposes req through raft and returns the state machine's
// response once it is applied on this node. Refusals (codes) become the
// matching sentinel errors.
func (n *Node) write(ctx context.Context, req *command.Request) (*command.Response, error) {
	data, err := command.EncodeRequest(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if limit := n.cfg.maxRequestBytes(); len(data) > limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d (Config.MaxRequestBytes)", ErrRequestTooLarge, len(data), limit)
	}
	if err := n.waitReady(ctx); err != nil {
		return nil, err
	}
	out, err := n.rn.Propose(ctx, data)
	if err != nil {
		return nil, n.raftErr(err)
	}
	resp, err := command.DecodeResponse(out)
	if err != nil {
		return nil, fmt.Errorf("concord: undecodable result from the state machine: %w", err)
	}
	return resp, codeErr(resp)
}

// read serves a range from this node's state: after a ReadIndex round
// (linearizable) unless the request is serializable.
func (n *Node) read(ctx context.Context, req *command.RangeRequest) (*command.Response, error) {
	if err := n.waitReady(ctx); err != nil {
		return nil, err
	}
	if !req.GetSerializable() {
		if err := n.rn.ReadIndex(ctx); err != nil {
			return nil, n.raftErr(err)
		}
	}
	if resp, ok := n.fsm.Cached(req); ok {
		return resp, codeErr(resp)
	}
	var resp *command.Response
	err := n.view(func(txn *badger.Txn) error {
		var err error
		resp, err = n.fsm.Range(txn, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, codeErr(resp)
}

// view runs fn on a read-only transaction of the node's DB, unless the
// node is closed (the DB with it).
func (n *Node) view(fn func(*badger.Txn) error) error {
	return n.withDB(func() error { return n.rn.DB().View(fn) })
}

// codeErr maps a refusal of the state machine to its sentinel error.
func codeErr(resp *command.Response) error {
	var sentinel error
	switch resp.GetCode() {
	case command.Code_OK:
		return nil
	case command.Code_COMPACTED:
		sentinel = ErrCompacted
	case command.Code_FUTURE_REV:
		sentinel = ErrFutureRev
	case command.Code_KEY_NOT_FOUND:
		sentinel = ErrKeyNotFound
	case command.Code_LEASE_NOT_FOUND:
		sentinel = ErrLeaseNotFound
	case command.Code_TOO_LARGE:
		sentinel = ErrRequestTooLarge
	default:
		sentinel = ErrInvalidRequest
	}
	return fmt.Errorf("%w: %s", sentinel, resp.GetError())
}

// raftErr maps an error of the raft peer: a stopped peer is ErrClosed or
// ErrStopped, a deadline is ErrTimeout as well, and a result lost to a
// snapshot is ErrResultUnknown.
func (n *Node) raftErr(err error) error {
	switch {
	case errors.Is(err, raftnode.ErrAppliedBySnapshot):
		return fmt.Errorf("%w (%w)", ErrResultUnknown, err)
	case errors.Is(err, raftnode.ErrStopped):
		return n.stoppedErr()
	}
	return ctxErr(err)
}

// ctxErr adds ErrTimeout to a deadline error: the deadline passed while
// the cluster could not serve the call (no leader, no quorum, or slower
// than the deadline allowed). Cancellation passes through as it is.
func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrTimeout) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// header returns the header of a response of the state machine.
func (n *Node) header(resp *command.Response) Header {
	return Header{Revision: resp.GetRevision(), RaftTerm: n.rn.Status().Term, MemberID: n.id}
}
