package lessor

import (
	"container/heap"
	"context"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/concordkv/concord/internal/command"
)

// primary is the clock of a ruling lessor, for one term.
type primary struct {
	term   uint64
	ctx    context.Context // ends when the lessor stops ruling
	cancel context.CancelFunc
	et     time.Duration
	heap   leaseHeap
	ckpt   map[int64]time.Duration // checkpoints to propose; 0 clears one
	flying map[int64]int           // checkpoints proposed and not yet settled, by lease
	cwait  []*waiter               // keep-alives waiting for the clears in ckpt
	push   []*waiter               // keep-alives whose renewals are to push
}

// checkpointDelay is how long a lease may go without a renewal before it
// is checkpointed: a holder renewing every ttl/3 never lets it happen.
func checkpointDelay(ttl, et time.Duration) time.Duration { return ttl/3 + et }

// next is when ls needs attention: its checkpoint, or its expiry.
func (p *primary) next(ls *lease) time.Time {
	if !ls.recorded {
		// A checkpoint of a lease about to expire changes nothing a new
		// leader would do: it adds the election timeout anyway.
		if due := ls.renewed.Add(checkpointDelay(ls.ttl, p.et)); due.Before(ls.expiry.Add(-p.et)) {
			return due
		}
	}
	return ls.expiry
}

// schedule puts ls in the heap, or moves it.
func (p *primary) schedule(ls *lease) {
	ls.next = p.next(ls)
	if ls.idx >= 0 {
		heap.Fix(&p.heap, ls.idx)
		return
	}
	heap.Push(&p.heap, ls)
}

func (p *primary) unschedule(ls *lease) {
	if ls.idx >= 0 {
		heap.Remove(&p.heap, ls.idx)
	}
}

// promote makes the lessor rule in pr's term: every lease gets what it
// was promised, by the quorum that answered, this node and its checkpoint
// (the least of the quorum's and the checkpoint's: each bounds every
// acknowledged renewal), plus the election timeout.
func (l *Lessor) promote(pr promotion) {
	term := pr.term
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.stopC:
		return
	default:
	}
	if l.p != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &primary{term: term, ctx: ctx, cancel: cancel, et: l.cfg.ElectionTimeout, ckpt: map[int64]time.Duration{}, flying: map[int64]int{}}
	l.checkConfLocked(l.raft.Status().ConfIndex)
	now := time.Now()
	for _, ls := range l.leases {
		until := ls.promised
		if h := pr.heard[ls.id]; h.After(until) {
			until = h
		}
		if ls.remaining > 0 {
			if c := ls.ckptAt.Add(ls.remaining); c.Before(until) {
				until = c
			}
		}
		left := max(until.Sub(now), 0)
		ls.expiry, ls.renewed = now.Add(left+p.et), now
		ls.recorded, ls.expiring, ls.idx = ls.remaining > 0, false, -1
		p.schedule(ls)
	}
	l.p = p
	l.log.Debug("lessor: ruling", "term", term, "leases", len(l.leases))
}

// demoteLocked stops ruling: proposals in flight are abandoned and waiting
// keep-alives are told to ask again.
func (l *Lessor) demoteLocked() {
	p := l.p
	if p == nil {
		return
	}
	l.p = nil
	p.cancel()
	for _, ws := range [][]*waiter{p.push, p.cwait} {
		for _, w := range ws {
			if !w.done {
				w.done = true
				w.reply(notReady)
			}
		}
	}
	for _, ls := range l.leases {
		ls.idx, ls.expiring = -1, false
	}
	l.log.Debug("lessor: no longer ruling", "term", p.term)
}

// tick handles the leases due: checkpoints to the checkpointer, expiries
// proposed at once. It returns how long until the next is due.
func (l *Lessor) tick() time.Duration {
	l.mu.Lock()
	p := l.p
	if p == nil {
		l.mu.Unlock()
		return time.Hour
	}
	now := time.Now()
	var expire []int64
	ckpt := false
	for len(p.heap) > 0 && !p.heap[0].next.After(now) {
		ls := p.heap[0]
		if !now.Before(ls.expiry) {
			heap.Pop(&p.heap)
			ls.expiring = true
			expire = append(expire, ls.id)
			continue
		}
		p.ckpt[ls.id] = ls.expiry.Sub(now)
		ls.recorded, ckpt = true, true
		p.schedule(ls)
	}
	wait := time.Hour
	if len(p.heap) > 0 {
		wait = p.heap[0].next.Sub(now)
	}
	l.mu.Unlock()
	if ckpt {
		signal(l.ckptC)
	}
	if len(expire) > 0 {
		l.wg.Go(func() { l.expire(p, expire) })
	}
	return max(wait, time.Millisecond)
}

// expire proposes the expiry of ids, concurrently, so that raftnode packs
// them into few entries; one whose proposal fails is due again.
func (l *Lessor) expire(p *primary, ids []int64) {
	var g errgroup.Group
	g.SetLimit(256)
	for _, id := range ids {
		g.Go(func() error {
			req := &command.Request{Request: &command.Request_LeaseExpire{LeaseExpire: &command.LeaseExpireRequest{Id: id, Term: p.term}}}
			if _, err := l.propose(p, req); err == nil || p.ctx.Err() != nil {
				return nil
			}
			l.mu.Lock()
			if ls := l.leases[id]; l.p == p && ls != nil && ls.expiring {
				ls.expiring = false
				ls.expiry = time.Now().Add(p.et / 4) // try again shortly
				p.schedule(ls)
				signal(l.kickC)
			}
			l.mu.Unlock()
			return nil
		})
	}
	g.Wait()
}

// propose proposes req for p's term and returns the state machine's code.
// A refusal (LEASE_NOT_FOUND, STALE) is not an error: it changed nothing
// that needs redoing.
func (l *Lessor) propose(p *primary, req *command.Request) (command.Code, error) {
	data, err := command.EncodeRequest(req)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(p.ctx, 4*p.et)
	defer cancel()
	out, err := l.raft.Propose(ctx, data)
	if err != nil {
		return 0, err
	}
	resp, err := command.DecodeResponse(out)
	if err != nil {
		return 0, err
	}
	return resp.GetCode(), nil
}

// leaseHeap orders leases by when they need attention.
type leaseHeap []*lease

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h leaseHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *leaseHeap) Push(x any) {
	ls := x.(*lease)
	ls.idx = len(*h)
	*h = append(*h, ls)
}
func (h *leaseHeap) Pop() any {
	old := *h
	ls := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	ls.idx = -1
	return ls
}
