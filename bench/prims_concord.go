package main

import (
	"context"
	"sync"
	"time"

	"github.com/concordkv/concord"
)

// Session implements PrimCluster with concord's own primitives.
func (c *concordCluster) Session(ctx context.Context, i int, ttl time.Duration) (PrimSession, error) {
	n := c.nodes[i%len(c.nodes)]
	s, err := concord.NewSession(n, concord.WithSessionTTL(ttl))
	if err != nil {
		return nil, err
	}
	return &concordPrims{n: n, s: s, queues: map[string]*concord.Queue[string]{}}, nil
}

type concordPrims struct {
	n *concord.Node
	s *concord.Session

	mu     sync.Mutex
	queues map[string]*concord.Queue[string]
}

func (p *concordPrims) Campaign(ctx context.Context, name, val string) error {
	return concord.NewElection[string](p.s, name).Campaign(ctx, val)
}

func (p *concordPrims) queue(name string) *concord.Queue[string] {
	p.mu.Lock()
	defer p.mu.Unlock()
	q, ok := p.queues[name]
	if !ok {
		q = concord.NewQueue[string](p.s, name)
		p.queues[name] = q
	}
	return q
}

func (p *concordPrims) Enqueue(ctx context.Context, name, val string) error {
	_, err := p.queue(name).Enqueue(ctx, val)
	return err
}

func (p *concordPrims) Dequeue(ctx context.Context, name string) (string, func(context.Context) error, error) {
	m, err := p.queue(name).Dequeue(ctx)
	if err != nil {
		return "", nil, err
	}
	return m.Value, m.Ack, nil
}

func (p *concordPrims) Consume(ctx context.Context, name string, fn func(string) error) error {
	m, err := p.queue(name).Dequeue(ctx)
	for err == nil {
		if err = fn(m.Value); err == nil {
			m, err = m.AckAndDequeue(ctx)
		}
	}
	return err
}

func (p *concordPrims) Orphan()                          { p.s.Orphan() }
func (p *concordPrims) Revoke(ctx context.Context) error { return p.n.Revoke(ctx, p.s.Lease()) }
func (p *concordPrims) Close() error                     { return p.s.Close() }
