// Package memcluster starts a concord cluster inside one process, on an
// in-memory network, for the examples that are about what runs on a
// cluster rather than how to set one up (see examples/quickstart for
// that).
package memcluster

import (
	"context"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/transport"
)

// Start opens one in-memory node per name, with concord.DefaultLocalConfig
// and a static InitialCluster of them all, and waits until every one is
// ready. stop closes every node, then the network (a node closed before
// is fine: Close is idempotent). On error Start closes what it opened.
func Start(ctx context.Context, names []string) (nodes []*concord.Node, stop func(), err error) {
	network := transport.NewNetwork(1)
	initial := map[string]string{}
	for _, name := range names {
		initial[name] = network.Transport(concord.MemberID(name)).Addr()
	}
	closeAll := func() {
		for _, n := range nodes {
			n.Close()
		}
		network.Close()
	}
	for _, name := range names {
		cfg := concord.DefaultLocalConfig()
		cfg.Name = name
		cfg.Transport = network.Transport(concord.MemberID(name))
		cfg.InitialCluster = initial
		n, err := concord.Open(ctx, cfg)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.Ready(ctx); err != nil {
			closeAll()
			return nil, nil, err
		}
	}
	return nodes, closeAll, nil
}
