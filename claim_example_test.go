package concord_test

import (
	"context"
	"fmt"
	"log"
	"sync"

	"github.com/concordkv/concord"
)

// Claim hands out work: each job goes to the first worker that claims it,
// and stays its own while the worker's marker lives. Binding the marker to
// the worker's session gives the job back if the worker dies.
func ExampleNode_Claim() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()
	for _, job := range []string{"jobs/1", "jobs/2"} {
		if _, err := n.Put(ctx, job, "work for "+job); err != nil {
			log.Fatal(err)
		}
	}
	s, err := concord.NewSession(n)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	for range 3 {
		r, err := n.Claim(ctx, "jobs/", "owners/", "worker-a", concord.WithPrefix(), concord.WithLease(s.Lease()))
		if err != nil {
			log.Fatal(err)
		}
		if r.Kv == nil {
			fmt.Println("nothing free")
			continue
		}
		fmt.Printf("%s claimed (%s, claim number %d), marker %s\n", r.Kv.Key, r.Kv.Value, r.Kv.Version-1, r.Marker.Key)
	}
	// Output:
	// jobs/1 claimed (work for jobs/1, claim number 1), marker owners/1
	// jobs/2 claimed (work for jobs/2, claim number 1), marker owners/2
	// nothing free
}

// A Counter is an int64 shared by every node: concurrent Adds never lose
// an update.
func ExampleCounter() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()
	hits := concord.NewCounter(n, "stats/hits")
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := hits.Add(ctx, 2); err != nil {
				log.Print(err)
			}
		})
	}
	wg.Wait()
	v, err := hits.Load(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("hits:", v)
	// Output:
	// hits: 20
}
