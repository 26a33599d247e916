package lessor

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/raft/v3"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/wire"
	"github.com/concordkv/concord/raftnode"
)

// Sizes of the lessor's quorum calls: a push carries at most maxPush
// leases, a promotion asks for the lease table in parts of about
// partLeases (about 14 bytes each on the wire). A push waits the election
// timeout / pushDelayDiv (10 ms by default) after the first renewal it
// carries, so that concurrent keep-alives share it: it costs a message to
// and from every voter.
const (
	maxPush      = 1 << 16
	partLeases   = 100_000
	pushDelayDiv = 100
	minPrune     = 1024 // unknown is pruned once it holds this many, or twice what it kept
)

// ServeQuorum implements raftnode.QuorumService: a push of renewals
// raises what the leases were promised; a query from a new leader is
// answered with what they were promised, leases this node does not know
// yet included. raftnode serves a call only in its leader's term, as this
// node's durable term, so every push this node ever takes from a leader
// comes before its answer to any later leader. It refuses until Load has
// filled the mirror.
func (l *Lessor) ServeQuorum(_, _ uint64, req []byte) ([]byte, bool) {
	var m wire.LeaseSync
	if proto.Unmarshal(req, &m) != nil || len(m.GetIds()) != len(m.GetLeft()) {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.loaded {
		return nil, false
	}
	if l.raft != nil {
		l.checkConfLocked(l.raft.Status().ConfIndex)
	}
	now := time.Now()
	if !m.GetQuery() {
		for i, id := range m.GetIds() {
			t := now.Add(time.Duration(m.GetLeft()[i]))
			if ls := l.leases[id]; ls != nil {
				if t.After(ls.promised) {
					ls.promised = t
				}
			} else if t.After(l.unknown[id]) {
				l.unknown[id] = t
			}
		}
		if len(l.unknown) >= l.pruneAt {
			for id, t := range l.unknown {
				if !t.After(now) {
					delete(l.unknown, id)
				}
			}
			l.pruneAt = max(minPrune, 2*len(l.unknown))
		}
		return nil, true
	}
	parts, part := uint64(max(m.GetParts(), 1)), uint64(m.GetPart())
	ans := &wire.LeaseSync{}
	add := func(id int64, promised time.Time) {
		if left := promised.Sub(now); left > 0 && uint64(id)%parts == part {
			ans.Ids = append(ans.Ids, id)
			ans.Left = append(ans.Left, int64(left))
		}
	}
	for id, ls := range l.leases {
		add(id, ls.promised)
	}
	for id, t := range l.unknown {
		add(id, t)
	}
	return mustMarshal(ans), true
}

// takePromised returns the later of t and what pushes promised lease id
// while the mirror did not have it, and forgets the latter.
func (l *Lessor) takePromised(id int64, t time.Time) time.Time {
	if u, ok := l.unknown[id]; ok {
		delete(l.unknown, id)
		if u.After(t) {
			return u
		}
	}
	return t
}

// checkConfLocked promises every lease its ttl from now if the voters may
// have changed since it last looked (raft's ConfIndex moved): a promotion
// relies on quorums of the configuration a lease was renewed in.
func (l *Lessor) checkConfLocked(confIdx uint64) {
	if confIdx == 0 || confIdx == l.confIdx {
		return
	}
	l.confIdx = confIdx
	now := time.Now()
	for _, ls := range l.leases {
		if t := now.Add(ls.ttl); t.After(ls.promised) {
			ls.promised = t
		}
	}
}

// promotion is what a new leader learned before it rules in term: the
// latest expiry a quorum was promised, by lease.
type promotion struct {
	term  uint64
	heard map[int64]time.Time
}

// prepare readies a promotion in term: it waits until the node applied
// everything committed before term began (a ReadIndex round), so that the
// mirror is whole and no earlier proposal can still land, then asks a
// quorum what every lease was promised, and sends the promotion on done.
// It gives up once the node no longer leads in term.
func (l *Lessor) prepare(ctx context.Context, term uint64, done chan<- promotion) {
	applied := false
	for {
		if st := l.raft.Status(); st.State != raft.StateLeader || st.Term != term || ctx.Err() != nil {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 4*l.cfg.ElectionTimeout)
		var err error
		var heard map[int64]time.Time
		if !applied {
			err = l.raft.ReadIndex(rctx)
			applied = err == nil
		}
		if applied {
			heard, err = l.collect(rctx, term)
		}
		cancel()
		if err == nil {
			select {
			case done <- promotion{term: term, heard: heard}:
			case <-ctx.Done():
			}
			return
		}
		if errors.Is(err, raftnode.ErrStopped) {
			return
		}
	}
}

// collect asks a quorum, in parts, what every lease was promised, and
// returns the latest by lease (as of now, on this node's clock: later
// than on the answerer's).
func (l *Lessor) collect(ctx context.Context, term uint64) (map[int64]time.Time, error) {
	l.mu.Lock()
	parts := max(1, (len(l.leases)+partLeases-1)/partLeases)
	l.mu.Unlock()
	heard := map[int64]time.Time{}
	for part := range parts {
		req := mustMarshal(&wire.LeaseSync{Query: true, Part: uint32(part), Parts: uint32(parts)})
		answers, err := l.raft.CallQuorum(ctx, term, req)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		for _, b := range answers {
			var m wire.LeaseSync
			if err := proto.Unmarshal(b, &m); err != nil || len(m.GetIds()) != len(m.GetLeft()) {
				return nil, errors.New("lessor: undecodable answer to a lease query")
			}
			for i, id := range m.GetIds() {
				if t := now.Add(time.Duration(m.GetLeft()[i])); t.After(heard[id]) {
					heard[id] = t
				}
			}
		}
	}
	return heard, nil
}

// waiter is the answer to a keep-alive, sent once its renewals are pushed
// to a quorum and the checkpoints it clears are committed.
type waiter struct {
	ids    []int64 // the leases it renewed
	ans    []byte
	reply  func([]byte)
	need   int  // what it still waits for: the push, the clears
	failed bool // something it waited for failed: answer notReady
	done   bool // answered
}

// pushOnce pushes the renewals of waiting keep-alives, up to maxPush
// leases, to a quorum; it tells whether there may be more.
func (l *Lessor) pushOnce() bool {
	l.mu.Lock()
	p := l.p
	if p == nil || len(p.push) == 0 {
		l.mu.Unlock()
		return false
	}
	k, n := 0, 0
	for k < len(p.push) && (k == 0 || n+len(p.push[k].ids) <= maxPush) {
		n += len(p.push[k].ids)
		k++
	}
	ws := p.push[:k:k]
	p.push = p.push[k:]
	more := len(p.push) > 0
	now := time.Now()
	m := &wire.LeaseSync{}
	seen := make(map[int64]bool, n)
	for _, w := range ws {
		for _, id := range w.ids {
			ls := l.leases[id]
			if seen[id] || ls == nil {
				continue
			}
			seen[id] = true
			m.Ids = append(m.Ids, id)
			m.Left = append(m.Left, int64(max(ls.expiry.Sub(now), 0)))
		}
	}
	l.mu.Unlock()

	ctx, cancel := context.WithTimeout(p.ctx, 4*p.et)
	_, err := l.raft.CallQuorum(ctx, p.term, mustMarshal(m))
	cancel()
	l.settle(ws, err == nil)
	return more && p.ctx.Err() == nil
}

// settle records that one thing each of ws waited for is over, ok or not,
// and answers those that wait no more.
func (l *Lessor) settle(ws []*waiter, ok bool) {
	l.mu.Lock()
	var done []*waiter
	for _, w := range ws {
		if w.done {
			continue
		}
		w.need--
		w.failed = w.failed || !ok
		if w.need == 0 || w.failed {
			w.done = true
			done = append(done, w)
		}
	}
	l.mu.Unlock()
	for _, w := range done {
		if w.failed {
			w.reply(notReady)
		} else {
			w.reply(w.ans)
		}
	}
}
