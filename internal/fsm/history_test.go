package fsm_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
)

// TestHistoryPathsAgree: after random commands, History from random
// revisions over random ranges replays exactly the events OnCommit
// reported, both when it reads the revision index and when it scans the
// history.
func TestHistoryPathsAgree(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Logf("seed %d", seed)
			nd := startNode(t, true)
			for _, req := range randomCommands(seed, 300) {
				nd.propose(req)
			}
			type event struct {
				rev  int64
				key  string
				full string // with the previous state
				bare string // without
			}
			var all []event
			for _, c := range nd.commits() {
				for _, ev := range c.Events {
					bare := &command.Event{Type: ev.Type, Kv: ev.Kv}
					all = append(all, event{ev.Kv.ModRevision, string(ev.Kv.Key), formatEvent(ev), formatEvent(bare)})
				}
			}
			r := rand.New(rand.NewPCG(seed, 7))
			err := nd.n.DB().View(func(txn *badger.Txn) error {
				cur, compact, err := fsm.ReadRevisions(txn)
				if err != nil {
					return err
				}
				for range 200 {
					k := modelKeys[r.IntN(len(modelKeys))]
					end := []string{"", prefixEnd(k), "\x00", modelKeys[r.IntN(len(modelKeys))]}[r.IntN(4)]
					from := max(compact, 1) + r.Int64N(cur-max(compact, 1)+2)
					prev := r.IntN(2) == 0
					var want []string
					for _, e := range all {
						if e.rev >= from && fsm.InRange([]byte(e.key), []byte(k), bs(end)) {
							want = append(want, map[bool]string{true: e.full, false: e.bare}[prev])
						}
					}
					for _, budget := range []int64{math.MaxInt64, 0} {
						fsm.SetHistoryIndexBudget(t, budget)
						var got []string
						err := nd.f.History(txn, from, []byte(k), bs(end), prev, func(ev *command.Event) error {
							got = append(got, formatEvent(ev))
							return nil
						})
						if err != nil {
							return err
						}
						if strings.Join(got, "\n") != strings.Join(want, "\n") {
							return fmt.Errorf("History(from %d, %q..%q, prev %v) with index budget %d:\n%s\nwant:\n%s",
								from, k, end, prev, budget, strings.Join(got, "\n"), strings.Join(want, "\n"))
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestHistoryIndexSkipsOtherChanges: the index path's cost is the
// range's recent revisions, not every change since from: a quiet key
// among many changes of another, and a range whose keys changed long
// ago, each fit a budget of 10 index keys.
func TestHistoryIndexSkipsOtherChanges(t *testing.T) {
	nd := startNode(t, false)
	for i := range 300 {
		mustOK(t, nd.propose(put("a/busy", fmt.Sprint(i))))
		if i%100 == 0 {
			mustOK(t, nd.propose(put("a/quiet", fmt.Sprint(i))))
		}
	}
	err := nd.n.DB().View(func(txn *badger.Txn) error {
		cur, _, err := fsm.ReadRevisions(txn)
		if err != nil {
			return err
		}
		check := func(from int64, key, end string, wantN int, wantOK bool) error {
			n, ok, err := fsm.HistoryByIndex(txn, from, 10, []byte(key), bs(end))
			if err != nil {
				return err
			}
			if ok != wantOK || (ok && n != wantN) {
				return fmt.Errorf("index path from %d over %q..%q: %d events, within budget %v; want %d, %v", from, key, end, n, ok, wantN, wantOK)
			}
			return nil
		}
		return errors.Join(
			check(1, "a/quiet", "", 3, true),
			check(cur-1, "a/", prefixEnd("a/"), 2, true), // a/busy's newest two; a/quiet skipped
			check(1, "a/", prefixEnd("a/"), 0, false),    // every revision of a/busy: over budget
			check(cur+1, "a/", prefixEnd("a/"), 0, true), // nothing since
		)
	})
	if err != nil {
		t.Fatal(err)
	}
}
