// Quickstart demonstrates how to run a concord cluster inside one program:
// three nodes on TCP loopback, each with its own data dir, replicate
// writes made on any of them; they race to compare-and-swap one key and
// exactly one wins; the leader closes, writes go on under a new leader,
// and the old leader reopens its data dir and catches up.
//
// Run it with:
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/concordkv/concord"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// cluster is three concord nodes in this process.
type cluster struct {
	names   []string
	initial map[string]string // name -> peer address
	root    string
	nodes   []*concord.Node
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	root, err := os.MkdirTemp("", "concord-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)

	c := &cluster{names: []string{"n1", "n2", "n3"}, initial: map[string]string{}, root: root}
	addrs, err := freeAddrs(3)
	if err != nil {
		return err
	}
	for i, name := range c.names {
		c.initial[name] = addrs[i]
	}
	c.nodes = make([]*concord.Node, 3)
	defer c.closeAll()
	// Open returns at once; a node is ready once it knows a leader, which
	// takes a quorum: open all three, then wait.
	for i := range c.nodes {
		if err := c.open(ctx, i); err != nil {
			return err
		}
	}
	for _, n := range c.nodes {
		if err := n.Ready(ctx); err != nil {
			return err
		}
	}
	lead, err := c.leader(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("3 nodes up, %s leads\n", c.names[lead])

	if err := replicate(ctx, c); err != nil {
		return err
	}
	if err := casRace(ctx, c); err != nil {
		return err
	}
	return failover(ctx, c, lead)
}

// replicate writes on every node and reads everything on every node.
func replicate(ctx context.Context, c *cluster) error {
	fmt.Println("\n1. every node writes a greeting; every node reads them all")
	for i, n := range c.nodes {
		if _, err := n.Put(ctx, "greeting/"+c.names[i], "hello from "+c.names[i]); err != nil {
			return err
		}
	}
	for i, n := range c.nodes {
		resp, err := n.Get(ctx, "greeting/", concord.WithPrefix())
		if err != nil {
			return err
		}
		var vals []string
		for _, kv := range resp.Kvs {
			vals = append(vals, string(kv.Value))
		}
		fmt.Printf("  %s reads %d greetings at revision %d: %s\n", c.names[i], len(resp.Kvs), resp.Revision, strings.Join(vals, ", "))
		if len(resp.Kvs) != 3 {
			return fmt.Errorf("%s reads %d greetings, want 3", c.names[i], len(resp.Kvs))
		}
	}
	return nil
}

// casRace has every node try to take "owner" from "nobody" at once.
func casRace(ctx context.Context, c *cluster) error {
	fmt.Println("\n2. the three nodes race to CompareAndSwap owner from nobody")
	if _, err := c.nodes[0].Put(ctx, "owner", "nobody"); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, n := range c.nodes {
		wg.Go(func() { _, errs[i] = n.CompareAndSwap(ctx, "owner", "nobody", c.names[i]) })
	}
	wg.Wait()
	winners := 0
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
			fmt.Printf("  %s won\n", c.names[i])
		case errors.Is(err, concord.ErrCompareFailed):
			fmt.Printf("  %s lost: %v\n", c.names[i], err)
		default:
			return err
		}
	}
	resp, err := c.nodes[2].Get(ctx, "owner")
	if err != nil {
		return err
	}
	fmt.Printf("  owner = %s\n", resp.Kvs[0].Value)
	if winners != 1 {
		return fmt.Errorf("%d winners, want 1", winners)
	}
	return nil
}

// failover closes the leader, writes without it, then brings it back.
func failover(ctx context.Context, c *cluster, lead int) error {
	fmt.Printf("\n3. the leader %s closes\n", c.names[lead])
	if err := c.nodes[lead].Close(); err != nil {
		return err
	}
	c.nodes[lead] = nil
	newLead, err := c.leader(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("  %s leads now\n", c.names[newLead])
	other := c.nodes[(lead+1)%3]
	var last *concord.PutResponse
	for i := range 100 {
		if last, err = other.Put(ctx, "counter", fmt.Sprint(i+1)); err != nil {
			return err
		}
	}
	fmt.Printf("  100 writes committed without %s, up to revision %d\n", c.names[lead], last.Revision)

	if err := c.open(ctx, lead); err != nil {
		return err
	}
	back := c.nodes[lead]
	if err := back.Ready(ctx); err != nil {
		return err
	}
	// Ready means caught up: even a local (serializable) read sees the
	// writes made while the node was away.
	resp, err := back.Get(ctx, "counter", concord.WithSerializable())
	if err != nil {
		return err
	}
	fmt.Printf("  %s reopened its data dir and reads counter = %s at revision %d\n", c.names[lead], resp.Kvs[0].Value, resp.Revision)
	if string(resp.Kvs[0].Value) != "100" || resp.Revision < last.Revision {
		return fmt.Errorf("%s did not catch up", c.names[lead])
	}
	return nil
}

// open opens node i on its data dir.
func (c *cluster) open(ctx context.Context, i int) error {
	cfg := concord.DefaultLocalConfig()
	cfg.Name = c.names[i]
	cfg.DataDir = filepath.Join(c.root, c.names[i])
	cfg.InitialCluster = c.initial // PeerAddr defaults to InitialCluster[Name]
	n, err := concord.Open(ctx, cfg)
	if err != nil {
		return err
	}
	c.nodes[i] = n
	return nil
}

func (c *cluster) closeAll() {
	for _, n := range c.nodes {
		if n != nil {
			n.Close()
		}
	}
}

// leader waits until one of the open nodes leads.
func (c *cluster) leader(ctx context.Context) (int, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		for i, n := range c.nodes {
			if n != nil && n.IsLeader() {
				return i, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
	}
}

// freeAddrs returns n loopback addresses whose ports are free right now.
func freeAddrs(n int) ([]string, error) {
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		out = append(out, ln.Addr().String())
	}
	return out, nil
}
