package concord_test

import (
	"math"
	"slices"
	"testing"

	"github.com/concordkv/concord"
)

// TestTxnCompares checks each target with each operator on a present and a
// missing key, as etcd evaluates them.
func TestTxnCompares(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "k", "v1") // 2
	put(t, n, "k", "v2") // 3: k is v2, version 2, created 2, modified 3
	put(t, n, "x", "y")  // 4
	C := concord.Compare
	for _, tc := range []struct {
		name string
		cmp  concord.Cmp
		want bool
	}{
		{"value =", C(concord.Value("k"), "=", "v2"), true},
		{"value = other", C(concord.Value("k"), "=", "v1"), false},
		{"value !=", C(concord.Value("k"), "!=", "v1"), true},
		{"value <", C(concord.Value("k"), "<", "v3"), true},
		{"value < equal", C(concord.Value("k"), "<", "v2"), false},
		{"value >", C(concord.Value("k"), ">", "v10"), true},
		{"value bytes", C(concord.Value("k"), "=", []byte("v2")), true},
		{"version =", C(concord.Version("k"), "=", 2), true},
		{"version !=", C(concord.Version("k"), "!=", 2), false},
		{"version <", C(concord.Version("k"), "<", int32(3)), true},
		{"version >", C(concord.Version("k"), ">", uint8(2)), false},
		{"create =", C(concord.CreateRevision("k"), "=", int64(2)), true},
		{"create <", C(concord.CreateRevision("k"), "<", uint(2)), false},
		{"create >", C(concord.CreateRevision("k"), ">", 1), true},
		{"mod =", C(concord.ModRevision("k"), "=", uint64(3)), true},
		{"mod !=", C(concord.ModRevision("k"), "!=", 3), false},
		{"mod >", C(concord.ModRevision("k"), ">", int16(2)), true},
		{"mod <", C(concord.ModRevision("k"), "<", 4), true},
		{"lease =", C(concord.LeaseValue("k"), "=", concord.NoLease), true},
		{"lease !=", C(concord.LeaseValue("k"), "!=", 0), false},
		{"lease >", C(concord.LeaseValue("k"), ">", concord.LeaseID(-1)), true},
		{"missing version = 0", C(concord.Version("nope"), "=", 0), true},
		{"missing create = 0", C(concord.CreateRevision("nope"), "=", 0), true},
		{"missing mod < 1", C(concord.ModRevision("nope"), "<", 1), true},
		{"missing lease = 0", C(concord.LeaseValue("nope"), "=", 0), true},
		{"missing value = empty", C(concord.Value("nope"), "=", ""), false},
		{"missing value != x", C(concord.Value("nope"), "!=", "x"), false},
		{"prefix all version > 0", C(concord.Version("k"), ">", 0).WithPrefix(), true},
		{"range mod < 4 fails on x", C(concord.ModRevision("k"), "<", 4).WithRange("z"), false},
		{"empty range compares as missing", C(concord.CreateRevision("m"), "=", 0).WithRange("n"), true},
	} {
		r, err := n.Txn(ctx).If(tc.cmp).Then(concord.OpGet("k")).Else(concord.OpGet("x")).Commit()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if r.Succeeded != tc.want {
			t.Errorf("%s: succeeded = %v, want %v", tc.name, r.Succeeded, tc.want)
		}
		wantKey := map[bool]string{true: "k", false: "x"}[tc.want]
		if g := r.Responses[0].Get(); g == nil || string(g.Kvs[0].Key) != wantKey {
			t.Errorf("%s: the wrong branch ran", tc.name)
		}
	}
	// Several compares are a conjunction, across If calls too.
	r, err := n.Txn(ctx).If(C(concord.Value("k"), "=", "v2")).If(C(concord.Version("k"), "=", 1)).Commit()
	if err != nil || r.Succeeded {
		t.Fatalf("conjunction: %+v %v", r, err)
	}
}

func TestTxnBadCompares(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "k", "v")
	for name, tc := range map[string]struct {
		cmp  concord.Cmp
		want error
	}{
		"unknown operator": {concord.Compare(concord.Version("k"), "==", 1), concord.ErrInvalidRequest},
		"int for value":    {concord.Compare(concord.Value("k"), "=", 1), concord.ErrInvalidRequest},
		"string for mod":   {concord.Compare(concord.ModRevision("k"), "=", "1"), concord.ErrInvalidRequest},
		"uint64 overflow":  {concord.Compare(concord.Version("k"), "<", uint64(math.MaxUint64)), concord.ErrInvalidRequest},
		"empty key":        {concord.Compare(concord.Version(""), "=", 0), concord.ErrEmptyKey},
	} {
		t.Run(name, func(t *testing.T) {
			unchanged(t, n, tc.want, func() error {
				_, err := n.Txn(ctx).If(tc.cmp).Then(concord.OpPut("k", "changed")).Commit()
				return err
			})
		})
	}
}

