// Config demonstrates how to share live configuration with concord's
// Var[T]: every replica of a service, each embedding a concord node,
// holds the same config struct, kept current by a watch and read with no
// round trip. One replica stores a new config and the others print it as
// it reaches them; two replicas then update it at once with Update, a
// compare-and-swap on the key, and neither change is lost.
//
// The three nodes run in this process, on an in-memory network
// (examples/internal/memcluster).
//
// Run it with:
//
//	go run ./examples/config
package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/examples/internal/memcluster"
)

// Config is the service's shared configuration.
type Config struct {
	LogLevel  string   `json:"log_level"`
	RateLimit int      `json:"rate_limit"`
	Features  []string `json:"features,omitempty"`
}

// defaults is the config before anyone stored one.
var defaults = Config{LogLevel: "info", RateLimit: 100}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names := []string{"n1", "n2", "n3"}
	nodes, stop, err := memcluster.Start(ctx, names)
	if err != nil {
		return err
	}
	defer stop()

	// Every replica loads the config once, then follows it.
	vars := make([]*concord.Var[Config], len(nodes))
	for i, n := range nodes {
		v, err := concord.NewVar[Config](ctx, n, "config/api", concord.WithVarDefault(defaults))
		if err != nil {
			return err
		}
		defer v.Close()
		vars[i] = v
		c, rev := v.Load()
		fmt.Printf("%s starts with %+v (revision %d: the default)\n", names[i], c, rev)
	}

	fmt.Println("\nn1 stores a new config")
	if err := vars[0].Store(ctx, Config{LogLevel: "debug", RateLimit: 250, Features: []string{"beta-ui"}}); err != nil {
		return err
	}
	if err := showEverywhere(names, vars); err != nil {
		return err
	}

	fmt.Println("\nn2 and n3 each raise the rate limit by 50, at the same time, with Update")
	var wg sync.WaitGroup
	errs := make([]error, len(vars))
	for i := 1; i < len(vars); i++ {
		wg.Go(func() {
			_, errs[i] = vars[i].Update(ctx, func(c Config) (Config, error) {
				c.RateLimit += 50
				return c, nil
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if err := showEverywhere(names, vars); err != nil {
		return err
	}
	if c, _ := vars[0].Load(); c.RateLimit != 350 {
		return fmt.Errorf("rate limit %d after two raises from 250, want 350", c.RateLimit)
	}
	return nil
}

// showEverywhere waits until every replica holds the revision the most
// advanced one holds, reading each one's Changes, and prints what each
// sees.
func showEverywhere(names []string, vars []*concord.Var[Config]) error {
	var target int64
	for _, v := range vars {
		_, rev := v.Load()
		target = max(target, rev)
	}
	for i, v := range vars {
		timeout := time.After(10 * time.Second)
		for {
			c, rev := v.Load() // no round trip: the local copy
			if rev >= target {
				fmt.Printf("  %s now runs with %+v (revision %d)\n", names[i], c, rev)
				break
			}
			select {
			case <-v.Changes():
			case <-timeout:
				return fmt.Errorf("%s did not reach revision %d", names[i], target)
			}
		}
	}
	return nil
}
