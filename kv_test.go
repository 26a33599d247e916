package concord_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/concordkv/concord"
)

func TestPutGet(t *testing.T) {
	n := openOne(t)
	st := n.Status()
	if st.Revision != 1 {
		t.Fatalf("fresh store at revision %d, want 1", st.Revision)
	}
	r := put(t, n, "k", "v1")
	if r.Revision != 2 || r.MemberID != st.ID || r.RaftTerm != n.Status().Term || r.PrevKv != nil {
		t.Fatalf("first put: %+v", r)
	}
	g := get(t, n, "k")
	want := concord.KeyValue{Key: []byte("k"), Value: []byte("v1"), CreateRevision: 2, ModRevision: 2, Version: 1}
	if len(g.Kvs) != 1 || fmt.Sprint(*g.Kvs[0]) != fmt.Sprint(want) || g.Count != 1 || g.More || g.Revision != 2 {
		t.Fatalf("get: %+v %+v", g, g.Kvs)
	}
	put(t, n, "k", "v2")
	g = get(t, n, "k")
	want = concord.KeyValue{Key: []byte("k"), Value: []byte("v2"), CreateRevision: 2, ModRevision: 3, Version: 2}
	if fmt.Sprint(*g.Kvs[0]) != fmt.Sprint(want) || g.Revision != 3 {
		t.Fatalf("after second put: %+v", *g.Kvs[0])
	}
	g = get(t, n, "missing")
	if len(g.Kvs) != 0 || g.Count != 0 || g.Revision != 3 {
		t.Fatalf("missing key: %+v", g)
	}
	if v := value(t, n, "k", concord.WithSerializable()); v != "v2" {
		t.Fatalf("serializable get = %q", v)
	}
}

func TestPutPrevKV(t *testing.T) {
	n := openOne(t)
	if r := put(t, n, "k", "a", concord.WithPrevKV()); r.PrevKv != nil {
		t.Fatalf("prev of a new key: %+v", r.PrevKv)
	}
	r := put(t, n, "k", "b", concord.WithPrevKV())
	if r.PrevKv == nil || string(r.PrevKv.Value) != "a" || r.PrevKv.ModRevision != 2 || r.PrevKv.Version != 1 {
		t.Fatalf("prev: %+v", r.PrevKv)
	}
	if r := put(t, n, "k", "c"); r.PrevKv != nil {
		t.Fatal("prev without WithPrevKV")
	}
}

func TestPutIgnoreValue(t *testing.T) {
	n := openOne(t)
	put(t, n, "k", "keep")
	put(t, n, "k", "", concord.WithIgnoreValue())
	g := get(t, n, "k")
	if string(g.Kvs[0].Value) != "keep" || g.Kvs[0].Version != 2 {
		t.Fatalf("after ignore-value put: %+v", *g.Kvs[0])
	}
	put(t, n, "k", "new", concord.WithIgnoreLease())
	if v := value(t, n, "k"); v != "new" {
		t.Fatalf("after ignore-lease put: %q", v)
	}
}

func TestDelete(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	for _, k := range []string{"a", "b1", "b2", "b3", "c"} {
		put(t, n, k, "v-"+k)
	}
	d, err := n.Delete(ctx, "a")
	if err != nil || d.Deleted != 1 || d.PrevKvs != nil || d.Revision != 7 {
		t.Fatalf("delete a: %+v %v", d, err)
	}
	d, err = n.Delete(ctx, "a")
	if err != nil || d.Deleted != 0 || d.Revision != 7 {
		t.Fatalf("delete of a missing key: %+v %v (want 0 deleted, revision unchanged)", d, err)
	}
	d, err = n.Delete(ctx, "b", concord.WithPrefix(), concord.WithPrevKV())
	if err != nil || d.Deleted != 3 || d.Revision != 8 {
		t.Fatalf("delete prefix: %+v %v", d, err)
	}
	if got := keys(d.PrevKvs); !slices.Equal(got, []string{"b1", "b2", "b3"}) || string(d.PrevKvs[1].Value) != "v-b2" {
		t.Fatalf("prev kvs %v", got)
	}
	if g := get(t, n, "", concord.WithPrefix()); !slices.Equal(keys(g.Kvs), []string{"c"}) {
		t.Fatalf("left %v", keys(g.Kvs))
	}
	// A re-created key starts over: version 1, a new create revision.
	put(t, n, "a", "again")
	g := get(t, n, "a")
	if g.Kvs[0].Version != 1 || g.Kvs[0].CreateRevision != 9 {
		t.Fatalf("re-created key %+v", *g.Kvs[0])
	}
	d, err = n.Delete(ctx, "", concord.WithFromKey())
	if err != nil || d.Deleted != 2 {
		t.Fatalf("delete all: %+v %v", d, err)
	}
}

