package fsm_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
)

// The keys random commands use: some share prefixes, some hold 0x00.
// Claims take a/ and b with markers under c/ and d.
var modelKeys = []string{"a", "a/1", "a/2", "a/3", "b", "b\x00", "b\x00\x00", "b\x01", "c", "c/1", "c/3", "c/x", "d"}

// randomCommands returns n random commands: puts (some with a lease),
// deletes of keys and ranges, txns with a compare and writes to distinct
// keys, compactions, lease grants and revokes (of leases 1 to 4, which may
// or may not exist), claims (some with a lease) and adds.
func randomCommands(seed uint64, n int) []*command.Request {
	r := rand.New(rand.NewPCG(seed, seed))
	key := func() string { return modelKeys[r.IntN(len(modelKeys))] }
	lease := func() int64 {
		if r.IntN(3) == 0 {
			return 1 + r.Int64N(4)
		}
		return 0
	}
	var out []*command.Request
	for i := 0; i < n; i++ {
		switch x := r.IntN(28); {
		case x < 10:
			p := put(key(), fmt.Sprint(r.IntN(5)))
			p.GetPut().Lease = lease()
			out = append(out, p)
		case x < 13:
			k := key()
			end := ""
			switch r.IntN(3) {
			case 1:
				end = prefixEnd(k)
			case 2:
				end = key()
			}
			out = append(out, del(k, end))
		case x < 18:
			ks := r.Perm(len(modelKeys))
			txn := &command.TxnRequest{
				Compare: []*command.Compare{{
					Key: []byte(modelKeys[ks[0]]), Target: command.Compare_VALUE, Result: command.Compare_EQUAL,
					TargetUnion: &command.Compare_Value{Value: []byte(fmt.Sprint(r.IntN(3)))},
				}},
				Success: []*command.RequestOp{
					{Request: &command.RequestOp_RequestPut{RequestPut: &command.PutRequest{Key: []byte(modelKeys[ks[1]]), Value: []byte("t"), Lease: lease()}}},
					{Request: &command.RequestOp_RequestDeleteRange{RequestDeleteRange: &command.DeleteRangeRequest{Key: []byte(modelKeys[ks[2]])}}},
				},
				Failure: []*command.RequestOp{
					{Request: &command.RequestOp_RequestPut{RequestPut: &command.PutRequest{Key: []byte(modelKeys[ks[3]]), Value: []byte("f")}}},
				},
			}
			out = append(out, &command.Request{Request: &command.Request_Txn{Txn: txn}})
		case x < 19:
			out = append(out, compact(int64(r.IntN(i+2))))
		case x < 22:
			out = append(out, &command.Request{Request: &command.Request_LeaseGrant{LeaseGrant: &command.LeaseGrantRequest{Id: 1 + r.Int64N(4), Ttl: 1e9}}})
		case x < 24:
			out = append(out, &command.Request{Request: &command.Request_LeaseRevoke{LeaseRevoke: &command.LeaseRevokeRequest{Id: 1 + r.Int64N(4)}}})
		case x < 26:
			c := modelClaims[r.IntN(len(modelClaims))]
			c = &command.ClaimRequest{Key: c.Key, RangeEnd: c.RangeEnd, Marker: c.Marker, Value: []byte(fmt.Sprint(r.IntN(3))), Lease: lease()}
			out = append(out, &command.Request{Request: &command.Request_Claim{Claim: c}})
		default:
			a := &command.AddRequest{Key: []byte([]string{"b", "d", "a/1"}[r.IntN(3)]), Delta: r.Int64N(7) - 3, Lease: lease()}
			out = append(out, &command.Request{Request: &command.Request_Add{Add: a}})
		}
	}
	return out
}

// modelClaims are the claims randomCommands makes: a prefix, one key, a
// range, and keys from b on (which only b... start with).
var modelClaims = []*command.ClaimRequest{
	{Key: []byte("a/"), RangeEnd: []byte("a0"), Marker: []byte("c/")},
	{Key: []byte("a/1"), Marker: []byte("c/1")},
	{Key: []byte("a/"), RangeEnd: []byte("a/3"), Marker: []byte("c/")},
	{Key: []byte("b"), RangeEnd: []byte{0}, Marker: []byte("d")},
}

// model is etcd's KV semantics the simple way: the whole state at every
// revision.
type model struct {
	states  []map[string]*command.KeyValue // by revision; [0] unused
	compact int64
	leases  map[int64]bool // the leases that exist
}

func newModel() *model {
	return &model{states: []map[string]*command.KeyValue{nil, {}}, leases: map[int64]bool{}}
}

func (m *model) rev() int64 { return int64(len(m.states) - 1) }

