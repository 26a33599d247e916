package main

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// Session implements PrimCluster with etcd's concurrency package and its
// experimental recipes queue, through an in-process client of member i.
// etcd's lease TTL is in whole seconds (at least 1).
func (c *etcdCluster) Session(ctx context.Context, i int, ttl time.Duration) (PrimSession, error) {
	cli := v3client.New(c.members[i%len(c.members)].Server)
	secs := max(int(ttl/time.Second), 1)
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(secs), concurrency.WithContext(context.Background()))
	if err != nil {
		cli.Close()
		return nil, err
	}
	return &etcdPrims{cli: cli, s: s, queues: map[string]*recipe.Queue{}}, nil
}

type etcdPrims struct {
	cli *clientv3.Client
	s   *concurrency.Session

	mu     sync.Mutex
	queues map[string]*recipe.Queue
}

func (p *etcdPrims) Campaign(ctx context.Context, name, val string) error {
	return concurrency.NewElection(p.s, name).Campaign(ctx, val)
}

func (p *etcdPrims) queue(name string) *recipe.Queue {
	p.mu.Lock()
	defer p.mu.Unlock()
	q, ok := p.queues[name]
	if !ok {
		q = recipe.NewQueue(p.cli, name)
		p.queues[name] = q
	}
	return q
}

func (p *etcdPrims) Enqueue(_ context.Context, name, val string) error {
	return p.queue(name).Enqueue(val)
}

// Dequeue runs the recipe's Dequeue, which takes no ctx and blocks until a
// message comes or the client closes; on ctx's end it returns at once and
// leaves that call to end with the client.
func (p *etcdPrims) Dequeue(ctx context.Context, name string) (string, func(context.Context) error, error) {
	type res struct {
		val string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		v, err := p.queue(name).Dequeue()
		ch <- res{v, err}
	}()
	select {
	case r := <-ch:
		// The recipe deletes the message as it dequeues it: there is no ack.
		return r.val, func(context.Context) error { return nil }, r.err
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
}

func (p *etcdPrims) Consume(ctx context.Context, name string, fn func(string) error) error {
	for {
		val, _, err := p.Dequeue(ctx, name)
		if err != nil {
			return err
		}
		if err := fn(val); err != nil {
			return err
		}
	}
}

func (p *etcdPrims) Orphan() { p.s.Orphan() }
func (p *etcdPrims) Revoke(ctx context.Context) error {
	_, err := p.cli.Revoke(ctx, p.s.Lease())
	return err
}
func (p *etcdPrims) Close() error {
	err := p.s.Close()
	p.cli.Close()
	return err
}
