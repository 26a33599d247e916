package concord_test

import (
	"context"
	"fmt"
	"log"

	"github.com/concordkv/concord"
)

// A Registry keeps a service's live instances. Register binds an instance
// to a Session: when the session ends, the instance is gone. Watch sends
// the whole set now and after each change.
func ExampleRegistry_Watch() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := openExample()
	defer n.Close()
	s, err := concord.NewSession(n)
	if err != nil {
		log.Fatal(err)
	}
	reg := concord.NewRegistry[string](n, "services/api")
	w := reg.Watch(ctx)
	fmt.Println("instances:", len(<-w))
	if err := reg.Register(ctx, s, "api-1", "10.0.0.1:8080"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("instances:", <-w)
	if err := s.Close(); err != nil { // revokes the lease: its instances go
		log.Fatal(err)
	}
	fmt.Println("instances:", len(<-w))
	// Output:
	// instances: 0
	// instances: map[api-1:10.0.0.1:8080]
	// instances: 0
}
