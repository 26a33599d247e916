package fsm

import (
	"bytes"
	"errors"
	"slices"
	"sort"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
)

// maxTxnDepth bounds the nesting of txns.
const maxTxnDepth = 64

// A txn runs in three passes, so that a refused one writes nothing:
//  1. path: the compares of the txn and of the txns nested in the chosen
//     branches, against the state before the txn (etcd's compareToPath);
//  2. check: every op on the path against that same state: revisions of
//     reads, puts' preconditions, no key put twice or put and deleted
//     (etcd's rule), and the write budget;
//  3. run: the ops in order; reads see the txn's earlier writes.
func (e *exec) txnTop(t *command.TxnRequest) (*command.TxnResponse, command.Code, string, error) {
	path, err := e.path(t, nil, 0)
	if errors.Is(err, errTooDeep) {
		return nil, command.Code_BAD_REQUEST, "txns nested too deep", nil
	}
	if err != nil {
		return nil, 0, "", err
	}
	p := &plan{leased: leaseUse{}}
	p.b.add(1, 32) // the revision
	i := 0
	if code, msg, err := e.check(t, path, &i, p); err != nil || code != command.Code_OK {
		return nil, code, msg, err
	}
	if code, msg := p.overlaps(); code != command.Code_OK {
		return nil, code, msg, nil
	}
	i = 0
	resp, err := e.run(t, path, &i)
	return resp, command.Code_OK, "", err
}

var errTooDeep = errors.New("fsm: txn nested too deep")

// branch returns the ops t runs when its compares came out ok.
func branch(t *command.TxnRequest, ok bool) []*command.RequestOp {
	if ok {
		return t.GetSuccess()
	}
	return t.GetFailure()
}

// path appends the outcome of t's compares, then those of the nested txns
// of the chosen branch, depth first.
func (e *exec) path(t *command.TxnRequest, path []bool, depth int) ([]bool, error) {
	if depth > maxTxnDepth {
		return nil, errTooDeep
	}
	ok, err := e.compares(t.GetCompare())
	if err != nil {
		return nil, err
	}
	path = append(path, ok)
	for _, op := range branch(t, ok) {
		if _, isTxn := op.GetRequest().(*command.RequestOp_RequestTxn); isTxn {
			if path, err = e.path(op.GetRequestTxn(), path, depth+1); err != nil {
				return nil, err
			}
		}
	}
	return path, nil
}

// plan is what check gathers about the writes on a txn's path.
type plan struct {
	b      budget
	puts   [][]byte
	dels   []span
	leased leaseUse // keys attached to each lease
}

// span is a range of keys [lo, hi); hi nil means no end.
type span struct{ lo, hi []byte }

func toSpan(key, end []byte) span {
	switch {
	case isSingle(end):
		return span{key, append(bytes.Clone(key), 0)}
	case isFromKey(end):
		return span{key, nil}
	}
	return span{key, end}
}

// check validates the ops on t's path; i walks path.
func (e *exec) check(t *command.TxnRequest, path []bool, i *int, p *plan) (command.Code, string, error) {
	f := e.f
	ok := path[*i]
	*i++
	for _, op := range branch(t, ok) {
		switch r := op.GetRequest().(type) {
		case *command.RequestOp_RequestRange:
			rr := r.RequestRange
			if len(rr.GetKey()) == 0 && isSingle(rr.GetRangeEnd()) {
				return command.Code_BAD_REQUEST, "empty key", nil
			}
			if code, msg := checkRev(rr.GetRevision(), f.rev, f.compact); code != command.Code_OK {
				return code, msg, nil
			}
		case *command.RequestOp_RequestPut:
			pr := r.RequestPut
			cur, found, err := e.current(pr.GetKey(), false)
			if err != nil {
				return 0, "", err
			}
			if p.leased == nil {
				p.leased = leaseUse{}
			}
			if code, msg, err := e.checkPut(pr, cur, found, p.leased); err != nil || code != command.Code_OK {
				return code, msg, err
			}
			if !p.b.add(putCost(pr.GetKey(), pr.GetValue())) {
				return command.Code_TOO_LARGE, tooLargeMsg, nil
			}
			p.puts = append(p.puts, pr.GetKey())
		case *command.RequestOp_RequestDeleteRange:
			dr := r.RequestDeleteRange
			if len(dr.GetKey()) == 0 && isSingle(dr.GetRangeEnd()) {
				return command.Code_BAD_REQUEST, "empty key", nil
			}
			err := e.scan(dr.GetKey(), dr.GetRangeEnd(), func(k []byte, _ *badger.Item) error {
				if !p.b.add(delCost(k)) {
					return errOverBudget
				}
				return nil
			})
			if errors.Is(err, errOverBudget) {
				return command.Code_TOO_LARGE, tooLargeMsg, nil
			}
			if err != nil {
				return 0, "", err
			}
			if !emptyRange(dr.GetKey(), dr.GetRangeEnd()) {
				p.dels = append(p.dels, toSpan(dr.GetKey(), dr.GetRangeEnd()))
			}
		case *command.RequestOp_RequestTxn:
			if code, msg, err := e.check(r.RequestTxn, path, i, p); err != nil || code != command.Code_OK {
				return code, msg, err
			}
		case *command.RequestOp_RequestClaim:
			if code, msg, err := e.checkClaim(r.RequestClaim, p); err != nil || code != command.Code_OK {
				return code, msg, err
			}
		case *command.RequestOp_RequestAdd:
			if code, msg, err := e.checkAdd(r.RequestAdd, p); err != nil || code != command.Code_OK {
				return code, msg, err
			}
		default:
			return command.Code_BAD_REQUEST, "empty op in txn", nil
		}
	}
	return command.Code_OK, "", nil
}

