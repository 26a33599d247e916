package concord

import (
	"context"
	"fmt"
	"math"
	"reflect"

	"github.com/concordkv/concord/internal/command"
)

// Cmp is one condition of a Txn: a target of a key (Value, Version,
// CreateRevision, ModRevision or LeaseValue) compared with a value by
// Compare.
//
// A missing key compares as a KeyValue of zeros: Version(k) = 0 holds for
// a key that does not exist, and CreateRevision(k) = 0 is the usual "if
// absent" test. A Value compare on a missing key is false, whatever the
// operator.
type Cmp struct {
	target command.Compare_CompareTarget
	result command.Compare_CompareResult
	key    []byte
	end    []byte
	value  []byte
	num    int64
	err    error // a bad operator or value given to Compare
}

// Value is the compare target of key's value. Compare it with a string (or
// a []byte); the order is bytewise.
func Value(key string) Cmp { return Cmp{target: command.Compare_VALUE, key: []byte(key)} }

// Version is the compare target of key's version: the number of puts since
// its creation, 0 if it does not exist.
func Version(key string) Cmp { return Cmp{target: command.Compare_VERSION, key: []byte(key)} }

// CreateRevision is the compare target of the revision that created key,
// 0 if it does not exist.
func CreateRevision(key string) Cmp { return Cmp{target: command.Compare_CREATE, key: []byte(key)} }

// ModRevision is the compare target of the revision of key's last put, 0
// if it does not exist.
func ModRevision(key string) Cmp { return Cmp{target: command.Compare_MOD, key: []byte(key)} }

// LeaseValue is the compare target of the lease key is attached to
// (NoLease if none or if it does not exist).
func LeaseValue(key string) Cmp { return Cmp{target: command.Compare_LEASE, key: []byte(key)} }

// Compare sets how cmp's target compares with v: result is one of "=",
// "!=", "<" and ">". v is a string (or []byte) for Value, and any Go
// integer (LeaseID included) for the other targets. A bad result or value
// makes the Txn holding the Cmp fail with ErrInvalidRequest.
func Compare(cmp Cmp, result string, v any) Cmp {
	switch result {
	case "=":
		cmp.result = command.Compare_EQUAL
	case "!=":
		cmp.result = command.Compare_NOT_EQUAL
	case "<":
		cmp.result = command.Compare_LESS
	case ">":
		cmp.result = command.Compare_GREATER
	default:
		cmp.err = fmt.Errorf("%w: Compare: unknown operator %q (want =, !=, < or >)", ErrInvalidRequest, result)
		return cmp
	}
	if cmp.target == command.Compare_VALUE {
		switch x := v.(type) {
		case string:
			cmp.value = []byte(x)
		case []byte:
			cmp.value = x
		default:
			cmp.err = fmt.Errorf("%w: Compare: Value needs a string, got %T", ErrInvalidRequest, v)
		}
		return cmp
	}
	n, ok := toInt64(v)
	if !ok {
		cmp.err = fmt.Errorf("%w: Compare: %s needs an integer that fits int64, got %T %v", ErrInvalidRequest, cmp.target, v, v)
	}
	cmp.num = n
	return cmp
}

// toInt64 converts any Go integer, named types included, to int64.
func toInt64(v any) (int64, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		return int64(u), u <= math.MaxInt64
	}
	return 0, false
}

// WithRange makes the compare hold only if it holds for every key in
// [key, end); a range with no key compares as a missing key.
func (c Cmp) WithRange(end string) Cmp {
	c.end = []byte(end)
	return c
}

// WithPrefix makes the compare hold only if it holds for every key
// starting with its key.
func (c Cmp) WithPrefix() Cmp {
	if len(c.key) == 0 {
		c.end = []byte{0}
	} else {
		c.end = prefixEnd(c.key)
	}
	return c
}

func (c *Cmp) check() error {
	switch {
	case c.err != nil:
		return c.err
	case len(c.key) == 0 && len(c.end) == 0:
		return fmt.Errorf("%w: in a compare", ErrEmptyKey)
	}
	return nil
}

func (c *Cmp) proto() *command.Compare {
	p := &command.Compare{Result: c.result, Target: c.target, Key: c.key, RangeEnd: c.end}
	switch c.target {
	case command.Compare_VALUE:
		p.TargetUnion = &command.Compare_Value{Value: c.value}
	case command.Compare_VERSION:
		p.TargetUnion = &command.Compare_Version{Version: c.num}
	case command.Compare_CREATE:
		p.TargetUnion = &command.Compare_CreateRevision{CreateRevision: c.num}
	case command.Compare_MOD:
		p.TargetUnion = &command.Compare_ModRevision{ModRevision: c.num}
	case command.Compare_LEASE:
		p.TargetUnion = &command.Compare_Lease{Lease: c.num}
	}
	return p
}

// Txn is an atomic transaction, as etcd's: if every compare holds, the
// Then ops run, else the Else ops, all at one revision (a txn that writes
// creates exactly one revision). A Txn with no If runs its Then ops.
//
// Calls to If, Then and Else add to what earlier calls gave: several If
// calls are one conjunction. A Txn is not safe for concurrent use; Commit
// it once.
type Txn interface {
	// If adds compares; all must hold for the Then ops to run.
	If(cmps ...Cmp) Txn
	// Then adds ops to run when every compare holds.
	Then(ops ...Op) Txn
	// Else adds ops to run when a compare fails.
	Else(ops ...Op) Txn
	// Commit runs the txn and returns its response. A failed compare is
	// not an error: it is TxnResponse.Succeeded false.
	Commit() (*TxnResponse, error)
}

// Txn returns a transaction bound to ctx (which bounds its Commit).
func (n *Node) Txn(ctx context.Context) Txn { return &txn{n: n, ctx: ctx} }

type txn struct {
	n   *Node
	ctx context.Context
	op  Op
}

func (t *txn) If(cmps ...Cmp) Txn {
	t.op.cmps = append(t.op.cmps, cmps...)
	return t
}

func (t *txn) Then(ops ...Op) Txn {
	t.op.thenOps = append(t.op.thenOps, ops...)
	return t
}

func (t *txn) Else(ops ...Op) Txn {
	t.op.elseOps = append(t.op.elseOps, ops...)
	return t
}

func (t *txn) Commit() (*TxnResponse, error) {
	t.op.t = opTxn
	resp, err := t.n.commitTxn(t.ctx, &t.op)
	if err != nil {
		return nil, fmt.Errorf("concord.Txn: %w", err)
	}
	return resp, nil
}

// commitTxn validates and proposes a txn.
func (n *Node) commitTxn(ctx context.Context, op *Op) (*TxnResponse, error) {
	if err := op.check(&n.cfg, 0); err != nil {
		return nil, err
	}
	resp, err := n.write(ctx, op.request())
	if err != nil {
		return nil, err
	}
	return fromTxn(n.header(resp), resp.GetTxn()), nil
}
