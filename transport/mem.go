package transport

import (
	"container/heap"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// DefaultMemQueueSize is the default number of messages a [Network]
// endpoint holds for delivery before it drops new ones.
const DefaultMemQueueSize = 4096

// Network is an in-memory network of transports for tests, with seeded
// faults (see mem_faults.go).
//
// Every random decision comes from one source seeded at creation, drawn in
// the order of Send and SendSnapshot calls, a fixed number of draws per
// message whatever its fate: the same sequence of calls with the same
// settings makes the same decisions.
//
// Each endpoint has one bounded inbound queue, ordered by delivery time,
// drained by a goroutine that calls Handler.Process. Without delay or
// reordering, messages on a link arrive in the order they were sent.
type Network struct {
	mu        sync.Mutex
	rng       *rand.Rand
	closed    bool
	eps       map[uint64]*memEndpoint
	seq       uint64 // orders queued messages with equal delivery times
	queueSize int
	lastAt    map[memLink]time.Time // latest delivery time per link, for FIFO
	f         memFaults
}

// NewNetwork returns an empty network whose random decisions derive from
// seed.
func NewNetwork(seed int64) *Network {
	return &Network{
		rng:       rand.New(rand.NewPCG(uint64(seed), 0x636f6e636f7264)),
		eps:       make(map[uint64]*memEndpoint),
		queueSize: DefaultMemQueueSize,
		lastAt:    make(map[memLink]time.Time),
	}
}

// Transport returns the endpoint of raft peer id, whose Addr is "mem://<id>".
// It returns the same endpoint until that one is closed; after Close it
// returns a fresh one, which is how a harness restarts a crashed peer.
// After Network.Close, the endpoint returned is closed.
func (n *Network) Transport(id uint64) Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e := n.eps[id]; e != nil {
		return e
	}
	e := &memEndpoint{
		net:     n,
		id:      id,
		peers:   make(map[uint64]bool),
		pending: make(map[uint64]bool),
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		rwake:   make(chan struct{}, 1),
	}
	if n.closed {
		e.closed = true
		close(e.done)
		return e
	}
	n.eps[id] = e
	return e
}

// Close closes every endpoint and waits for their goroutines. Endpoints
// obtained afterwards are closed. Idempotent.
func (n *Network) Close() {
	n.mu.Lock()
	n.closed = true
	eps := make([]*memEndpoint, 0, len(n.eps))
	for _, e := range n.eps {
		eps = append(eps, e)
	}
	n.mu.Unlock()
	for _, e := range eps {
		e.Close()
	}
}

// SetQueueSize sets how many messages each endpoint queues for delivery
// before it drops new ones; size < 1 means 1.
func (n *Network) SetQueueSize(size int) {
	n.mu.Lock()
	n.queueSize = max(size, 1)
	n.mu.Unlock()
}

// up returns the started, open endpoint of id, or nil. n.mu must be held.
func (n *Network) up(id uint64) *memEndpoint {
	e := n.eps[id]
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started || e.closed {
		return nil
	}
	return e
}

var (
	_ Transport = (*memEndpoint)(nil)

	errMemStarted    = errors.New("transport: already started")
	errMemNilHandler = errors.New("transport: nil handler")
)

// memEndpoint is the Transport of one peer on a Network.
type memEndpoint struct {
	net *Network
	id  uint64

	mu      sync.Mutex
	h       Handler
	started bool
	closed  bool
	peers   map[uint64]bool
	inbox   memQueue
	reports []memReport
	pending map[uint64]bool // peers with a ReportUnreachable in reports
	done    chan struct{}   // closed by Close
	wake    chan struct{}   // inbox changed
	rwake   chan struct{}   // reports changed
	wg      sync.WaitGroup  // goroutines, inbound snapshots
}

// memReport is a report waiting for the sender's handler.
type memReport struct {
	id   uint64
	snap bool // ReportSnapshot(id, true) rather than ReportUnreachable(id)
}

func (e *memEndpoint) Start(h Handler) error {
	if h == nil {
		return errMemNilHandler
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closed:
		return ErrClosed
	case e.started:
		return errMemStarted
	}
	e.h = h
	e.started = true
	e.wg.Add(2)
	go e.deliverLoop()
	go e.reportLoop()
	return nil
}

func (e *memEndpoint) Addr() string { return "mem://" + strconv.FormatUint(e.id, 10) }

// AddPeer marks peer id known; addr is ignored.
func (e *memEndpoint) AddPeer(id uint64, addr string) {
	e.mu.Lock()
	e.peers[id] = true
	e.mu.Unlock()
}

