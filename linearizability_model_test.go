package concord_test

// The key-value model the linearizability tests check histories against,
// and the checking itself (see linearizability_test.go).

import (
	"fmt"
	"hash/fnv"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/concordkv/concord/internal/lintest"
)

// linKind is the kind of a recorded operation.
type linKind int

const (
	linGet linKind = iota // Get (linearizable, or serializable in the control)
	linPut                // Put with WithPrevKV
	linCAS                // CompareAndSwap
)

// linInput is an operation as called. Values written are unique across
// a history, and never "": the state "" means the key is absent.
type linInput struct {
	kind  linKind
	key   string
	value string // put, CAS: the value written
	old   string // CAS: the value compared against
}

// linOutcome is what a caller learned about an operation's effect.
type linOutcome int

const (
	// linOK: done, output value known (get: the value read; put: the
	// previous value).
	linOK linOutcome = iota
	// linFailed: a CAS that returned ErrCompareFailed: the value was not
	// old, nothing written.
	linFailed
	// linApplied: ErrResultUnknown (from a snapshot): the write was applied exactly once
	// between call and return, its result unseen (a put's previous
	// value; whether a CAS's compare held).
	linApplied
	// linUnknown: the call failed or timed out: the write may take effect
	// at any time after its call, or never. Recorded with an endless
	// return time.
	linUnknown
)

// linOutput is an operation's result.
type linOutput struct {
	outcome linOutcome
	value   string
}

// linStep is the sequential specification of one key: state is its value,
// "" when absent.
func linStep(state, input, output any) (bool, any) {
	st, in, out := state.(string), input.(linInput), output.(linOutput)
	switch in.kind {
	case linGet:
		return out.value == st, st
	case linPut:
		if out.outcome == linOK && out.value != st {
			return false, st
		}
		return true, in.value
	}
	// CAS: a missing key fails the compare, even against "".
	match := st != "" && st == in.old
	switch out.outcome {
	case linOK:
		return match, in.value
	case linFailed:
		return !match, st
	}
	// Applied or maybe applied: the compare decides. A CAS that never took
	// effect is linearized last, after everything (it never returned), and
	// so changes nothing anyone observed.
	if match {
		return true, in.value
	}
	return true, st
}

var linModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(linInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: linStep,
	Hash: func(state any) uint64 {
		h := fnv.New64a()
		h.Write([]byte(state.(string)))
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		res := fmt.Sprintf("%q", out.value)
		switch out.outcome {
		case linFailed:
			res = "compare failed"
		case linApplied:
			res = "applied, result unknown"
		case linUnknown:
			res = "?"
		}
		switch in.kind {
		case linGet:
			return fmt.Sprintf("get(%s) -> %s", in.key, res)
		case linPut:
			return fmt.Sprintf("put(%s, %q) -> prev %s", in.key, in.value, res)
		}
		return fmt.Sprintf("cas(%s, %q -> %q) -> %s", in.key, in.old, in.value, res)
	},
	DescribeState: func(state any) string {
		if state.(string) == "" {
			return "<absent>"
		}
		return fmt.Sprintf("%q", state)
	},
}

// pruneUnobserved leaves out the writes of unknown outcome that cannot
// matter to the verdict, since porcupine tries every subset of pending
// unknown writes at every point, which is exponential in their count. It
// keeps the verdict exact: an unknown write w of value v goes if
//
//  1. nothing observed v: no get returned it, no put returned it as its
//     previous value, no CAS compared against it; and
//  2. no CAS on w's key that did not succeed for sure (failed, applied
//     with an unseen result, or unknown) may be linearized after w's call.
//
// Why: a history without w that is linearizable stays so with w appended
// last (w never returned, and its step always succeeds). Conversely, take
// a linearization with w. If w changed nothing (a CAS whose compare failed)
// drop it. Else the operations after it, up to the next write that sets
// the key whatever its value, see v: by 1 and 2 none of them can be a
// get, a put that reports a previous value, or any CAS; so there are
// none, and dropping w leaves every other step as it was.
func pruneUnobserved(history []porcupine.Operation) ([]porcupine.Operation, int) {
	seen := map[string]bool{}
	lastCAS := map[string]int64{} // per key: latest return of a CAS not known to succeed
	for _, op := range history {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		if in.kind == linGet || (in.kind == linPut && out.outcome == linOK) {
			seen[out.value] = true
		}
		if in.kind == linCAS {
			seen[in.old] = true
			if out.outcome != linOK {
				lastCAS[in.key] = max(lastCAS[in.key], op.Return)
			}
		}
	}
	kept := make([]porcupine.Operation, 0, len(history))
	for _, op := range history {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		if in.kind != linGet && out.outcome == linUnknown && !seen[in.value] {
			if last, ok := lastCAS[in.key]; !ok || last < op.Call {
				continue
			}
		}
		kept = append(kept, op)
	}
	return kept, len(history) - len(kept)
}

// linCheckTime is porcupine's budget; running out of it fails the test.
const linCheckTime = 30 * time.Second

// linCheck checks history, without the writes pruneUnobserved leaves out;
// see lintest.Check.
func linCheck(t *testing.T, history []porcupine.Operation, notes []porcupine.Annotation, dir string) porcupine.CheckResult {
	t.Helper()
	pruned, dropped := pruneUnobserved(history)
	t.Logf("%d unobserved unknown writes left out of %d operations", dropped, len(history))
	return lintest.Check(t, linModel, pruned, notes, dir, linCheckTime)
}