// apply runs req; it returns the expected code and revision after.
func (m *model) apply(req *command.Request) command.Code {
	cur := m.states[m.rev()]
	next := maps.Clone(cur)
	rev := m.rev() + 1
	wrote := false
	putKV := func(k, v string, lease int64) {
		kv := &command.KeyValue{Key: []byte(k), Value: []byte(v), CreateRevision: rev, ModRevision: rev, Version: 1, Lease: lease}
		if old := cur[k]; old != nil {
			kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
		}
		next[k], wrote = kv, true
	}
	delRange := func(k, end string) {
		for key := range cur {
			if matches(key, k, end) {
				delete(next, key)
				wrote = true
			}
		}
	}
	switch r := req.Request.(type) {
	case *command.Request_Put:
		if l := r.Put.Lease; l != 0 && !m.leases[l] {
			return command.Code_LEASE_NOT_FOUND
		}
		putKV(string(r.Put.Key), string(r.Put.Value), r.Put.Lease)
	case *command.Request_DeleteRange:
		delRange(string(r.DeleteRange.Key), string(r.DeleteRange.RangeEnd))
	case *command.Request_Txn:
		c := r.Txn.Compare[0]
		ops := r.Txn.Failure
		if kv := cur[string(c.Key)]; kv != nil && string(kv.Value) == string(c.GetValue()) {
			ops = r.Txn.Success
		}
		for _, op := range ops {
			if l := op.GetRequestPut().GetLease(); l != 0 && !m.leases[l] {
				return command.Code_LEASE_NOT_FOUND
			}
		}
		for _, op := range ops {
			if p := op.GetRequestPut(); p != nil {
				putKV(string(p.Key), string(p.Value), p.Lease)
			} else {
				delRange(string(op.GetRequestDeleteRange().Key), "")
			}
		}
	case *command.Request_Claim:
		c := r.Claim
		if c.Lease != 0 && !m.leases[c.Lease] {
			return command.Code_LEASE_NOT_FOUND
		}
		for _, k := range slices.Sorted(maps.Keys(cur)) {
			mk := string(c.Marker) + strings.TrimPrefix(k, string(c.Key))
			if matches(k, string(c.Key), string(c.RangeEnd)) && strings.HasPrefix(k, string(c.Key)) && cur[mk] == nil {
				old := cur[k]
				next[k] = &command.KeyValue{Key: old.Key, Value: old.Value, CreateRevision: old.CreateRevision,
					ModRevision: rev, Version: old.Version + 1, Lease: old.Lease}
				putKV(mk, string(c.Value), c.Lease)
				break
			}
		}
	case *command.Request_Add:
		a := r.Add
		var old int64
		if kv := cur[string(a.Key)]; kv != nil && len(kv.Value) > 0 {
			var err error
			if old, err = strconv.ParseInt(string(kv.Value), 10, 64); err != nil {
				return command.Code_BAD_REQUEST
			}
		}
		if a.Lease != 0 && !m.leases[a.Lease] {
			return command.Code_LEASE_NOT_FOUND
		}
		lease := a.Lease
		if kv := cur[string(a.Key)]; kv != nil && lease == 0 {
			lease = kv.Lease
		}
		putKV(string(a.Key), strconv.FormatInt(old+a.Delta, 10), lease)
	case *command.Request_Compaction:
		switch c := r.Compaction.Revision; {
		case c <= m.compact:
			return command.Code_COMPACTED
		case c > m.rev():
			return command.Code_FUTURE_REV
		default:
			m.compact = c
		}
	case *command.Request_LeaseGrant:
		if m.leases[r.LeaseGrant.Id] {
			return command.Code_LEASE_EXISTS
		}
		m.leases[r.LeaseGrant.Id] = true
	case *command.Request_LeaseRevoke:
		id := r.LeaseRevoke.Id
		if !m.leases[id] {
			return command.Code_LEASE_NOT_FOUND
		}
		delete(m.leases, id)
		for k, kv := range cur {
			if kv.Lease == id {
				delete(next, k)
				wrote = true
			}
		}
	}
	if wrote {
		m.states = append(m.states, next)
	}
	return command.Code_OK
}

// read returns the expected answer to a key-ordered range read.
func (m *model) read(key, end string, rev, limit int64) (command.Code, []*command.KeyValue, int64, bool) {
	switch {
	case rev > m.rev():
		return command.Code_FUTURE_REV, nil, 0, false
	case rev > 0 && rev < m.compact:
		return command.Code_COMPACTED, nil, 0, false
	case rev <= 0:
		rev = m.rev()
	}
	st := m.states[rev]
	var kvs []*command.KeyValue
	for _, k := range slices.Sorted(maps.Keys(st)) {
		if matches(k, key, end) {
			kvs = append(kvs, st[k])
		}
	}
	count := int64(len(kvs))
	if limit > 0 && count > limit {
		return command.Code_OK, kvs[:limit], count, true
	}
	return command.Code_OK, kvs, count, false
}

