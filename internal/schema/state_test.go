package schema

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// randomKey draws short keys from bytes that stress the escaping.
func randomKey(r *rand.Rand) []byte {
	alphabet := []byte{0x00, 0x01, 0x02, 0xFE, 0xFF, 'a'}
	k := make([]byte, r.IntN(5))
	for i := range k {
		k[i] = alphabet[r.IntN(len(alphabet))]
	}
	return k
}

// TestIndexKeyOrder: index keys sort by user key, then by revision; a
// bound splits them exactly at its key; parsing gives the key back.
func TestIndexKeyOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		a, b := randomKey(r), randomKey(r)
		ra, rb := r.Int64N(1<<40), r.Int64N(1<<40)
		ka, kb := IndexKey(nil, a, ra), IndexKey(nil, b, rb)
		want := bytes.Compare(a, b)
		if want == 0 {
			want = cmpInt(ra, rb)
		}
		if got := bytes.Compare(ka, kb); got != want {
			t.Fatalf("IndexKey(%q,%d) vs IndexKey(%q,%d): %d, want %d", a, ra, b, rb, got, want)
		}
		if below, got := bytes.Compare(a, b) < 0, bytes.Compare(ka, IndexBound(nil, b)) < 0; got != below {
			t.Fatalf("IndexKey(%q) < IndexBound(%q) = %v, want %v", a, b, got, below)
		}
		if !bytes.HasPrefix(ka, IndexPrefix(nil, a)) || (bytes.HasPrefix(kb, IndexPrefix(nil, a)) != bytes.Equal(a, b)) {
			t.Fatalf("IndexPrefix(%q) does not name exactly its key's revisions", a)
		}
		key, rev, ok := ParseIndexKey(nil, ka)
		if !ok || !bytes.Equal(key, a) || rev != ra || !bytes.Equal(IndexGroup(ka), IndexPrefix(nil, a)) {
			t.Fatalf("ParseIndexKey(IndexKey(%q,%d)) = %q %d %v", a, ra, key, rev, ok)
		}
		hr, hk, ok := ParseHistoryKey(HistoryKey(nil, ra, a))
		if !ok || hr != ra || !bytes.Equal(hk, a) {
			t.Fatalf("ParseHistoryKey(HistoryKey(%d,%q)) = %d %q", ra, a, hr, hk)
		}
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
