package concord

import (
	"fmt"
	"time"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
)

type opType int

const (
	opGet opType = iota + 1
	opPut
	opDelete
	opTxn
	opClaim // claim.go
	opAdd   // counter.go
)

// Op is one operation: a get, put, delete or nested txn, built with OpGet,
// OpPut, OpDelete or OpTxn and run inside a Txn. Node.Get, Put and Delete
// build the same Op from their arguments.
type Op struct {
	t   opType
	key []byte
	end []byte // range end: nil = key alone, "\x00" = every key >= key
	val []byte

	// get
	rev          int64
	limit        int64
	sortTarget   SortTarget
	sortOrder    SortOrder
	keysOnly     bool
	countOnly    bool
	serializable bool

	// put
	lease       LeaseID
	ttl         time.Duration
	hasTTL      bool
	granted     bool // lease was granted for hasTTL by ttlLease
	ignoreValue bool
	ignoreLease bool

	// put and delete (and watch)
	prevKV bool

	// claim (val is the marker's value) and add
	marker []byte
	delta  int64

	// txn
	cmps    []Cmp
	thenOps []Op
	elseOps []Op

	// watch
	progressNotify, filterPut, filterDelete, createdNotify bool
}

// OpGet returns a get of key, with the options of Node.Get.
func OpGet(key string, opts ...OpOption) Op {
	op := Op{t: opGet, key: []byte(key)}
	op.apply(opts)
	return op
}

// OpPut returns a put of key=val, with the options of Node.Put.
func OpPut(key, val string, opts ...OpOption) Op {
	op := Op{t: opPut, key: []byte(key), val: []byte(val)}
	op.apply(opts)
	op.end = nil // a put writes one key
	return op
}

// OpDelete returns a delete of key, with the options of Node.Delete.
func OpDelete(key string, opts ...OpOption) Op {
	op := Op{t: opDelete, key: []byte(key)}
	op.apply(opts)
	return op
}

// OpTxn returns a nested txn: thenOps run if every compare of cmps holds,
// elseOps otherwise. Its compares are evaluated, with the outer txn's,
// against the state before the outer txn.
func OpTxn(cmps []Cmp, thenOps, elseOps []Op) Op {
	return Op{t: opTxn, cmps: cmps, thenOps: thenOps, elseOps: elseOps}
}

func (op *Op) apply(opts []OpOption) {
	for _, o := range opts {
		if o != nil {
			o(op)
		}
	}
}

// maxTxnDepth bounds the nesting of OpTxn, as the state machine does.
const maxTxnDepth = 64

// check validates op against the node's limits before anything is
// proposed, so that a refused request changes nothing.
func (op *Op) check(c *Config, depth int) error {
	switch op.t {
	case opGet, opDelete:
		if len(op.key) == 0 && len(op.end) == 0 {
			return ErrEmptyKey
		}
		if op.rev < 0 {
			return fmt.Errorf("%w: %d", ErrInvalidRevision, op.rev)
		}
		if op.hasTTL {
			return fmt.Errorf("%w: WithTTL is for a put, claim or add", ErrInvalidRequest)
		}
		if op.sortTarget < SortByKey || op.sortTarget > SortByValue || op.sortOrder < SortNone || op.sortOrder > SortDescend {
			return fmt.Errorf("%w: WithSort(%d, %d) names no sort target or order", ErrInvalidRequest, op.sortTarget, op.sortOrder)
		}
	case opPut:
		return op.checkPut(c, depth)
	case opClaim:
		return op.checkClaim(c, depth)
	case opAdd:
		return op.checkAdd(c, depth)
	case opTxn:
		if depth >= maxTxnDepth {
			return fmt.Errorf("%w: txns nested more than %d deep", ErrInvalidRequest, maxTxnDepth)
		}
		for i := range op.cmps {
			if err := op.cmps[i].check(); err != nil {
				return err
			}
		}
		for _, ops := range [][]Op{op.thenOps, op.elseOps} {
			for i := range ops {
				if err := ops[i].check(c, depth+1); err != nil {
					return err
				}
			}
		}
		if depth == 0 {
			return checkTxnKeys(op)
		}
	default:
		return fmt.Errorf("%w: empty Op", ErrInvalidRequest)
	}
	return nil
}

