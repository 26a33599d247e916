package concord_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/concordkv/concord"
)

// Open starts a node. With no DataDir and no InitialCluster it is a
// one-node cluster held in memory, which leads at once: handy in tests.
func ExampleOpen() {
	ctx := context.Background()
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "example"
	n, err := concord.Open(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	if err := n.Ready(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("leader:", n.IsLeader())
	fmt.Println("revision:", n.Status().Revision)
	// Output:
	// leader: true
	// revision: 1
}

// openExample opens a one-node in-memory cluster for the examples.
func openExample() *concord.Node {
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "example"
	n, err := concord.Open(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	return n
}

// Put writes a key and Get reads it back. Every write creates a revision;
// a key remembers the revision that created it and its version.
func ExampleNode_Put() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()

	if _, err := n.Put(ctx, "config/color", "blue"); err != nil {
		log.Fatal(err)
	}
	resp, err := n.Put(ctx, "config/color", "green", concord.WithPrevKV())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("put at revision %d, previous value %s\n", resp.Revision, resp.PrevKv.Value)

	get, err := n.Get(ctx, "config/", concord.WithPrefix())
	if err != nil {
		log.Fatal(err)
	}
	for _, kv := range get.Kvs {
		fmt.Printf("%s = %s (created %d, version %d)\n", kv.Key, kv.Value, kv.CreateRevision, kv.Version)
	}
	// Output:
	// put at revision 3, previous value blue
	// config/color = green (created 2, version 2)
}

// Txn runs operations atomically, on a condition: here, move a task from
// "todo" to "done" only if nobody else has taken it.
func ExampleNode_Txn() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()
	if _, err := n.Put(ctx, "todo/1", "write docs"); err != nil {
		log.Fatal(err)
	}

	resp, err := n.Txn(ctx).
		If(concord.Compare(concord.Version("todo/1"), ">", 0)).
		Then(concord.OpDelete("todo/1"), concord.OpPut("done/1", "write docs")).
		Else(concord.OpGet("done/1")).
		Commit()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("moved:", resp.Succeeded, "at revision", resp.Revision)
	fmt.Println("deleted:", resp.Responses[0].Del().Deleted)
	// Output:
	// moved: true at revision 3
	// deleted: 1
}

// CompareAndSwap changes a value only if it still holds what the caller
// last saw: a lost race gets ErrCompareFailed and changes nothing.
func ExampleNode_CompareAndSwap() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()
	if _, err := n.Put(ctx, "owner", "nobody"); err != nil {
		log.Fatal(err)
	}

	if _, err := n.CompareAndSwap(ctx, "owner", "nobody", "alice"); err != nil {
		log.Fatal(err)
	}
	_, err := n.CompareAndSwap(ctx, "owner", "nobody", "bob")
	fmt.Println("bob lost:", errors.Is(err, concord.ErrCompareFailed))

	get, err := n.Get(ctx, "owner")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("owner = %s\n", get.Kvs[0].Value)
	// Output:
	// bob lost: true
	// owner = alice
}

// PutSequential creates keys that sort in creation order, like a queue:
// the number after the prefix grows with every key, across the cluster.
func ExampleNode_PutSequential() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()

	for _, job := range []string{"resize", "encode", "upload"} {
		key, _, err := n.PutSequential(ctx, "jobs/", job)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(key)
	}
	get, err := n.Get(ctx, "jobs/", concord.WithPrefix(), concord.WithLimit(1))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("first of %d: %s\n", get.Count, get.Kvs[0].Value)
	// Output:
	// jobs/00000000000000000002
	// jobs/00000000000000000003
	// jobs/00000000000000000004
	// first of 3: resize
}

// Grant creates a lease; keys put with it go, all in one revision, when
// it is revoked or expires.
func ExampleNode_Grant() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()

	id, err := n.Grant(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range []string{"workers/a", "workers/b"} {
		if _, err := n.Put(ctx, k, "up", concord.WithLease(id)); err != nil {
			log.Fatal(err)
		}
	}
	st, err := n.TimeToLive(ctx, id, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("granted %v, %d keys\n", st.GrantedTTL, len(st.Keys))
	if err := n.Revoke(ctx, id); err != nil {
		log.Fatal(err)
	}
	get, err := n.Get(ctx, "workers/", concord.WithPrefix())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("keys after revoke:", get.Count)
	// Output:
	// granted 10s, 2 keys
	// keys after revoke: 0
}

// A Session keeps a lease alive while its holder lives; Close revokes it.
func ExampleNewSession() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()

	s, err := concord.NewSession(n, concord.WithSessionTTL(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := n.Put(ctx, "services/api/a", "10.0.0.1:80", concord.WithLease(s.Lease())); err != nil {
		log.Fatal(err)
	}
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}
	<-s.Done()
	get, err := n.Get(ctx, "services/api/a")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("registered after Close:", len(get.Kvs))
	// Output:
	// registered after Close: 0
}
