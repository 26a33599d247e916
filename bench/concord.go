package main

import (
	"context"
	"errors"
)

// errConcordUnavailable is what the concord driver returns until the public
// concord.Node API (Open/Ready/Put/Get/Txn, ../../shared/DESIGN.md "Public API")
// exists in the root module. The harness recognises it, prints the concord
// columns as "n/a (concord.Node not built yet)" and runs etcd alone.
var errConcordUnavailable = errors.New("concord.Node is not available yet")

// openConcord is the concord System's Open. It is a placeholder: it always
// returns errConcordUnavailable.
//
// The driver it stands for mirrors etcd.go, with the same guarantees so the
// two columns compare like with like:
//
//   - Open: nodes members in this process, each concord.Open'ed from
//     concord.DefaultConfig() with Name "concord<i>", DataDir
//     filepath.Join(dir, name) (durable, default sync), PeerAddr on a port
//     from freePorts, GossipAddr "" and InitialCluster naming all members
//     (static bootstrap); then Ready(ctx) on every node before returning.
//     Config.Logger stays nil (silent).
//   - Size: the number of nodes; Store(i): a thin wrapper around node i%Size
//     whose Close does nothing (the Cluster owns the node); Cluster.Close
//     closes every node.
//   - Store.Put: node.Put(ctx, key, val).
//   - Store.Get: node.Get(ctx, key), plus concord.WithSerializable() when
//     linearizable is false; "" when resp.Kvs is empty.
//   - Store.CAS: node.CompareAndSwap(ctx, key, old, new); an error matching
//     errors.Is(err, concord.ErrCompareFailed) is (false, nil).
//
// Using the root module is already wired: go.mod replaces
// github.com/concordkv/concord with ../, so importing it and running
// `go mod tidy` in bench/ is all the module setup the driver needs.
func openConcord(ctx context.Context, nodes int, dir string) (Cluster, error) {
	return nil, errConcordUnavailable
}
