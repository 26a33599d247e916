// Discovery demonstrates how to use concord for service discovery: three
// replicas of a service, each embedding a concord node, register
// themselves in a Registry bound to their Session; a client watches the
// set of instances. One replica shuts down cleanly and deregisters; then
// another one's process dies without a word, and its instance vanishes
// on its own once its session's lease expires.
//
// The three nodes run in this process, on an in-memory network
// (examples/internal/memcluster).
//
// Run it with:
//
//	go run ./examples/discovery
package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/examples/internal/memcluster"
)

// Endpoint is what an instance publishes about itself.
type Endpoint struct {
	Addr string `json:"addr"`
	Node string `json:"node"`
}

// sessionTTL is how long a dead process's instance outlives it.
const sessionTTL = 2 * time.Second

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "discovery:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes, stop, err := memcluster.Start(ctx, []string{"n1", "n2", "n3"})
	if err != nil {
		return err
	}
	defer stop()

	// Each replica registers itself, with a session kept alive by its
	// own node: the session is the process's liveness.
	sessions := make([]*concord.Session, len(nodes))
	for i, n := range nodes {
		s, err := concord.NewSession(n, concord.WithSessionTTL(sessionTTL))
		if err != nil {
			return err
		}
		sessions[i] = s
		name := fmt.Sprintf("api-%d", i+1)
		ep := Endpoint{Addr: fmt.Sprintf("10.0.0.%d:8080", i+1), Node: fmt.Sprintf("n%d", i+1)}
		if err := concord.NewRegistry[Endpoint](n, "services/api").Register(ctx, s, name, ep); err != nil {
			return err
		}
		fmt.Printf("%s registered %s at %s\n", ep.Node, name, ep.Addr)
	}

	// The client lives on n1 and watches the set.
	client := concord.NewRegistry[Endpoint](nodes[0], "services/api")
	watch := client.Watch(ctx)
	if err := waitSet(watch, "api-1", "api-2", "api-3"); err != nil {
		return err
	}

	fmt.Println("\nn2's replica shuts down cleanly: it deregisters and closes its session")
	if err := concord.NewRegistry[Endpoint](nodes[1], "services/api").Deregister(ctx, sessions[1], "api-2"); err != nil {
		return err
	}
	if err := sessions[1].Close(); err != nil {
		return err
	}
	if err := waitSet(watch, "api-1", "api-3"); err != nil {
		return err
	}

	fmt.Printf("\nn3's process dies (its node closes, nothing deregisters; session TTL %v)\n", sessionTTL)
	start := time.Now()
	nodes[2].Close()
	if err := waitSet(watch, "api-1"); err != nil {
		return err
	}
	fmt.Printf("api-3 vanished %v after its process died\n", time.Since(start).Round(100*time.Millisecond))

	// A linearizable read agrees with the watch.
	got, err := client.Instances(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("\nInstances: %s\n", describe(got))
	if len(got) != 1 || got["api-1"].Addr != "10.0.0.1:8080" {
		return fmt.Errorf("instances at the end: %v", got)
	}
	return nil
}

// waitSet prints each set the watch sends until it holds exactly want.
func waitSet(watch <-chan map[string]Endpoint, want ...string) error {
	for set := range watch {
		fmt.Printf("  client sees %s\n", describe(set))
		if slices.Equal(slices.Sorted(maps.Keys(set)), want) {
			return nil
		}
	}
	return fmt.Errorf("watch ended before the set was %v", want)
}

func describe(set map[string]Endpoint) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(set)) {
		parts = append(parts, name+"="+set[name].Addr)
	}
	return fmt.Sprintf("%d instance(s): [%s]", len(set), strings.Join(parts, " "))
}
