package concord_test

import (
	"context"
	"fmt"
	"log"

	"github.com/concordkv/concord"
)

// A Var is one key's value kept current by a watch: Load reads it with no
// round trip, Changes tells when it moves, Store writes it.
func ExampleVar() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := openExample()
	defer n.Close()
	type Config struct{ Limit int }
	v, err := concord.NewVar[Config](ctx, n, "config/api", concord.WithVarDefault(Config{Limit: 10}))
	if err != nil {
		log.Fatal(err)
	}
	c, rev := v.Load()
	fmt.Println("before any store:", c.Limit, rev)
	if _, err := n.Put(ctx, "config/api", `{"Limit":20}`); err != nil { // from anywhere
		log.Fatal(err)
	}
	fmt.Println("changed to:", (<-v.Changes()).Limit)
	if err := v.Store(ctx, Config{Limit: 30}); err != nil {
		log.Fatal(err)
	}
	c, _ = v.Load()
	fmt.Println("after Store:", c.Limit)
	// Output:
	// before any store: 10 0
	// changed to: 20
	// after Store: 30
}
