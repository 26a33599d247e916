package concord_test

import (
	"context"
	"fmt"
	"log"

	"github.com/concordkv/concord"
)

// Dequeue hands out the highest priority first and claims the message
// for the session until Ack or Nack; after a Nack it comes back at once,
// its Deliveries one higher.
func ExampleQueue_Dequeue() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()
	s, err := concord.NewSession(n)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	q := concord.NewQueue[string](s, "jobs")
	for _, job := range []string{"resize", "thumbnail"} {
		if _, err := q.Enqueue(ctx, job); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := q.Enqueue(ctx, "urgent fix", concord.WithPriority(1)); err != nil {
		log.Fatal(err)
	}
	m, err := q.Dequeue(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Value, m.Deliveries)
	if err := m.Nack(ctx); err != nil {
		log.Fatal(err)
	}
	for range 3 {
		m, err := q.Dequeue(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.Value, m.Deliveries)
		if err := m.Ack(ctx); err != nil {
			log.Fatal(err)
		}
	}
	l, err := q.Len(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("left:", l)
	// Output:
	// urgent fix 1
	// urgent fix 2
	// resize 1
	// thumbnail 1
	// left: 0
}
