package concord

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
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
func (n *Node) read(ctx context.Context, req *command.RangeRequest) (*GetResponse, error) {
	if err := n.waitReady(ctx); err != nil {
		return nil, err
	}
	if !req.GetSerializable() {
		if err := n.rn.ReadIndex(ctx); err != nil {
			return nil, n.raftErr(err)
		}
	}
	if p, rev, _, ok := n.fsm.CachedPoint(req); ok {
		return n.fromPoint(req.GetKey(), p, rev), nil
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
	if err := codeErr(resp); err != nil {
		return nil, err
	}
	return fromRange(n.header(resp), resp.GetRange()), nil
}

// pointResponse holds a one-key GetResponse in one allocation.
type pointResponse struct {
	resp GetResponse
	kvs  [1]*KeyValue
	kv   KeyValue
}

// fromPoint is the GetResponse for a read of key answered by the read
// cache at revision rev. Key and value share one fresh buffer.
func (n *Node) fromPoint(key []byte, p fsm.Point, rev int64) *GetResponse {
	r := &pointResponse{}
	r.resp = GetResponse{Header: n.headerAt(rev), Count: p.Count}
	if !p.KV {
		return &r.resp
	}
	buf := make([]byte, len(key)+len(p.Value))
	copy(buf, key)
	copy(buf[len(key):], p.Value)
	r.kv = KeyValue{Key: buf[:len(key):len(key)], CreateRevision: p.Create, ModRevision: p.Mod, Version: p.Version, Lease: LeaseID(p.Lease)}
	if p.Value != nil {
		r.kv.Value = buf[len(key):]
	}
	r.kvs[0] = &r.kv
	r.resp.Kvs = r.kvs[:]
	return &r.resp
}

// view runs fn on a read-only transaction of the node's DB, unless the
// node is closed (the DB with it). It never sees a snapshot restore half
// done (fsm.View).
func (n *Node) view(fn func(*badger.Txn) error) error {
	return n.withDB(func() error { return n.fsm.View(n.rn.DB(), fn) })
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
	case errors.Is(err, raftnode.ErrAppliedBySnapshot), errors.Is(err, raftnode.ErrProposalExpired):
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
func (n *Node) header(resp *command.Response) Header { return n.headerAt(resp.GetRevision()) }

// headerAt returns the header of an answer at revision rev.
func (n *Node) headerAt(rev int64) Header {
	return Header{Revision: rev, RaftTerm: n.rn.Status().Term, MemberID: n.id}
}