func TestTxnBranches(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "d", "gone soon")
	r, err := n.Txn(ctx).
		If(concord.Compare(concord.CreateRevision("a"), "=", 0)).
		Then(concord.OpPut("a", "1", concord.WithPrevKV()), concord.OpGet("a"), concord.OpDelete("d", concord.WithPrevKV())).
		Else(concord.OpGet("a")).
		Commit()
	if err != nil || !r.Succeeded || len(r.Responses) != 3 {
		t.Fatalf("txn: %+v %v", r, err)
	}
	p, g, d := r.Responses[0].Put(), r.Responses[1].Get(), r.Responses[2].Del()
	if p == nil || p.PrevKv != nil || r.Responses[0].Get() != nil {
		t.Fatalf("put response %+v", r.Responses[0])
	}
	// Ops see the txn's earlier writes; all writes share one revision.
	if g == nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "1" || g.Kvs[0].ModRevision != r.Revision {
		t.Fatalf("get in txn: %+v", g)
	}
	if d == nil || d.Deleted != 1 || string(d.PrevKvs[0].Value) != "gone soon" {
		t.Fatalf("delete in txn: %+v", d)
	}
	if r.Revision != 3 || p.Revision != 3 {
		t.Fatalf("txn revision %d, put header %d, want 3", r.Revision, p.Revision)
	}
	// Now a exists: the else branch runs.
	r, err = n.Txn(ctx).If(concord.Compare(concord.CreateRevision("a"), "=", 0)).
		Then(concord.OpPut("a", "2")).Else(concord.OpGet("a")).Commit()
	if err != nil || r.Succeeded || r.Responses[0].Get() == nil || string(r.Responses[0].Get().Kvs[0].Value) != "1" {
		t.Fatalf("else branch: %+v %v", r, err)
	}
	// No If: Then runs.
	r, err = n.Txn(ctx).Then(concord.OpPut("b", "1")).Else(concord.OpPut("c", "1")).Commit()
	if err != nil || !r.Succeeded || value(t, n, "b") != "1" || value(t, n, "c") != "<none>" {
		t.Fatalf("txn without If: %+v %v", r, err)
	}
	// Empty txn.
	if r, err := n.Txn(ctx).Commit(); err != nil || !r.Succeeded || len(r.Responses) != 0 {
		t.Fatalf("empty txn: %+v %v", r, err)
	}
}

// TestTxnNested: a nested txn's compares see the state before the outer
// txn, and its writes share the outer revision.
func TestTxnNested(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	inner := concord.OpTxn(
		[]concord.Cmp{concord.Compare(concord.Version("a"), "=", 0)},
		[]concord.Op{concord.OpPut("b", "a was absent"), concord.OpTxn(nil, []concord.Op{concord.OpPut("c", "deep")}, nil)},
		[]concord.Op{concord.OpPut("b", "a was present")},
	)
	r, err := n.Txn(ctx).Then(concord.OpPut("a", "1"), inner).Commit()
	if err != nil || !r.Succeeded {
		t.Fatalf("nested: %+v %v", r, err)
	}
	if v := value(t, n, "b"); v != "a was absent" {
		t.Fatalf("b = %q: the nested compare saw the outer txn's write", v)
	}
	tr := r.Responses[1].Txn()
	if tr == nil || !tr.Succeeded || tr.Responses[0].Put() == nil || tr.Responses[1].Txn() == nil {
		t.Fatalf("nested response %+v", tr)
	}
	for _, k := range []string{"a", "b", "c"} {
		if g := get(t, n, k); g.Kvs[0].ModRevision != r.Revision {
			t.Fatalf("%s written at %d, txn at %d", k, g.Kvs[0].ModRevision, r.Revision)
		}
	}
	// The else branch of a nested txn.
	r, err = n.Txn(ctx).Then(inner).Commit()
	if err != nil || r.Responses[0].Txn().Succeeded || value(t, n, "b") != "a was present" {
		t.Fatalf("nested else: %+v %v", r, err)
	}
}

