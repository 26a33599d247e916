package fsm

import (
	"bytes"
	"cmp"
	"errors"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
)

// compares evaluates every compare against the current state r sees, as
// etcd does: a range compare holds if it holds for each key of the range;
// on no key, a VALUE compare fails and the others compare a zero
// KeyValue.
func (e *exec) compares(cs []*command.Compare) (bool, error) {
	for _, c := range cs {
		ok, err := e.compare(c)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// errCompareFailed stops a range compare at its first failing key.
var errCompareFailed = errors.New("fsm: compare failed")

func (e *exec) compare(c *command.Compare) (bool, error) {
	if len(c.GetKey()) == 0 && isSingle(c.GetRangeEnd()) {
		return false, nil // no key is empty
	}
	seen := false
	err := e.scan(c.GetKey(), c.GetRangeEnd(), func(_ []byte, item *badger.Item) error {
		seen = true
		return item.Value(func(v []byte) error {
			rec, err := parseRecord(v)
			if err != nil {
				return err
			}
			if !holds(c, &rec, rec.value) {
				return errCompareFailed
			}
			return nil
		})
	})
	if errors.Is(err, errCompareFailed) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !seen {
		return c.GetTarget() != command.Compare_VALUE && holds(c, &record{}, nil), nil
	}
	return true, nil
}

// holds tells whether c holds for rec, whose value is value.
func holds(c *command.Compare, rec *record, value []byte) bool {
	var n int
	switch c.GetTarget() {
	case command.Compare_VALUE:
		n = bytes.Compare(value, c.GetValue())
	case command.Compare_VERSION:
		n = cmp.Compare(rec.version, c.GetVersion())
	case command.Compare_CREATE:
		n = cmp.Compare(rec.create, c.GetCreateRevision())
	case command.Compare_MOD:
		n = cmp.Compare(rec.mod, c.GetModRevision())
	case command.Compare_LEASE:
		n = cmp.Compare(rec.lease, c.GetLease())
	default:
		return false
	}
	switch c.GetResult() {
	case command.Compare_EQUAL:
		return n == 0
	case command.Compare_NOT_EQUAL:
		return n != 0
	case command.Compare_GREATER:
		return n > 0
	case command.Compare_LESS:
		return n < 0
	}
	return false
}
