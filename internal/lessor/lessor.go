package lessor

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.etcd.io/raft/v3"

	"github.com/concordkv/concord/internal/fsm"
	"github.com/concordkv/concord/raftnode"
)

// Raft is what the lessor needs of its raft peer; *raftnode.Node has it.
type Raft interface {
	Propose(ctx context.Context, data []byte) ([]byte, error)
	ReadIndex(ctx context.Context) error
	Status() raftnode.Status
	Changed() <-chan struct{}
}

// Config configures a Lessor.
type Config struct {
	// ElectionTimeout is the raft election timeout: what a new primary
	// adds to every lease, and the slack of checkpoints. Default 1s.
	ElectionTimeout time.Duration
	// Logger receives the lessor's few logs; nil discards them.
	Logger *slog.Logger
}

// Lessor is one node's lease clock; see the package doc. Create it with
// New, feed it the state machine's lease changes with Apply from the
// start, then Start it once the raft peer runs.
type Lessor struct {
	cfg   Config
	log   *slog.Logger
	raft  Raft
	kickC chan struct{} // wakes run
	ckptC chan struct{} // wakes the checkpointer
	stopC chan struct{}
	wg    sync.WaitGroup

	mu     sync.Mutex
	leases map[int64]*lease // guarded by mu; the mirror of the lease table
	p      *primary         // guarded by mu; nil unless this node rules
}

// lease is a lease of the mirror, and its clock while this node rules.
type lease struct {
	id        int64
	ttl       time.Duration
	remaining time.Duration // as last checkpointed; 0 = none
	ckptAt    time.Time     // when that checkpoint was applied (or loaded) here

	// Primary only.
	expiry   time.Time
	renewed  time.Time // last renewal (or promotion)
	recorded bool      // a checkpoint is, or may be, in the replicated state
	expiring bool      // an expire is proposed: renewals are refused
	next     time.Time // when it needs attention: checkpoint or expiry
	idx      int       // heap index; -1 when not in the heap
}

// New returns a lessor with an empty mirror: Apply may be called at once,
// Load fills it from the DB.
func New(cfg Config) *Lessor {
	if cfg.ElectionTimeout <= 0 {
		cfg.ElectionTimeout = time.Second
	}
	l := &Lessor{
		cfg:    cfg,
		log:    cfg.Logger,
		kickC:  make(chan struct{}, 1),
		ckptC:  make(chan struct{}, 1),
		stopC:  make(chan struct{}),
		leases: map[int64]*lease{},
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	return l
}

// Load replaces the mirror with the lease table in db. Changes Apply sees
// afterwards must be newer than db's state when Load reads it, which holds
// if Apply is the state machine's OnLeases: it runs after each commit.
func (l *Lessor) Load(db *badger.DB) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loadLocked(db)
}

func (l *Lessor) loadLocked(db *badger.DB) error {
	now := time.Now()
	m := map[int64]*lease{}
	err := db.View(func(txn *badger.Txn) error {
		return fsm.ScanLeases(txn, func(fl fsm.Lease) error {
			m[fl.ID] = &lease{id: fl.ID, ttl: fl.TTL, remaining: fl.Remaining, ckptAt: now, idx: -1}
			return nil
		})
	})
	if err != nil {
		return err
	}
	l.leases = m
	return nil
}

// Apply takes the lease changes of a committed batch: the state machine's
// OnLeases (on the raft goroutine). It must not block: it only updates the
// mirror and, while this node rules, the clock. A restore reloads the
// mirror from db and makes the lessor give up ruling until it promotes
// again.
func (l *Lessor) Apply(db *badger.DB, c fsm.LeaseCommit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.Restored {
		l.demoteLocked()
		if err := l.loadLocked(db); err != nil {
			l.log.Error("lessor: reload after restore", "err", err)
		}
		return
	}
	now := time.Now()
	for _, ch := range c.Changes {
		switch ch.Kind {
		case fsm.LeaseGranted:
			if _, ok := l.leases[ch.ID]; ok {
				continue
			}
			ls := &lease{id: ch.ID, ttl: ch.TTL, ckptAt: now, idx: -1}
			l.leases[ch.ID] = ls
			if l.p != nil {
				ls.expiry, ls.renewed = now.Add(ls.ttl), now
				l.p.schedule(ls)
				l.kick()
			}
		case fsm.LeaseRemoved:
			if ls, ok := l.leases[ch.ID]; ok {
				delete(l.leases, ch.ID)
				if l.p != nil {
					l.p.unschedule(ls)
				}
			}
		case fsm.LeaseCheckpointed:
			if ls, ok := l.leases[ch.ID]; ok {
				ls.remaining, ls.ckptAt = ch.Remaining, now
			}
		}
	}
}

// Start starts the lessor's goroutines on raft.
func (l *Lessor) Start(r Raft) {
	l.raft = r
	l.wg.Add(2)
	go l.run()
	go l.checkpointer()
}

// Stop stops the lessor and waits for its goroutines. Idempotent; Start
// must have been called.
func (l *Lessor) Stop() {
	select {
	case <-l.stopC:
	default:
		close(l.stopC)
	}
	l.mu.Lock()
	l.demoteLocked()
	l.mu.Unlock()
	l.wg.Wait()
}

func (l *Lessor) kick() {
	select {
	case l.kickC <- struct{}{}:
	default:
	}
}

// run follows the node's role and, while it rules, the lease clock.
func (l *Lessor) run() {
	defer l.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var promoting uint64 // the term a promotion runs for
	promotedC := make(chan uint64, 1)
	for {
		changed := l.raft.Changed()
		st := l.raft.Status()
		leader := st.State == raft.StateLeader
		l.mu.Lock()
		if l.p != nil && (!leader || st.Term != l.p.term) {
			l.demoteLocked()
		}
		ruling := l.p != nil
		l.mu.Unlock()
		if leader && !ruling && promoting != st.Term {
			promoting = st.Term
			l.wg.Go(func() { l.awaitApplied(ctx, st.Term, promotedC) })
		}
		timer.Reset(l.tick())
		select {
		case <-changed:
		case <-l.kickC:
		case <-timer.C:
		case term := <-promotedC:
			if st := l.raft.Status(); st.State == raft.StateLeader && st.Term == term {
				l.promote(term)
			}
			if term == promoting {
				promoting = 0
			}
		case <-l.stopC:
			l.mu.Lock()
			l.demoteLocked()
			l.mu.Unlock()
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// awaitApplied waits until the node applied everything committed before
// term began (a ReadIndex round on the new leader), then reports term on
// done. It gives up once the node no longer leads in term.
func (l *Lessor) awaitApplied(ctx context.Context, term uint64, done chan<- uint64) {
	for {
		if st := l.raft.Status(); st.State != raft.StateLeader || st.Term != term || ctx.Err() != nil {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 4*l.cfg.ElectionTimeout)
		err := l.raft.ReadIndex(rctx)
		cancel()
		if err == nil {
			select {
			case done <- term:
			case <-ctx.Done():
			}
			return
		}
		if errors.Is(err, raftnode.ErrStopped) {
			return
		}
	}
}

// Has tells whether lease id is in the mirror.
func (l *Lessor) Has(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.leases[id]
	return ok
}
