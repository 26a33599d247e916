package concord_test

import (
	"context"
	"fmt"
	"log"

	"github.com/concordkv/concord"
)

// Campaign blocks until the campaigner leads; Observe reports every
// change, "no leader" included, and Resign hands over at once.
func ExampleElection_Campaign() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()
	s, err := concord.NewSession(n)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	e := concord.NewElection[string](s, "elections/scheduler")
	octx, stop := context.WithCancel(ctx)
	defer stop()
	changes := e.Observe(octx)
	fmt.Printf("at first: %q\n", (<-changes).Value)

	if err := e.Campaign(ctx, "svc-1"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("elected:", (<-changes).Value, e.IsLeader())
	if err := e.Proclaim(ctx, "svc-1 v2"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("proclaimed:", (<-changes).Value)
	if err := e.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after Resign, no leader:", <-changes == concord.Leader[string]{})
	// Output:
	// at first: ""
	// elected: svc-1 true
	// proclaimed: svc-1 v2
	// after Resign, no leader: true
}

// A double barrier lets a fixed number of participants start together.
func ExampleDoubleBarrier_Enter() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()
	s, err := concord.NewSession(n)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	done := make(chan error)
	go func() { done <- concord.NewDoubleBarrier(s, "batch/7", 2).Enter(ctx) }()
	if err := concord.NewDoubleBarrier(s, "batch/7", 2).Enter(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("both entered:", <-done == nil)
	// Output:
	// both entered: true
}
