package transport

import (
	"container/heap"
	"io"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Bounds of the extra delay of a message held back by reordering, on top
// of the spread of SetDelay.
const (
	memHoldMin = time.Millisecond
	memHoldMax = 10 * time.Millisecond
)

// memLink is a directed link between two peers.
type memLink struct{ from, to uint64 }

// memFaults are the fault settings of a Network.
type memFaults struct {
	drop, dup, reorder float64
	delayMin, delayMax time.Duration
	groups             map[uint64]int // partition group per peer; nil: none
	isolated           map[uint64]bool
	cuts               map[memLink]bool
}

// linkOK tells whether messages may flow from one peer to another.
func (f *memFaults) linkOK(from, to uint64) bool {
	if f.isolated[from] || f.isolated[to] || f.cuts[memLink{from, to}] {
		return false
	}
	if f.groups == nil {
		return true
	}
	gf, okf := f.groups[from]
	gt, okt := f.groups[to]
	return okf && okt && gf == gt
}

// memRoll holds the random decisions for one message.
type memRoll struct {
	drop, dup, held bool
	delay, hold     time.Duration
}

// roll draws the decisions for one message: always five draws, so that the
// sequence does not depend on settings or on the message's fate. n.mu must
// be held.
func (n *Network) roll() memRoll {
	var u [5]float64
	for i := range u {
		u[i] = n.rng.Float64()
	}
	f := &n.f
	span := f.delayMax - f.delayMin
	return memRoll{
		drop:  u[0] < f.drop,
		delay: f.delayMin + time.Duration(u[1]*float64(span)),
		held:  u[2] < f.reorder,
		hold:  memHoldMin + time.Duration(u[3]*float64(max(memHoldMax-memHoldMin, span))),
		dup:   u[4] < f.dup,
	}
}

// route queues m from src at its destination. n.mu must be held.
func (n *Network) route(src *memEndpoint, m *raftpb.Message, now time.Time) {
	r := n.roll()
	to := m.GetTo()
	if m.GetType() == raftpb.MsgSnap {
		src.report(memReport{id: to, snap: true})
		return
	}
	dst := n.dest(src, to)
	if dst == nil {
		src.report(memReport{id: to})
		return
	}
	if r.drop || !n.f.linkOK(src.id, to) {
		return
	}
	link := memLink{src.id, to}
	at := now.Add(r.delay)
	if r.held {
		at = at.Add(r.hold)
	} else {
		if n.f.reorder == 0 {
			at = memMaxTime(at, n.lastAt[link])
		}
		n.lastAt[link] = at
	}
	var dup *raftpb.Message
	if r.dup { // clone first: once queued, m belongs to the handler
		dup = proto.Clone(m).(*raftpb.Message)
	}
	if !n.enqueue(dst, src.id, m, at) {
		src.report(memReport{id: to})
		return
	}
	if dup != nil {
		n.enqueue(dst, src.id, dup, at)
	}
}

// dest returns the endpoint src may send to as peer to, or nil. n.mu must
// be held.
func (n *Network) dest(src *memEndpoint, to uint64) *memEndpoint {
	src.mu.Lock()
	known := src.peers[to]
	src.mu.Unlock()
	if !known {
		return nil
	}
	return n.up(to)
}

// enqueue adds m to dst's inbox unless it is full. n.mu must be held.
func (n *Network) enqueue(dst *memEndpoint, from uint64, m *raftpb.Message, at time.Time) bool {
	dst.mu.Lock()
	defer dst.mu.Unlock()
	if dst.closed || len(dst.inbox) >= n.queueSize {
		return false
	}
	n.seq++
	heap.Push(&dst.inbox, memItem{at: at, seq: n.seq, from: from, m: m})
	memSignal(dst.wake)
	return true
}

// SetDropRate makes each message and snapshot lost with probability p,
// silently.
func (n *Network) SetDropRate(p float64) {
	n.mu.Lock()
	n.f.drop = memRate(p)
	n.mu.Unlock()
}

// SetDuplicateRate makes each delivered message arrive twice with
// probability p. Snapshots are never duplicated.
func (n *Network) SetDuplicateRate(p float64) {
	n.mu.Lock()
	n.f.dup = memRate(p)
	n.mu.Unlock()
}

// SetDelay delays each message and snapshot by a random duration in
// [minDelay, maxDelay]. Without reordering, messages on a link stay in order.
func (n *Network) SetDelay(minDelay, maxDelay time.Duration) {
	minDelay = max(minDelay, 0)
	n.mu.Lock()
	n.f.delayMin, n.f.delayMax = minDelay, max(maxDelay, minDelay)
	n.mu.Unlock()
}

// SetReorderRate holds each message back with probability p, by an extra
// delay of 1ms plus up to 9ms or up to the spread of SetDelay, whichever is
// larger, so that later messages overtake it. While p > 0, delayed messages
// are not kept in order either.
func (n *Network) SetReorderRate(p float64) {
	n.mu.Lock()
	n.f.reorder = memRate(p)
	n.mu.Unlock()
}

// Partition splits the network: messages and snapshots flow only between
// peers of the same group; peers in no group are cut off from all. It
// replaces any earlier partition; Isolate and Cut still apply.
func (n *Network) Partition(groups ...[]uint64) {
	g := make(map[uint64]int)
	for i, ids := range groups {
		for _, id := range ids {
			g[id] = i
		}
	}
	n.mu.Lock()
	n.f.groups = g
	n.mu.Unlock()
}

// Isolate cuts peer id off from all others until Heal.
func (n *Network) Isolate(id uint64) {
	n.mu.Lock()
	if n.f.isolated == nil {
		n.f.isolated = make(map[uint64]bool)
	}
	n.f.isolated[id] = true
	n.mu.Unlock()
}

// Cut drops what peer from sends to peer to, in that direction only, until
// Heal.
func (n *Network) Cut(from, to uint64) {
	n.mu.Lock()
	if n.f.cuts == nil {
		n.f.cuts = make(map[memLink]bool)
	}
	n.f.cuts[memLink{from, to}] = true
	n.mu.Unlock()
}

// Heal removes partitions, isolations and cuts; rates and delays stay.
func (n *Network) Heal() {
	n.mu.Lock()
	n.f.groups, n.f.isolated, n.f.cuts = nil, nil, nil
	n.mu.Unlock()
}

// Reset removes all faults: partitions, rates and delays.
func (n *Network) Reset() {
	n.mu.Lock()
	n.f = memFaults{}
	n.mu.Unlock()
}

// memRate clamps p to [0, 1]; NaN counts as 0.
func memRate(p float64) float64 {
	switch {
	case p >= 1:
		return 1
	case p > 0:
		return p
	}
	return 0
}

// memItem is a message waiting in an endpoint's inbox.
type memItem struct {
	at   time.Time // delivery time
	seq  uint64
	from uint64
	m    *raftpb.Message
}

// memQueue is a min-heap of memItems by delivery time, then sequence.
type memQueue []memItem

func (q memQueue) Len() int { return len(q) }

func (q memQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}

func (q memQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }

func (q *memQueue) Push(x any) { *q = append(*q, x.(memItem)) }

func (q *memQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	old[len(old)-1] = memItem{}
	*q = old[:len(old)-1]
	return it
}

// removeFrom drops the items sent by peer from.
func (q *memQueue) removeFrom(from uint64) {
	kept := (*q)[:0]
	for _, it := range *q {
		if it.from != from {
			kept = append(kept, it)
		}
	}
	clear((*q)[len(kept):])
	*q = kept
	heap.Init(q)
}

// memStream is a snapshot body that fails once either end is closed.
type memStream struct {
	r    io.Reader
	a, b <-chan struct{}
}

func (s *memStream) Read(p []byte) (int, error) {
	select {
	case <-s.a:
		return 0, ErrClosed
	case <-s.b:
		return 0, ErrClosed
	default:
	}
	return s.r.Read(p)
}

func memMaxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
