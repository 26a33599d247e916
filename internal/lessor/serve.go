package lessor

import (
	"time"

	"go.etcd.io/raft/v3"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/wire"
)

// notReady is the answer of a lessor that does not rule.
var notReady = mustMarshal(&wire.LeaseAnswer{NotReady: true})

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// ServeLeader implements raftnode.LeaderService: it answers a
// wire.LeaseCall. Renewals take effect in memory at once; the answer waits
// only if a renewal has to clear a checkpoint through raft first.
func (l *Lessor) ServeLeader(_ uint64, req []byte, reply func([]byte)) {
	var call wire.LeaseCall
	if proto.Unmarshal(req, &call) != nil {
		reply(notReady)
		return
	}
	l.mu.Lock()
	p := l.p
	if p == nil {
		l.mu.Unlock()
		reply(notReady)
		return
	}
	if st := l.raft.Status(); st.State != raft.StateLeader || st.Term != p.term {
		l.mu.Unlock()
		reply(notReady)
		return
	}
	now := time.Now()
	ans := &wire.LeaseAnswer{}
	clears := false
	for _, id := range call.GetKeepAlive() {
		ls := l.leases[id]
		if ls == nil || ls.expiring {
			ans.Leases = append(ans.Leases, &wire.LeaseTTL{Id: id})
			continue
		}
		clears = l.renewLocked(p, ls, now) || clears
		ans.Leases = append(ans.Leases, &wire.LeaseTTL{Id: id, Ttl: int64(ls.ttl), GrantedTtl: int64(ls.ttl)})
	}
	for _, id := range call.GetTimeToLive() {
		ans.Leases = append(ans.Leases, l.ttlLocked(id, now))
	}
	if call.GetAll() {
		for id := range l.leases {
			if t := l.ttlLocked(id, now); t.Ttl > 0 {
				ans.Leases = append(ans.Leases, t)
			}
		}
	}
	b := mustMarshal(ans)
	if clears {
		p.waiters = append(p.waiters, waiter{ans: b, reply: reply})
		l.mu.Unlock()
		l.wakeCheckpointer()
		return
	}
	l.mu.Unlock()
	reply(b)
}

// renewLocked renews ls; it tells whether a checkpoint must be cleared
// through raft before the renewal is acknowledged.
func (l *Lessor) renewLocked(p *primary, ls *lease, now time.Time) bool {
	ls.expiry, ls.renewed = now.Add(ls.ttl), now
	clear := false
	if ls.recorded {
		if rem, queued := p.ckpt[ls.id]; queued && rem > 0 && ls.remaining == 0 {
			delete(p.ckpt, ls.id) // never proposed: nothing to clear
		} else {
			p.ckpt[ls.id] = 0
			clear = true
		}
		ls.recorded = false
	}
	p.schedule(ls)
	return clear
}

// ttlLocked reports what lease id has left.
func (l *Lessor) ttlLocked(id int64, now time.Time) *wire.LeaseTTL {
	ls := l.leases[id]
	if ls == nil || ls.expiring {
		return &wire.LeaseTTL{Id: id}
	}
	// Due but not yet expired: still alive, by a hair.
	left := max(ls.expiry.Sub(now), 1)
	return &wire.LeaseTTL{Id: id, Ttl: int64(left), GrantedTtl: int64(ls.ttl)}
}

func (l *Lessor) wakeCheckpointer() {
	select {
	case l.ckptC <- struct{}{}:
	default:
	}
}

// maxCheckpoints caps the checkpoints of one command, clears aside.
const maxCheckpoints = 8192

// checkpointer proposes the checkpoints and clears that ticks and
// renewals queue, one command at a time, so that they apply in the order
// they were decided; then it sends the answers that waited for the clears.
func (l *Lessor) checkpointer() {
	defer l.wg.Done()
	for {
		select {
		case <-l.ckptC:
		case <-l.stopC:
			return
		}
		for l.checkpointOnce() {
		}
	}
}

// checkpointOnce proposes one batch; it tells whether there may be more.
func (l *Lessor) checkpointOnce() bool {
	l.mu.Lock()
	p := l.p
	if p == nil || len(p.ckpt) == 0 {
		l.mu.Unlock()
		return false
	}
	req := &command.LeaseCheckpointRequest{Term: p.term}
	n := 0
	for id, rem := range p.ckpt {
		if rem > 0 {
			if n >= maxCheckpoints {
				continue
			}
			n++
		}
		req.Checkpoints = append(req.Checkpoints, &command.LeaseCheckpoint{Id: id, Remaining: int64(rem)})
		delete(p.ckpt, id)
	}
	waiters := p.waiters
	p.waiters = nil
	more := len(p.ckpt) > 0
	l.mu.Unlock()

	code, err := l.propose(p, &command.Request{Request: &command.Request_LeaseCheckpoint{LeaseCheckpoint: req}})
	ok := err == nil && code == command.Code_OK
	if !ok {
		// It may yet apply: count every lease of it as checkpointed, so
		// that the next renewal clears it.
		l.mu.Lock()
		if l.p == p {
			for _, cp := range req.Checkpoints {
				if ls := l.leases[cp.GetId()]; ls != nil && !ls.expiring && ls.idx >= 0 {
					ls.recorded = true
					p.schedule(ls)
				}
			}
		}
		l.mu.Unlock()
	}
	for _, w := range waiters {
		if ok {
			w.reply(w.ans)
		} else {
			w.reply(notReady)
		}
	}
	return more && p.ctx.Err() == nil
}
