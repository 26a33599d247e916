package fsm

import (
	"bytes"
	"slices"
)

// gaps remembers spans [lo, hi) of keys known to hold no live key, so
// that a claim seeks past them instead of walking what a queue leaves
// behind: the deleted keys of acked messages, at its head and between its
// priority bands and in-flight claims, which badger's iterators step over
// one by one until its own compaction drops them (a cost that would grow
// with every message ever acked). It is exact as seen by Apply: a put
// into a gap splits it (put calls gaps.put), deletes only widen what is
// empty, and load and Restore forget everything. Claims' results never
// depend on it.
//
// The spans are kept sorted by lo, disjoint and merged (the union of
// empty spans is empty), so a put finds the one span it may fall in by
// binary search.
type gaps struct {
	s []gap // guarded by being on the raft goroutine
}

type gap struct{ lo, hi []byte }

// gapsMax bounds the spans remembered; past it they are all forgotten.
const gapsMax = 1024

func (g *gaps) reset() { g.s = nil }

// find returns the index of the span holding key, or -1.
func (g *gaps) find(key []byte) int {
	i, _ := slices.BinarySearchFunc(g.s, key, func(x gap, k []byte) int { return bytes.Compare(x.lo, k) })
	// g.s[i-1].lo < key <= g.s[i].lo
	if i < len(g.s) && bytes.Equal(g.s[i].lo, key) {
		return i
	}
	if i > 0 && bytes.Compare(key, g.s[i-1].hi) < 0 {
		return i - 1
	}
	return -1
}

// end returns the end of the span holding pos; pos itself if none.
func (g *gaps) end(pos []byte) []byte {
	if i := g.find(pos); i >= 0 {
		return g.s[i].hi
	}
	return pos
}

// set records that [lo, hi) holds no live key, merging it with the spans
// it touches. lo and hi must not change.
func (g *gaps) set(lo, hi []byte) {
	if bytes.Compare(hi, lo) <= 0 {
		return
	}
	// The spans that overlap or touch [lo, hi) are g.s[i:j].
	i, _ := slices.BinarySearchFunc(g.s, lo, func(x gap, k []byte) int { return bytes.Compare(x.hi, k) })
	j := i
	for j < len(g.s) && bytes.Compare(g.s[j].lo, hi) <= 0 {
		j++
	}
	if i < j {
		if bytes.Compare(g.s[i].lo, lo) < 0 {
			lo = g.s[i].lo
		}
		if bytes.Compare(g.s[j-1].hi, hi) > 0 {
			hi = g.s[j-1].hi
		}
	} else if len(g.s) >= gapsMax {
		g.s = nil
		i, j = 0, 0
	}
	g.s = slices.Replace(g.s, i, j, gap{lo, hi})
}

// put splits the span that key, now live, falls in. key must not change.
func (g *gaps) put(key []byte) {
	i := g.find(key)
	if i < 0 {
		return
	}
	sp := g.s[i]
	var keep []gap
	if bytes.Compare(sp.lo, key) < 0 {
		keep = append(keep, gap{sp.lo, bytes.Clone(key)})
	}
	if after := append(bytes.Clone(key), 0); bytes.Compare(after, sp.hi) < 0 {
		keep = append(keep, gap{after, sp.hi})
	}
	g.s = slices.Replace(g.s, i, i+1, keep...)
}
