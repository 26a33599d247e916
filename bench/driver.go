package main

import (
	"context"
	"fmt"
	"net"
)

// Store is one client bound to one member of a cluster. The workloads only
// talk to a Store, so the same workload code runs against every system.
// A Store is safe for concurrent use by many workers.
type Store interface {
	// Put writes val under key.
	Put(ctx context.Context, key, val string) error
	// Get reads key and returns its value ("" when the key is absent).
	// linearizable=true must observe every write acknowledged before the call
	// started (etcd: the default Range; concord: the batched ReadIndex);
	// linearizable=false may answer from the member's local state
	// (etcd: WithSerializable; concord: WithSerializable).
	Get(ctx context.Context, key string, linearizable bool) (string, error)
	// CAS writes new under key if and only if key currently holds old, as one
	// atomic transaction. It reports whether the swap happened; a failed
	// compare is (false, nil), not an error.
	CAS(ctx context.Context, key, old, new string) (bool, error)
	// WatchPrefix watches every key under prefix from now on: it calls
	// created once the watch is set up (every later put reaches it), then
	// fn with the value of each put, in order, until ctx ends (nil) or the
	// watch fails.
	WatchPrefix(ctx context.Context, prefix string, created func(), fn func(value []byte)) error
	// Close releases the client. It does not stop the member.
	Close() error
}

// Cluster is a running cluster of Size() durable members inside this process.
type Cluster interface {
	// Size is the number of members.
	Size() int
	// Store opens a new client bound to member i % Size(). The caller closes it.
	Store(i int) (Store, error)
	// Close stops every member. The caller removes the data directory.
	Close() error
}

// System is one implementation under test.
type System struct {
	// Name is the column label: "concord" or "etcd".
	Name string
	// Open starts a cluster of nodes members with their data under dir (an
	// empty, existing directory) and returns once the cluster has a leader and
	// every member serves requests.
	Open func(ctx context.Context, nodes int, dir string) (Cluster, error)
}

// systems lists every System the harness knows, in table column order.
var systems = []System{
	{Name: "concord", Open: openConcord},
	{Name: "etcd", Open: openEtcd},
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. All listeners are
// held open until every port is chosen, so the n ports differ from each other.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