// RemovePeer forgets peer id and drops the messages queued for it from this
// endpoint.
func (e *memEndpoint) RemovePeer(id uint64) {
	n := e.net
	n.mu.Lock()
	defer n.mu.Unlock()
	e.mu.Lock()
	delete(e.peers, id)
	e.mu.Unlock()
	if dst := n.eps[id]; dst != nil {
		dst.mu.Lock()
		dst.inbox.removeFrom(e.id)
		dst.mu.Unlock()
	}
}

// Send routes msgs through the network's faults. Messages to peers not
// added, not started or closed, or beyond the destination's queue, are
// reported unreachable; messages lost to faults are not. A MsgSnap is
// refused and reported as a failed snapshot.
func (e *memEndpoint) Send(msgs []*raftpb.Message) {
	n := e.net
	n.mu.Lock()
	defer n.mu.Unlock()
	e.mu.Lock()
	ok := e.started && !e.closed
	e.mu.Unlock()
	if !ok {
		return
	}
	now := time.Now()
	for _, m := range msgs {
		if m != nil {
			n.route(e, m, now)
		}
	}
}

// SendSnapshot delivers m and body to the handler of peer m.To on a
// goroutine, after the network's delay, then reports the outcome. A snapshot
// lost to a fault or sent to an unreachable peer is reported failed. It
// always closes body.
func (e *memEndpoint) SendSnapshot(m *raftpb.Message, body io.ReadCloser) {
	n := e.net
	n.mu.Lock()
	e.mu.Lock()
	ok := e.started && !e.closed
	if ok {
		e.wg.Add(1)
	}
	e.mu.Unlock()
	if !ok {
		n.mu.Unlock()
		body.Close()
		return
	}
	r := n.roll()
	to := m.GetTo()
	dst := n.dest(e, to)
	if r.drop || !n.f.linkOK(e.id, to) {
		dst = nil
	}
	n.mu.Unlock()
	go e.streamSnapshot(m, body, dst, r.delay)
}

func (e *memEndpoint) streamSnapshot(m *raftpb.Message, body io.ReadCloser, dst *memEndpoint, delay time.Duration) {
	defer e.wg.Done()
	failed := true
	if dst != nil && e.sleep(delay, dst.done) && dst.enter() {
		err := dst.h.ProcessSnapshot(m, &memStream{r: body, a: e.done, b: dst.done})
		dst.wg.Done()
		failed = err != nil
	}
	body.Close()
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if !closed {
		e.h.ReportSnapshot(m.GetTo(), failed)
	}
}

// sleep waits for d; it returns false if e or the other side closes first.
func (e *memEndpoint) sleep(d time.Duration, other <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-e.done:
	case <-other:
	}
	return false
}

// enter registers an inbound snapshot so that Close waits for it; false if
// e is closed.
func (e *memEndpoint) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	return true
}

// Close removes the endpoint from the network, drops its queued messages
// and waits for its goroutines, including Handler calls in progress; it must
// not be called from a Handler method. Idempotent.
func (e *memEndpoint) Close() error {
	n := e.net
	n.mu.Lock()
	if n.eps[e.id] == e {
		delete(n.eps, e.id)
	}
	n.mu.Unlock()

	e.mu.Lock()
	if !e.closed {
		e.closed = true
		e.inbox = nil
		close(e.done)
	}
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

// report queues r for the handler, coalescing ReportUnreachable per peer.
func (e *memEndpoint) report(r memReport) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || (!r.snap && e.pending[r.id]) {
		return
	}
	if !r.snap {
		e.pending[r.id] = true
	}
	e.reports = append(e.reports, r)
	memSignal(e.rwake)
}

// reportLoop hands queued reports to the handler.
func (e *memEndpoint) reportLoop() {
	defer e.wg.Done()
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return
		}
		rs := e.reports
		e.reports = nil
		clear(e.pending)
		e.mu.Unlock()

		for _, r := range rs {
			if r.snap {
				e.h.ReportSnapshot(r.id, true)
			} else {
				e.h.ReportUnreachable(r.id)
			}
		}
		if len(rs) > 0 {
			continue
		}
		select {
		case <-e.done:
			return
		case <-e.rwake:
		}
	}
}

// deliverLoop hands due messages to the handler, in delivery-time order.
func (e *memEndpoint) deliverLoop() {
	defer e.wg.Done()
	timer := time.NewTimer(time.Hour) // read only after a Reset
	defer timer.Stop()
	for {
		var due <-chan time.Time
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return
		}
		if len(e.inbox) > 0 {
			d := time.Until(e.inbox[0].at)
			if d <= 0 {
				it := heap.Pop(&e.inbox).(memItem)
				e.mu.Unlock()
				e.h.Process(it.m)
				continue
			}
			timer.Reset(d)
			due = timer.C
		}
		e.mu.Unlock()
		select {
		case <-e.done:
			return
		case <-e.wake:
		case <-due:
		}
	}
}

// memSignal wakes the goroutine waiting on c without blocking.
func memSignal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
