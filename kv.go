package concord

import (
	"github.com/concordkv/concord/internal/command"
)

// LeaseID identifies a lease. Keys attached to a lease are deleted when it
// expires or is revoked.
type LeaseID int64

// NoLease is the LeaseID of a key attached to no lease.
const NoLease LeaseID = 0

// KeyValue is one key's state at a revision, as etcd's mvccpb.KeyValue.
type KeyValue struct {
	Key   []byte
	Value []byte
	// CreateRevision is the revision of the put that created the key.
	CreateRevision int64
	// ModRevision is the revision of the key's last put.
	ModRevision int64
	// Version counts the puts since the key was created: 1 after the
	// creating put. A delete resets it.
	Version int64
	// Lease is the lease the key is attached to; NoLease for none.
	Lease LeaseID
}

// Header is the part every response shares.
type Header struct {
	// Revision is the store's revision when the request was served: for a
	// write, the revision it created (or the current one if it wrote
	// nothing); for a read, the current revision of the state it read,
	// whatever past revision it read at (as etcd).
	Revision int64
	// RaftTerm is the raft term the serving node was in.
	RaftTerm uint64
	// MemberID is the raft id of the node that served the request.
	MemberID uint64
}

// PutResponse is the result of Put, Create, CompareAndSwap and
// PutSequential.
type PutResponse struct {
	Header
	// PrevKv is the key's state before the put, with WithPrevKV and if the
	// key existed.
	PrevKv *KeyValue
}

// GetResponse is the result of Get.
type GetResponse struct {
	Header
	// Kvs are the keys found, in key order unless WithSort says otherwise;
	// empty with WithCountOnly.
	Kvs []*KeyValue
	// Count is the number of keys in the range, whatever the limit.
	Count int64
	// More tells that the range holds more keys than WithLimit returned.
	More bool
}

// DeleteResponse is the result of Delete and CompareAndDelete.
type DeleteResponse struct {
	Header
	// Deleted is the number of keys deleted.
	Deleted int64
	// PrevKvs are the deleted keys' states, with WithPrevKV.
	PrevKvs []*KeyValue
}

// TxnResponse is the result of a Txn.
type TxnResponse struct {
	Header
	// Succeeded tells whether every compare held, so that the Then ops ran
	// (else the Else ops did).
	Succeeded bool
	// Responses holds one response per op of the branch that ran, in order.
	Responses []OpResponse
}

// OpResponse is the response of one op of a Txn: the method matching the
// op's kind returns it, the others nil.
type OpResponse struct {
	put   *PutResponse
	get   *GetResponse
	del   *DeleteResponse
	txn   *TxnResponse
	claim *ClaimResponse
	add   *AddResponse
}

// Put returns the response of an OpPut, or nil.
func (r OpResponse) Put() *PutResponse { return r.put }

// Get returns the response of an OpGet, or nil.
func (r OpResponse) Get() *GetResponse { return r.get }

// Del returns the response of an OpDelete, or nil.
func (r OpResponse) Del() *DeleteResponse { return r.del }

// Txn returns the response of an OpTxn, or nil.
func (r OpResponse) Txn() *TxnResponse { return r.txn }

// Claim returns the response of an OpClaim, or nil.
func (r OpResponse) Claim() *ClaimResponse { return r.claim }

// Add returns the response of an OpAdd, or nil.
func (r OpResponse) Add() *AddResponse { return r.add }

// SortTarget is what WithSort sorts by.
type SortTarget int

// Sort targets, as etcd's.
const (
	SortByKey SortTarget = iota
	SortByVersion
	SortByCreateRevision
	SortByModRevision
	SortByValue
)

// SortOrder is the order WithSort sorts in.
type SortOrder int

// Sort orders, as etcd's. SortNone with a target other than SortByKey
// means SortAscend.
const (
	SortNone SortOrder = iota
	SortAscend
	SortDescend
)

// fromKV converts a state machine KeyValue; nil stays nil. The slices are
// shared: the state machine's responses are freshly allocated.
func fromKV(kv *command.KeyValue) *KeyValue {
	if kv == nil {
		return nil
	}
	return &KeyValue{
		Key:            kv.GetKey(),
		Value:          kv.GetValue(),
		CreateRevision: kv.GetCreateRevision(),
		ModRevision:    kv.GetModRevision(),
		Version:        kv.GetVersion(),
		Lease:          LeaseID(kv.GetLease()),
	}
}

func fromKVs(kvs []*command.KeyValue) []*KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]*KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = fromKV(kv)
	}
	return out
}

func fromRange(h Header, r *command.RangeResponse) *GetResponse {
	return &GetResponse{Header: h, Kvs: fromKVs(r.GetKvs()), Count: r.GetCount(), More: r.GetMore()}
}

func fromPut(h Header, r *command.PutResponse) *PutResponse {
	return &PutResponse{Header: h, PrevKv: fromKV(r.GetPrevKv())}
}

func fromDelete(h Header, r *command.DeleteRangeResponse) *DeleteResponse {
	return &DeleteResponse{Header: h, Deleted: r.GetDeleted(), PrevKvs: fromKVs(r.GetPrevKvs())}
}

func fromTxn(h Header, r *command.TxnResponse) *TxnResponse {
	out := &TxnResponse{Header: h, Succeeded: r.GetSucceeded()}
	if len(r.GetResponses()) > 0 {
		out.Responses = make([]OpResponse, len(r.GetResponses()))
	}
	for i, op := range r.GetResponses() {
		switch x := op.GetResponse().(type) {
		case *command.ResponseOp_ResponseRange:
			out.Responses[i].get = fromRange(h, x.ResponseRange)
		case *command.ResponseOp_ResponsePut:
			out.Responses[i].put = fromPut(h, x.ResponsePut)
		case *command.ResponseOp_ResponseDeleteRange:
			out.Responses[i].del = fromDelete(h, x.ResponseDeleteRange)
		case *command.ResponseOp_ResponseTxn:
			out.Responses[i].txn = fromTxn(h, x.ResponseTxn)
		case *command.ResponseOp_ResponseClaim:
			out.Responses[i].claim = fromClaim(h, x.ResponseClaim)
		case *command.ResponseOp_ResponseAdd:
			out.Responses[i].add = fromAdd(h, x.ResponseAdd)
		}
	}
	return out
}