// TestDeleteRangeBudget: a Delete of a range puts all its keys in one
// revision, within the state machine's budget for one command: 3,000
// short keys go at once (as documented), 3,400 get ErrRequestTooLarge and
// nothing changes, and in parts they go.
func TestDeleteRangeBudget(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	fill := func(pfx string, count int) {
		for i := 0; i < count; i += 100 {
			var ops []concord.Op
			for j := i; j < min(i+100, count); j++ {
				ops = append(ops, concord.OpPut(fmt.Sprintf("%s%05d", pfx, j), "v"))
			}
			if _, err := n.Txn(ctx).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill("fits/", 3000)
	if d, err := n.Delete(ctx, "fits/", concord.WithPrefix()); err != nil || d.Deleted != 3000 {
		t.Fatalf("Delete of 3,000 keys: %v, %v", d, err)
	}
	fill("over/", 3400)
	unchanged(t, n, concord.ErrRequestTooLarge, func() error {
		_, err := n.Delete(ctx, "over/", concord.WithPrefix())
		return err
	})
	if c := get(t, n, "over/", concord.WithPrefix(), concord.WithCountOnly()).Count; c != 3400 {
		t.Fatalf("%d keys left of 3,400 after a refused Delete", c)
	}
	for _, r := range [][2]string{{"over/00000", "over/01700"}, {"over/01700", "over0"}} {
		if _, err := n.Delete(ctx, r[0], concord.WithRange(r[1])); err != nil {
			t.Fatalf("Delete [%s, %s): %v", r[0], r[1], err)
		}
	}
	if c := get(t, n, "over/", concord.WithPrefix(), concord.WithCountOnly()).Count; c != 0 {
		t.Fatalf("%d keys left after deleting in parts", c)
	}
}

func TestRanges(t *testing.T) {
	n := openOne(t)
	all := []string{"a", "ab", "abc", "b", "c", "c\xff", "d"}
	for _, k := range all {
		put(t, n, k, k)
	}
	for _, tc := range []struct {
		key  string
		opts []concord.OpOption
		want []string
	}{
		{"a", nil, []string{"a"}},
		{"a", []concord.OpOption{concord.WithPrefix()}, []string{"a", "ab", "abc"}},
		{"ab", []concord.OpOption{concord.WithPrefix()}, []string{"ab", "abc"}},
		{"c", []concord.OpOption{concord.WithPrefix()}, []string{"c", "c\xff"}},
		{"ab", []concord.OpOption{concord.WithRange("c")}, []string{"ab", "abc", "b"}},
		{"b", []concord.OpOption{concord.WithFromKey()}, []string{"b", "c", "c\xff", "d"}},
		{"", []concord.OpOption{concord.WithPrefix()}, all},
		{"", []concord.OpOption{concord.WithFromKey()}, all},
		{"", []concord.OpOption{concord.WithRange("b")}, []string{"a", "ab", "abc"}},
		{"x", []concord.OpOption{concord.WithPrefix()}, []string{}},
		{"b", []concord.OpOption{concord.WithRange("a")}, []string{}},
	} {
		g := get(t, n, tc.key, tc.opts...)
		if got := keys(g.Kvs); !slices.Equal(got, tc.want) || g.Count != int64(len(tc.want)) {
			t.Errorf("Get(%q, %d opts) = %q count %d, want %q", tc.key, len(tc.opts), got, g.Count, tc.want)
		}
	}
}

func TestLimitCountMore(t *testing.T) {
	n := openOne(t)
	for i := range 5 {
		put(t, n, fmt.Sprintf("k%d", i), "v")
	}
	g := get(t, n, "k", concord.WithPrefix(), concord.WithLimit(2))
	if !slices.Equal(keys(g.Kvs), []string{"k0", "k1"}) || g.Count != 5 || !g.More {
		t.Fatalf("limit 2: %v count %d more %v", keys(g.Kvs), g.Count, g.More)
	}
	g = get(t, n, "k", concord.WithPrefix(), concord.WithLimit(5))
	if len(g.Kvs) != 5 || g.Count != 5 || g.More {
		t.Fatalf("limit 5: %v count %d more %v", keys(g.Kvs), g.Count, g.More)
	}
	g = get(t, n, "k", concord.WithPrefix(), concord.WithLimit(0))
	if len(g.Kvs) != 5 || g.More {
		t.Fatal("limit 0 is no limit")
	}
	g = get(t, n, "k", concord.WithPrefix(), concord.WithCountOnly())
	if len(g.Kvs) != 0 || g.Count != 5 {
		t.Fatalf("count only: %d kvs, count %d", len(g.Kvs), g.Count)
	}
	g = get(t, n, "k", concord.WithPrefix(), concord.WithKeysOnly(), concord.WithLimit(3))
	if !slices.Equal(keys(g.Kvs), []string{"k0", "k1", "k2"}) || g.Kvs[0].Value != nil || g.Kvs[0].ModRevision != 2 || !g.More {
		t.Fatalf("keys only: %+v", g.Kvs)
	}
}

func TestSort(t *testing.T) {
	n := openOne(t)
	// Created in order a, b, c, d with values that sort otherwise; b is
	// updated last and most often.
	put(t, n, "a", "3")
	put(t, n, "b", "1")
	put(t, n, "c", "4")
	put(t, n, "d", "2")
	put(t, n, "b", "1")
	put(t, n, "b", "5")
	for _, tc := range []struct {
		target concord.SortTarget
		order  concord.SortOrder
		want   []string
	}{
		{concord.SortByKey, concord.SortNone, []string{"a", "b", "c", "d"}},
		{concord.SortByKey, concord.SortAscend, []string{"a", "b", "c", "d"}},
		{concord.SortByKey, concord.SortDescend, []string{"d", "c", "b", "a"}},
		{concord.SortByValue, concord.SortAscend, []string{"d", "a", "c", "b"}},
		{concord.SortByValue, concord.SortDescend, []string{"b", "c", "a", "d"}},
		{concord.SortByValue, concord.SortNone, []string{"d", "a", "c", "b"}},
		{concord.SortByCreateRevision, concord.SortDescend, []string{"d", "c", "b", "a"}},
		{concord.SortByModRevision, concord.SortAscend, []string{"a", "c", "d", "b"}},
		{concord.SortByModRevision, concord.SortDescend, []string{"b", "d", "c", "a"}},
		{concord.SortByVersion, concord.SortDescend, []string{"b", "a", "c", "d"}},
	} {
		g := get(t, n, "", concord.WithPrefix(), concord.WithSort(tc.target, tc.order))
		if got := keys(g.Kvs); !slices.Equal(got, tc.want) {
			t.Errorf("sort %d/%d = %v, want %v", tc.target, tc.order, got, tc.want)
		}
	}
	// The range is sorted before it is cut.
	g := get(t, n, "", concord.WithPrefix(), concord.WithSort(concord.SortByValue, concord.SortDescend), concord.WithLimit(2))
	if got := keys(g.Kvs); !slices.Equal(got, []string{"b", "c"}) || !g.More || g.Count != 4 {
		t.Fatalf("sorted with limit: %v more %v count %d", got, g.More, g.Count)
	}
	if got := values(g.Kvs); !slices.Equal(got, []string{"5", "4"}) {
		t.Fatalf("sorted values %v", got)
	}
}

func TestReadPastRevisions(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "k", "v1") // 2
	put(t, n, "k", "v2") // 3
	put(t, n, "k2", "x") // 4
	n.Delete(ctx, "k")   // 5
	put(t, n, "k", "v3") // 6
	for rev, want := range map[int64]string{1: "<none>", 2: "v1", 3: "v2", 4: "v2", 5: "<none>", 6: "v3", 0: "v3"} {
		if got := value(t, n, "k", concord.WithRev(rev)); got != want {
			t.Errorf("k at %d = %q, want %q", rev, got, want)
		}
	}
	g := get(t, n, "k", concord.WithRev(3))
	if g.Revision != 6 {
		t.Fatalf("header revision of a past read = %d, want the current 6", g.Revision)
	}
	if kv := g.Kvs[0]; kv.CreateRevision != 2 || kv.ModRevision != 3 || kv.Version != 2 {
		t.Fatalf("k at 3: %+v", *kv)
	}
	if got := keys(get(t, n, "k", concord.WithPrefix(), concord.WithRev(4)).Kvs); !slices.Equal(got, []string{"k", "k2"}) {
		t.Fatalf("prefix at 4: %v", got)
	}
	_, err := n.Get(ctx, "k", concord.WithRev(7))
	wantErr(t, err, concord.ErrFutureRev)
	_, err = n.Get(ctx, "k", concord.WithRev(-1))
	wantErr(t, err, concord.ErrInvalidRevision)
}

func TestCompact(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "k", "v1") // 2
	put(t, n, "k", "v2") // 3
	put(t, n, "k", "v3") // 4
	put(t, n, "j", "j1") // 5
	if err := n.Compact(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if st := n.Status(); st.CompactRevision != 3 || st.Revision != 5 {
		t.Fatalf("status after compact: %+v", st)
	}
	_, err := n.Get(ctx, "k", concord.WithRev(2))
	wantErr(t, err, concord.ErrCompacted)
	if v := value(t, n, "k", concord.WithRev(3)); v != "v2" {
		t.Fatalf("k at the compact revision = %q", v)
	}
	if v := value(t, n, "k", concord.WithRev(4)); v != "v3" {
		t.Fatalf("k at 4 = %q", v)
	}
	unchanged(t, n, concord.ErrCompacted, func() error { return n.Compact(ctx, 3) })
	unchanged(t, n, concord.ErrCompacted, func() error { return n.Compact(ctx, 2) })
	unchanged(t, n, concord.ErrFutureRev, func() error { return n.Compact(ctx, 6) })
	unchanged(t, n, concord.ErrInvalidRevision, func() error { return n.Compact(ctx, -1) })
	if err := n.Compact(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if v := value(t, n, "k"); v != "v3" {
		t.Fatalf("current k after compaction = %q", v)
	}
}

// TestRevisionPerWrite: every write creates one revision, whatever it
// holds; what writes nothing creates none.
func TestRevisionPerWrite(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	step := func(what string, want int64, f func() error) {
		t.Helper()
		before := n.Status().Revision
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := n.Status().Revision - before; got != want {
			t.Fatalf("%s moved the revision by %d, want %d", what, got, want)
		}
	}
	step("put", 1, func() error { _, err := n.Put(ctx, "a", "1"); return err })
	step("txn of three writes", 1, func() error {
		r, err := n.Txn(ctx).Then(concord.OpPut("b", "1"), concord.OpPut("c", "1"), concord.OpDelete("a")).Commit()
		if err == nil && r.Revision != n.Status().Revision {
			err = fmt.Errorf("txn header revision %d", r.Revision)
		}
		return err
	})
	step("delete of nothing", 0, func() error { _, err := n.Delete(ctx, "nope"); return err })
	step("read-only txn", 0, func() error { _, err := n.Txn(ctx).Then(concord.OpGet("b")).Commit(); return err })
	step("failed txn without else", 0, func() error {
		_, err := n.Txn(ctx).If(concord.Compare(concord.Value("b"), "=", "x")).Then(concord.OpPut("b", "2")).Commit()
		return err
	})
	step("get", 0, func() error { _, err := n.Get(ctx, "b"); return err })
	step("delete range", 1, func() error { _, err := n.Delete(ctx, "", concord.WithFromKey()); return err })
}
