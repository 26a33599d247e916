package transport

import (
	"crypto/sha256"
	"hash"
	"io"
	"log/slog"
	"maps"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// waitTimeout bounds every wait for a condition in these tests.
const waitTimeout = 20 * time.Second

type snapReport struct {
	id     uint64
	failed bool
}

// recorder is a Handler that records what it is given and signals each
// event on notifyC.
type recorder struct {
	// onSnap, if set before Start, handles ProcessSnapshot; the default
	// reads the body to the end and accepts.
	onSnap func(m *raftpb.Message, body io.Reader) error
	// notifyC gets a token, without blocking, after every event.
	notifyC chan struct{}

	mu          sync.Mutex
	msgs        []*raftpb.Message // guarded by mu
	unreachable map[uint64]int    // guarded by mu
	snapReports []snapReport      // guarded by mu
}

func newRecorder() *recorder {
	return &recorder{notifyC: make(chan struct{}, 1), unreachable: make(map[uint64]int)}
}

func (r *recorder) notify() {
	select {
	case r.notifyC <- struct{}{}:
	default:
	}
}

func (r *recorder) Process(m *raftpb.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.notify()
}

func (r *recorder) ProcessSnapshot(m *raftpb.Message, body io.Reader) error {
	if r.onSnap != nil {
		return r.onSnap(m, body)
	}
	_, err := io.Copy(io.Discard, body)
	return err
}

func (r *recorder) ReportUnreachable(id uint64) {
	r.mu.Lock()
	r.unreachable[id]++
	r.mu.Unlock()
	r.notify()
}

func (r *recorder) ReportSnapshot(id uint64, failed bool) {
	r.mu.Lock()
	r.snapReports = append(r.snapReports, snapReport{id, failed})
	r.mu.Unlock()
	r.notify()
}

// waitUntil waits until cond, evaluated under r.mu, holds.
func (r *recorder) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !r.waitFor(waitTimeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
	}
}

// waitFor waits up to d for cond, evaluated under r.mu, and reports
// whether it holds.
func (r *recorder) waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-r.notifyC:
		case <-deadline.C:
			return false
		}
	}
}

func (r *recorder) messages() []*raftpb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*raftpb.Message(nil), r.msgs...)
}

func (r *recorder) unreachableCopy() map[uint64]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.unreachable)
}

func (r *recorder) unreachableCount(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[id]
}

func (r *recorder) snapshotReports() []snapReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]snapReport(nil), r.snapReports...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// newTestTCP starts a transport on 127.0.0.1:0 with fast backoffs, closed
// when the test ends. edit, if non-nil, adjusts the config first.
func newTestTCP(t *testing.T, id uint64, h Handler, edit func(*TCPConfig)) *TCP {
	t.Helper()
	cfg := TCPConfig{
		ID:         id,
		ListenAddr: "127.0.0.1:0",
		Logger:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	}
	if edit != nil {
		edit(&cfg)
	}
	tr, err := NewTCP(cfg)
	if err != nil {
		t.Fatalf("NewTCP: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	if err := tr.Start(h); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return tr
}

// mesh makes every transport a peer of every other.
func mesh(trs ...*TCP) {
	for _, a := range trs {
		for _, b := range trs {
			if a != b {
				a.AddPeer(b.cfg.ID, b.Addr())
			}
		}
	}
}

func msg(typ raftpb.MessageType, from, to, index uint64) *raftpb.Message {
	return &raftpb.Message{Type: typ.Enum(), From: new(from), To: new(to), Index: new(index), Term: new(uint64(1))}
}

// genReader yields n deterministic pseudo-random bytes, hashing what it
// yields, and records Close.
type genReader struct {
	left   int64
	off    uint64
	sum    hash.Hash
	closed atomic.Bool
	failAt int64 // if > 0, Read fails once left reaches it
}

func newGenReader(n int64) *genReader {
	return &genReader{left: n, sum: sha256.New()}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.failAt > 0 && g.left <= g.failAt {
		return 0, io.ErrClosedPipe
	}
	if g.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	for i := range p {
		k := g.off + uint64(i)
		p[i] = byte((k*0x9E3779B97F4A7C15)>>56) ^ byte(k>>20)
	}
	g.off += uint64(len(p))
	g.left -= int64(len(p))
	g.sum.Write(p)
	return len(p), nil
}

func (g *genReader) Close() error {
	g.closed.Store(true)
	return nil
}

// checkNoTransportGoroutines fails if any goroutine runs TCP transport code.
func checkNoTransportGoroutines(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "concord/transport.(*TCP)") || strings.Contains(g, "concord/transport.(*peer)") {
			t.Errorf("goroutine survived Close:\n%s", g)
		}
	}
}