func TestTxnRefusals(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "k", "v")
	put(t, n, "k", "v2")
	n.Compact(ctx, 3)
	for name, tc := range map[string]struct {
		ops  []concord.Op
		want error
	}{
		"same key put twice":      {[]concord.Op{concord.OpPut("a", "1"), concord.OpPut("a", "2")}, concord.ErrInvalidRequest},
		"put and delete one key":  {[]concord.Op{concord.OpPut("a", "1"), concord.OpDelete("a")}, concord.ErrInvalidRequest},
		"empty key put":           {[]concord.Op{concord.OpPut("a", "1"), concord.OpPut("", "1")}, concord.ErrEmptyKey},
		"empty key get":           {[]concord.Op{concord.OpPut("a", "1"), concord.OpGet("")}, concord.ErrEmptyKey},
		"get below compaction":    {[]concord.Op{concord.OpPut("a", "1"), concord.OpGet("k", concord.WithRev(2))}, concord.ErrCompacted},
		"get in the future":       {[]concord.Op{concord.OpPut("a", "1"), concord.OpGet("k", concord.WithRev(99))}, concord.ErrFutureRev},
		"negative revision":       {[]concord.Op{concord.OpGet("k", concord.WithRev(-2))}, concord.ErrInvalidRevision},
		"nested bad op":           {[]concord.Op{concord.OpTxn(nil, []concord.Op{concord.OpPut("", "x")}, nil)}, concord.ErrEmptyKey},
		"ignore value of missing": {[]concord.Op{concord.OpPut("a", "1"), concord.OpPut("nope", "", concord.WithIgnoreValue())}, concord.ErrKeyNotFound},
		"empty op":                {[]concord.Op{{}}, concord.ErrInvalidRequest},
	} {
		t.Run(name, func(t *testing.T) {
			unchanged(t, n, tc.want, func() error {
				_, err := n.Txn(ctx).Then(tc.ops...).Commit()
				return err
			})
			if v := value(t, n, "a"); v != "<none>" {
				t.Fatalf("a = %q after a refused txn", v)
			}
		})
	}
}

