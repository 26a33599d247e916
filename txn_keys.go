package concord

import (
	"bytes"
	"fmt"
)

// checkTxnKeys refuses a txn that, on any path its compares could take,
// puts a key twice or puts a key it also deletes, as etcd does (its
// checkIntervals) before anything runs. The state machine checks the path
// taken only, so without this such a txn would pass or fail by the
// store's state. A key put in Then and in Else is fine: only one runs.
// Claims are left to the state machine: the keys they write depend on
// the store.
func checkTxnKeys(op *Op) error {
	for _, ops := range [][]Op{op.thenOps, op.elseOps} {
		if _, _, err := txnKeys(ops); err != nil {
			return err
		}
	}
	return nil
}

// keySpan is the keys a delete names: [lo, hi), lo alone if hi is nil,
// every key from lo if hi is "\x00".
type keySpan struct{ lo, hi []byte }

func (s keySpan) has(k []byte) bool {
	switch {
	case s.hi == nil:
		return bytes.Equal(k, s.lo)
	case bytes.Equal(s.hi, []byte{0}):
		return bytes.Compare(k, s.lo) >= 0
	}
	return bytes.Compare(k, s.lo) >= 0 && bytes.Compare(k, s.hi) < 0
}

func spansHave(spans []keySpan, k []byte) bool {
	for _, s := range spans {
		if s.has(k) {
			return true
		}
	}
	return false
}

// txnKeys returns the keys ops put and the spans they delete, nested txns
// included, or an error for a key put twice or put and deleted.
func txnKeys(ops []Op) (puts map[string]bool, dels []keySpan, err error) {
	dup := func(k string) error {
		return fmt.Errorf("%w: duplicate key %q given in txn request", ErrInvalidRequest, k)
	}
	for i := range ops {
		if ops[i].t == opDelete {
			dels = append(dels, keySpan{ops[i].key, ops[i].end})
		}
	}
	puts = map[string]bool{}
	for i := range ops {
		if ops[i].t != opTxn {
			continue
		}
		putsThen, delsThen, err := txnKeys(ops[i].thenOps)
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := txnKeys(ops[i].elseOps)
		if err != nil {
			return nil, nil, err
		}
		for k := range putsThen {
			if puts[k] || spansHave(dels, []byte(k)) {
				return nil, nil, dup(k)
			}
			puts[k] = true
		}
		for k := range putsElse {
			if (puts[k] && !putsThen[k]) || spansHave(dels, []byte(k)) {
				return nil, nil, dup(k)
			}
			puts[k] = true
		}
		dels = append(dels, delsThen...)
		dels = append(dels, delsElse...)
	}
	for i := range ops {
		if ops[i].t != opPut && ops[i].t != opAdd {
			continue
		}
		k := string(ops[i].key)
		if puts[k] || spansHave(dels, ops[i].key) {
			return nil, nil, dup(k)
		}
		puts[k] = true
	}
	return puts, dels, nil
}