// TestMatchesModel: random commands give the results and revisions of a
// simple model of etcd's semantics, and random reads at random revisions
// (current, past, compacted, future) answer as the model does.
func TestMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			nd := startNode(t, false)
			m := newModel()
			r := rand.New(rand.NewPCG(seed, 99))
			for i, req := range randomCommands(seed, 400) {
				want := m.apply(req)
				resp := nd.propose(req)
				if resp.GetCode() != want || resp.GetRevision() != m.rev() || resp.GetCompactRevision() != m.compact {
					t.Fatalf("command %d %v: %v at %d/%d (%s), want %v at %d/%d", i, req, resp.GetCode(),
						resp.GetRevision(), resp.GetCompactRevision(), resp.GetError(), want, m.rev(), m.compact)
				}
				for range 3 {
					k := modelKeys[r.IntN(len(modelKeys))]
					end := []string{"", prefixEnd(k), "\x00", modelKeys[r.IntN(len(modelKeys))]}[r.IntN(4)]
					rev := m.compact - 1 + r.Int64N(m.rev()-m.compact+3)
					if r.IntN(4) == 0 {
						rev = 0
					}
					limit := r.Int64N(4)
					req := &command.RangeRequest{Key: []byte(k), RangeEnd: bs(end), Revision: rev, Limit: limit}
					code, kvs, count, more := m.read(k, end, rev, limit)
					if r.IntN(4) == 0 {
						req.CountOnly, kvs, more = true, nil, false
					}
					got := nd.read(req)
					if got.GetCode() != code {
						t.Fatalf("read %v: %v (%s), want %v", req, got.GetCode(), got.GetError(), code)
					}
					gr := got.GetRange()
					if code == command.Code_OK && (gr.GetCount() != count || gr.GetMore() != more || !equalKVs(gr.GetKvs(), kvs)) {
						t.Fatalf("read %v at %d:\n%v\nwant count=%d more=%v %v", req, m.rev(), gr, count, more, kvs)
					}
				}
				// The live index behind range reads is the model's key set.
				if got, want := nd.f.LiveKeys(m.rev()), slices.Sorted(maps.Keys(m.states[m.rev()])); got == nil || !slices.Equal(got, want) {
					t.Fatalf("after command %d %v: live keys %q, want %q", i, req, got, want)
				}
				if got, want := leaseTable(t, nd), m.leaseTable(); got != want {
					t.Fatalf("after command %d %v: lease table\n%s\nwant\n%s", i, req, got, want)
				}
			}
		})
	}
}

func equalKVs(a, b []*command.KeyValue) bool {
	return slices.EqualFunc(a, b, func(x, y *command.KeyValue) bool {
		return string(x.Key) == string(y.Key) && string(x.Value) == string(y.Value) &&
			x.CreateRevision == y.CreateRevision && x.ModRevision == y.ModRevision && x.Version == y.Version &&
			x.Lease == y.Lease
	})
}

// matches tells whether k is in the range (key, end), etcd's way.
func matches(k, key, end string) bool {
	if end == "" {
		return k == key
	}
	return inRange(k, key, end)
}

// leaseTable prints the leases that exist with their keys, as the model
// has them.
func (m *model) leaseTable() string {
	var b strings.Builder
	cur := m.states[m.rev()]
	for _, id := range slices.Sorted(maps.Keys(m.leases)) {
		n, size := 0, 0
		var ks []string
		for _, k := range slices.Sorted(maps.Keys(cur)) {
			if cur[k].Lease == id {
				n, size = n+1, size+len(k)
				ks = append(ks, fmt.Sprintf("%q", k))
			}
		}
		fmt.Fprintf(&b, "%d keys=%d bytes=%d: %s\n", id, n, size, strings.Join(ks, " "))
	}
	return b.String()
}

// leaseTable prints the FSM's lease table the way model.leaseTable does.
func leaseTable(t *testing.T, nd *node) string {
	var b strings.Builder
	err := nd.n.DB().View(func(txn *badger.Txn) error {
		return fsm.ScanLeases(txn, func(l fsm.Lease) error {
			var ks []string
			err := fsm.LeaseKeys(txn, l.ID, func(key []byte) error {
				ks = append(ks, fmt.Sprintf("%q", key))
				return nil
			})
			fmt.Fprintf(&b, "%d keys=%d bytes=%d: %s\n", l.ID, l.Keys, l.KeyBytes, strings.Join(ks, " "))
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
