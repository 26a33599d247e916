package fsm

import (
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// LiveKeys returns the live keys as the readCache holds them for rev, or
// nil if it holds none for rev.
func (f *FSM) LiveKeys(rev int64) []string {
	t := f.reads.liveAt(rev)
	if t == nil {
		return nil
	}
	out := []string{}
	t.Ascend(func(k string) bool { out = append(out, k); return true })
	return out
}

// SetHistoryIndexBudget makes History's index budget b, whatever the
// number of revisions, until the test ends.
func SetHistoryIndexBudget(t testing.TB, b int64) {
	old := historyIndexBudget
	historyIndexBudget = func(int64) int64 { return b }
	t.Cleanup(func() { historyIndexBudget = old })
}

// HistoryByIndex runs History's index path with the given budget: the
// number of events it found and whether it kept within the budget.
func HistoryByIndex(txn *badger.Txn, from, budget int64, key, end []byte) (int, bool, error) {
	evs, ok, err := historyByIndex(txn, from, budget, key, end)
	return len(evs), ok, err
}
