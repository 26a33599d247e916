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
// wire.LeaseCall. Renewals take effect in memory at once; their answer
// waits until they are pushed to a quorum (see ServeQuorum) and, if one
// has to clear a checkpoint through raft, until that commits.
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
	var renewed []int64
	for _, id := range call.GetKeepAlive() {
		ls := l.leases[id]
		if ls == nil || ls.expiring {
			ans.Leases = append(ans.Leases, &wire.LeaseTTL{Id: id})
			continue
		}
		renewed = append(renewed, id)
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
	if len(renewed) == 0 {
		l.mu.Unlock()
		reply(b)
		return
	}
	w := &waiter{ids: renewed, ans: b, reply: reply, need: 1}
	p.push = append(p.push, w)
	if clears {
		w.need++
		p.cwait = append(p.cwait, w)
	}
	l.mu.Unlock()
	signal(l.pushC)
	if clears {
		signal(l.ckptC)
	}
}

// renewLocked renews ls; it tells whether a checkpoint must be cleared
// through raft before the renewal is acknowledged.
func (l *Lessor) renewLocked(p *primary, ls *lease, now time.Time) bool {
	ls.expiry, ls.renewed = now.Add(ls.ttl), now
	clear := false
	if ls.recorded {
		if rem, queued := p.ckpt[ls.id]; queued && rem > 0 && ls.remaining == 0 && p.flying[ls.id] == 0 {
			// Never proposed, and no earlier one is on its way (it would
			// land after this renewal): nothing to clear.
			delete(p.ckpt, ls.id)
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

// maxCheckpoints caps the checkpoints of one command, clears aside.
const maxCheckpoints = 8192

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
		if rem > 0 {
			p.flying[id]++
		}
	}
	waiters := p.cwait
	p.cwait = nil
	more := len(p.ckpt) > 0
	l.mu.Unlock()

	code, err := l.propose(p, &command.Request{Request: &command.Request_LeaseCheckpoint{LeaseCheckpoint: req}})
	ok := err == nil && code == command.Code_OK
	l.mu.Lock()
	for _, cp := range req.Checkpoints {
		if cp.GetRemaining() > 0 {
			if p.flying[cp.GetId()]--; p.flying[cp.GetId()] <= 0 {
				delete(p.flying, cp.GetId())
			}
		}
	}
	l.mu.Unlock()
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
	l.settle(waiters, ok)
	return more && p.ctx.Err() == nil
}