// TestTxnDuplicateKeysOnAnyPath: as in etcd, a txn that puts a key twice,
// or puts a key it deletes, on any path its compares could take is
// refused before it runs, whichever branch the store's state picks, and
// changes nothing; a key put in Then and in Else is fine, and so is a key
// deleted twice.
func TestTxnDuplicateKeysOnAnyPath(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	never := concord.Compare(concord.Value("missing"), "=", "x") // false: Else runs
	for name, txn := range map[string]concord.Op{
		"put twice in the Then not taken": concord.OpTxn([]concord.Cmp{never}, []concord.Op{concord.OpPut("a", "1"), concord.OpPut("a", "2")}, nil),
		"put and delete in the Then not taken": concord.OpTxn([]concord.Cmp{never},
			[]concord.Op{concord.OpPut("d/x", "1"), concord.OpDelete("d/", concord.WithPrefix())}, []concord.Op{concord.OpPut("b", "1")}),
		"nested put of a key put outside": concord.OpTxn(nil, []concord.Op{concord.OpPut("a", "1"),
			concord.OpTxn([]concord.Cmp{never}, []concord.Op{concord.OpPut("a", "2")}, nil)}, nil),
		"nested Else put of a deleted key": concord.OpTxn(nil, []concord.Op{concord.OpDelete("a", concord.WithFromKey()),
			concord.OpTxn(nil, nil, []concord.Op{concord.OpPut("b", "2")})}, nil),
		"add of a key put": concord.OpTxn([]concord.Cmp{never}, []concord.Op{concord.OpPut("c", "1"), concord.OpAdd("c", 1)}, nil),
	} {
		t.Run(name, func(t *testing.T) {
			unchanged(t, n, concord.ErrInvalidRequest, func() error {
				_, err := n.Txn(ctx).Then(txn).Commit()
				return err
			})
		})
	}
	for name, txn := range map[string]concord.Op{
		"same put in Then and Else": concord.OpTxn([]concord.Cmp{never}, []concord.Op{concord.OpPut("a", "1")}, []concord.Op{concord.OpPut("a", "2")}),
		"nested Then and Else":      concord.OpTxn(nil, []concord.Op{concord.OpTxn([]concord.Cmp{never}, []concord.Op{concord.OpPut("a", "3")}, []concord.Op{concord.OpPut("a", "4")})}, nil),
		"a key deleted twice":       concord.OpTxn(nil, []concord.Op{concord.OpDelete("a"), concord.OpDelete("a", concord.WithPrefix())}, nil),
		"put beside a deleted span": concord.OpTxn(nil, []concord.Op{concord.OpDelete("d/", concord.WithPrefix()), concord.OpPut("e", "1")}, nil),
	} {
		if _, err := n.Txn(ctx).Then(txn).Commit(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCreate(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	r, err := n.Create(ctx, "k", "first")
	if err != nil || r.Revision != 2 {
		t.Fatalf("create: %+v %v", r, err)
	}
	unchanged(t, n, concord.ErrKeyExists, func() error { _, err := n.Create(ctx, "k", "second"); return err })
	if v := value(t, n, "k"); v != "first" {
		t.Fatalf("k = %q", v)
	}
	n.Delete(ctx, "k")
	if _, err := n.Create(ctx, "k", "third"); err != nil {
		t.Fatal(err)
	}
	unchanged(t, n, concord.ErrEmptyKey, func() error { _, err := n.Create(ctx, "", "x"); return err })
}

func TestCompareAndSwap(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "k", "a")
	r, err := n.CompareAndSwap(ctx, "k", "a", "b", concord.WithPrevKV())
	if err != nil || r.PrevKv == nil || string(r.PrevKv.Value) != "a" || r.Revision != 3 {
		t.Fatalf("cas: %+v %v", r, err)
	}
	unchanged(t, n, concord.ErrCompareFailed, func() error { _, err := n.CompareAndSwap(ctx, "k", "a", "c"); return err })
	unchanged(t, n, concord.ErrCompareFailed, func() error { _, err := n.CompareAndSwap(ctx, "nope", "", "c"); return err })
	if v := value(t, n, "k"); v != "b" {
		t.Fatalf("k = %q", v)
	}
}

func TestCompareAndDelete(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "k", "a")
	unchanged(t, n, concord.ErrCompareFailed, func() error { _, err := n.CompareAndDelete(ctx, "k", "b"); return err })
	d, err := n.CompareAndDelete(ctx, "k", "a")
	if err != nil || d.Deleted != 1 {
		t.Fatalf("cad: %+v %v", d, err)
	}
	unchanged(t, n, concord.ErrCompareFailed, func() error { _, err := n.CompareAndDelete(ctx, "k", "a"); return err })
}

func TestPutSequential(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	var got []string
	for i := range 3 {
		put(t, n, "other", "bump") // numbers need not be dense
		k, r, err := n.PutSequential(ctx, "q/", string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		if len(k) != len("q/")+20 {
			t.Fatalf("key %q is not prefix + 20 digits", k)
		}
		g := get(t, n, k)
		if g.Kvs[0].CreateRevision != r.Revision || string(g.Kvs[0].Value) != string(rune('a'+i)) {
			t.Fatalf("key %q: %+v, put at %d", k, *g.Kvs[0], r.Revision)
		}
		got = append(got, k)
	}
	if !slices.IsSorted(got) {
		t.Fatalf("keys out of order: %q", got)
	}
	// The marker lives outside the prefix.
	if g := get(t, n, "q/", concord.WithPrefix()); !slices.Equal(keys(g.Kvs), got) {
		t.Fatalf("prefix holds %q, want %q", keys(g.Kvs), got)
	}
	// A deleted number is never reused.
	n.Delete(ctx, got[2])
	k, _, err := n.PutSequential(ctx, "q/", "d")
	if err != nil || k <= got[2] {
		t.Fatalf("after a delete: %q %v, last was %q", k, err, got[2])
	}
	unchanged(t, n, concord.ErrKeyTooLarge, func() error {
		_, _, err := n.PutSequential(ctx, string(make([]byte, 1520)), "x")
		return err
	})
	unchanged(t, n, concord.ErrLeaseNotFound, func() error {
		_, _, err := n.PutSequential(ctx, "q/", "x", concord.WithLease(7))
		return err
	})
	// The marker "__" + prefix would lie under these prefixes.
	for _, prefix := range []string{"", "_", "___"} {
		unchanged(t, n, concord.ErrInvalidRequest, func() error {
			_, _, err := n.PutSequential(ctx, prefix, "x")
			return err
		})
	}
}

func TestOpOptionsIgnoredOrRefused(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	// Get options on a put are ignored, as in etcd.
	if _, err := n.Put(ctx, "k", "v", concord.WithLimit(3), concord.WithRev(99), concord.WithSerializable()); err != nil {
		t.Fatal(err)
	}
	// A range option does not make a put write a range.
	if _, err := n.Put(ctx, "k", "v", concord.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	// A TTL under the floor is refused before any lease is granted.
	unchanged(t, n, concord.ErrInvalidRequest, func() error {
		_, err := n.Put(ctx, "k", "v", concord.WithTTL(5))
		return err
	})
}