// overlaps refuses a path that puts a key twice, or puts a key it also
// deletes: one revision holds at most one event per key.
func (p *plan) overlaps() (command.Code, string) {
	const msg = "duplicate key given in txn request"
	slices.SortFunc(p.puts, bytes.Compare)
	for i := 1; i < len(p.puts); i++ {
		if bytes.Equal(p.puts[i-1], p.puts[i]) {
			return command.Code_BAD_REQUEST, msg
		}
	}
	if len(p.dels) == 0 {
		return command.Code_OK, ""
	}
	// Merge the deleted spans, then look each put up.
	slices.SortFunc(p.dels, func(a, b span) int { return bytes.Compare(a.lo, b.lo) })
	merged := p.dels[:1]
	for _, s := range p.dels[1:] {
		last := &merged[len(merged)-1]
		switch {
		case last.hi == nil:
		case bytes.Compare(s.lo, last.hi) <= 0:
			if s.hi == nil || bytes.Compare(s.hi, last.hi) > 0 {
				last.hi = s.hi
			}
		default:
			merged = append(merged, s)
		}
	}
	for _, k := range p.puts {
		j := sort.Search(len(merged), func(i int) bool { return bytes.Compare(merged[i].lo, k) > 0 }) - 1
		if j >= 0 && (merged[j].hi == nil || bytes.Compare(k, merged[j].hi) < 0) {
			return command.Code_BAD_REQUEST, msg
		}
	}
	return command.Code_OK, ""
}

// run executes the ops on t's path, checked already; i walks path.
func (e *exec) run(t *command.TxnRequest, path []bool, i *int) (*command.TxnResponse, error) {
	f := e.f
	ok := path[*i]
	*i++
	ops := branch(t, ok)
	resp := &command.TxnResponse{Succeeded: ok, Responses: make([]*command.ResponseOp, 0, len(ops))}
	for _, op := range ops {
		var out command.ResponseOp
		switch r := op.GetRequest().(type) {
		case *command.RequestOp_RequestRange:
			rr, _, _, err := rangeKeys(e.r, r.RequestRange, e.viewRev(), f.compact, f.live.t)
			if err != nil {
				return nil, err
			}
			out.Response = &command.ResponseOp_ResponseRange{ResponseRange: rr}
		case *command.RequestOp_RequestPut:
			pr, _, _, err := e.put(r.RequestPut, false)
			if err != nil {
				return nil, err
			}
			out.Response = &command.ResponseOp_ResponsePut{ResponsePut: pr}
		case *command.RequestOp_RequestDeleteRange:
			dr := r.RequestDeleteRange
			victims, err := e.collect(dr.GetKey(), dr.GetRangeEnd(), nil)
			if err != nil {
				return nil, err
			}
			del, err := e.deleteKeys(victims, dr.GetPrevKv())
			if err != nil {
				return nil, err
			}
			out.Response = &command.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: del}
		case *command.RequestOp_RequestTxn:
			tr, err := e.run(r.RequestTxn, path, i)
			if err != nil {
				return nil, err
			}
			out.Response = &command.ResponseOp_ResponseTxn{ResponseTxn: tr}
		case *command.RequestOp_RequestClaim:
			cr, err := e.runClaim(r.RequestClaim)
			if err != nil {
				return nil, err
			}
			out.Response = &command.ResponseOp_ResponseClaim{ResponseClaim: cr}
		case *command.RequestOp_RequestAdd:
			ar, err := e.runAdd(r.RequestAdd)
			if err != nil {
				return nil, err
			}
			out.Response = &command.ResponseOp_ResponseAdd{ResponseAdd: ar}
		}
		resp.Responses = append(resp.Responses, &out)
	}
	return resp, nil
}