func (op *Op) checkPut(c *Config, depth int) error {
	switch {
	case len(op.key) == 0:
		return ErrEmptyKey
	case len(op.key) > c.MaxKeySize:
		return fmt.Errorf("%w: %d bytes, the limit is %d (Config.MaxKeySize)", ErrKeyTooLarge, len(op.key), c.MaxKeySize)
	case len(op.val) > fsm.MaxValueSize:
		return fmt.Errorf("%w: a value of %d bytes exceeds the state machine's limit of %d", ErrRequestTooLarge, len(op.val), fsm.MaxValueSize)
	case op.ignoreValue && len(op.val) > 0:
		return fmt.Errorf("%w: a value given with WithIgnoreValue", ErrInvalidRequest)
	}
	return op.checkTTL(c, depth)
}

// checkTTL validates WithTTL on a put, claim or add.
func (op *Op) checkTTL(c *Config, depth int) error {
	switch {
	case !op.hasTTL:
	case depth > 0:
		return fmt.Errorf("%w: WithTTL is not for ops in a Txn; Grant a lease and use WithLease", ErrInvalidRequest)
	case op.lease != NoLease || op.ignoreLease:
		return fmt.Errorf("%w: WithTTL given with WithLease or WithIgnoreLease", ErrInvalidRequest)
	case op.ttl < c.electionTimeout():
		return fmt.Errorf("%w: WithTTL(%v) is under the minimum lease TTL of %v (the election timeout, Config.TickInterval × ElectionTicks)", ErrInvalidRequest, op.ttl, c.electionTimeout())
	}
	return nil
}

func (op *Op) rangeRequest() *command.RangeRequest {
	return &command.RangeRequest{
		Key:          op.key,
		RangeEnd:     op.end,
		Limit:        op.limit,
		Revision:     op.rev,
		SortOrder:    command.RangeRequest_SortOrder(op.sortOrder),
		SortTarget:   command.RangeRequest_SortTarget(op.sortTarget),
		Serializable: op.serializable,
		KeysOnly:     op.keysOnly,
		CountOnly:    op.countOnly,
	}
}

func (op *Op) putRequest() *command.PutRequest {
	return &command.PutRequest{
		Key:         op.key,
		Value:       op.val,
		Lease:       int64(op.lease),
		PrevKv:      op.prevKV,
		IgnoreValue: op.ignoreValue,
		IgnoreLease: op.ignoreLease,
	}
}

func (op *Op) deleteRequest() *command.DeleteRangeRequest {
	return &command.DeleteRangeRequest{Key: op.key, RangeEnd: op.end, PrevKv: op.prevKV}
}

func (op *Op) txnRequest() *command.TxnRequest {
	t := &command.TxnRequest{}
	for i := range op.cmps {
		t.Compare = append(t.Compare, op.cmps[i].proto())
	}
	for i := range op.thenOps {
		t.Success = append(t.Success, op.thenOps[i].requestOp())
	}
	for i := range op.elseOps {
		t.Failure = append(t.Failure, op.elseOps[i].requestOp())
	}
	return t
}

// requestOp returns op as one op of a txn.
func (op *Op) requestOp() *command.RequestOp {
	switch op.t {
	case opGet:
		return &command.RequestOp{Request: &command.RequestOp_RequestRange{RequestRange: op.rangeRequest()}}
	case opPut:
		return &command.RequestOp{Request: &command.RequestOp_RequestPut{RequestPut: op.putRequest()}}
	case opDelete:
		return &command.RequestOp{Request: &command.RequestOp_RequestDeleteRange{RequestDeleteRange: op.deleteRequest()}}
	case opTxn:
		return &command.RequestOp{Request: &command.RequestOp_RequestTxn{RequestTxn: op.txnRequest()}}
	case opClaim:
		return &command.RequestOp{Request: &command.RequestOp_RequestClaim{RequestClaim: op.claimRequest()}}
	case opAdd:
		return &command.RequestOp{Request: &command.RequestOp_RequestAdd{RequestAdd: op.addRequest()}}
	}
	return &command.RequestOp{}
}

// request returns op as a whole command.
func (op *Op) request() *command.Request {
	switch op.t {
	case opGet:
		return &command.Request{Request: &command.Request_Range{Range: op.rangeRequest()}}
	case opPut:
		return &command.Request{Request: &command.Request_Put{Put: op.putRequest()}}
	case opDelete:
		return &command.Request{Request: &command.Request_DeleteRange{DeleteRange: op.deleteRequest()}}
	case opTxn:
		return &command.Request{Request: &command.Request_Txn{Txn: op.txnRequest()}}
	case opClaim:
		return &command.Request{Request: &command.Request_Claim{Claim: op.claimRequest()}}
	case opAdd:
		return &command.Request{Request: &command.Request_Add{Add: op.addRequest()}}
	}
	return &command.Request{}
}
