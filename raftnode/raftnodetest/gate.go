package raftnodetest

import (
	"errors"
	"io"
	"sync"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/transport"
)

var errPartitioned = errors.New("raftnodetest: partitioned")

// gates holds the partition state shared by every peer's gate.
type gates struct {
	mu       sync.Mutex
	group    map[uint64]int  // guarded by mu; nil = one group; unlisted = cut off
	isolated map[uint64]bool // guarded by mu
	from     map[uint64]int  // guarded by mu; messages delivered, by sender
}

func newGates() *gates { return &gates{isolated: map[uint64]bool{}, from: map[uint64]int{}} }

func (g *gates) delivered(from uint64) {
	g.mu.Lock()
	g.from[from]++
	g.mu.Unlock()
}

func (g *gates) deliveredFrom(from uint64) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.from[from]
}

// ok tells whether a message from one peer may reach another.
func (g *gates) ok(from, to uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.isolated[from] || g.isolated[to] {
		return false
	}
	if g.group == nil {
		return true
	}
	a, okA := g.group[from]
	b, okB := g.group[to]
	return okA && okB && a == b
}

func (g *gates) partition(groups [][]uint64) {
	m := map[uint64]int{}
	for i, grp := range groups {
		for _, id := range grp {
			m[id] = i
		}
	}
	g.mu.Lock()
	g.group = m
	g.mu.Unlock()
}

func (g *gates) isolate(id uint64) {
	g.mu.Lock()
	g.isolated[id] = true
	g.mu.Unlock()
}

func (g *gates) heal() {
	g.mu.Lock()
	g.group, g.isolated = nil, map[uint64]bool{}
	g.mu.Unlock()
}

func (g *gates) wrap(id uint64, tr transport.Transport) transport.Transport {
	return &gate{id: id, g: g, inner: tr}
}

// gate is a transport that drops traffic the partition forbids, on both
// the sending and the receiving side, over any inner transport.
type gate struct {
	id    uint64
	g     *gates
	inner transport.Transport
}

func (t *gate) Start(h transport.Handler) error { return t.inner.Start(&gateHandler{t: t, h: h}) }
func (t *gate) Addr() string                    { return t.inner.Addr() }
func (t *gate) AddPeer(id uint64, addr string)  { t.inner.AddPeer(id, addr) }
func (t *gate) RemovePeer(id uint64)            { t.inner.RemovePeer(id) }
func (t *gate) Close() error                    { return t.inner.Close() }

func (t *gate) Send(msgs []*pb.Message) {
	out := msgs[:0:0]
	for _, m := range msgs {
		if t.g.ok(t.id, m.GetTo()) {
			out = append(out, m)
		}
	}
	if len(out) > 0 {
		t.inner.Send(out)
	}
}

func (t *gate) SendSnapshot(m *pb.Message, body io.ReadCloser) {
	if !t.g.ok(t.id, m.GetTo()) {
		t.inner.SendSnapshot(m, failingBody{body}) // fails, and is reported so
		return
	}
	t.inner.SendSnapshot(m, body)
}

// failingBody makes a snapshot send fail, so the sender reports it failed.
type failingBody struct{ io.Closer }

func (failingBody) Read([]byte) (int, error) { return 0, errPartitioned }

type gateHandler struct {
	t *gate
	h transport.Handler
}

func (h *gateHandler) Process(m *pb.Message) {
	if h.t.g.ok(m.GetFrom(), h.t.id) {
		h.t.g.delivered(m.GetFrom())
		h.h.Process(m)
	}
}

func (h *gateHandler) ProcessSnapshot(m *pb.Message, body io.Reader) error {
	if !h.t.g.ok(m.GetFrom(), h.t.id) {
		return errPartitioned
	}
	h.t.g.delivered(m.GetFrom())
	return h.h.ProcessSnapshot(m, body)
}

func (h *gateHandler) ReportUnreachable(id uint64)           { h.h.ReportUnreachable(id) }
func (h *gateHandler) ReportSnapshot(id uint64, failed bool) { h.h.ReportSnapshot(id, failed) }
