package concord_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/concordkv/concord"
)

// Lock blocks until the lock is held; IsOwner guards a write on still
// holding it, and a second participant's TryLock is refused meanwhile.
func ExampleMutex_Lock() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()
	s, err := concord.NewSession(n)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	m := concord.NewMutex(s, "locks/report")
	if err := m.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	resp, err := n.Txn(ctx).If(m.IsOwner()).Then(concord.OpPut("report/owner", "me")).Commit()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("written while holding:", resp.Succeeded)
	other := concord.NewMutex(s, "locks/report")
	fmt.Println("other TryLock locked:", errors.Is(other.TryLock(ctx), concord.ErrLocked))
	if err := m.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("other TryLock after Unlock:", other.TryLock(ctx))
	// Output:
	// written while holding: true
	// other TryLock locked: true
	// other TryLock after Unlock: <nil>
}

// A Fence refuses the writes of a holder whose token is older than one it
// accepted: a holder that lost the lock without noticing does no harm.
func ExampleFence_Do() {
	ctx := context.Background()
	n := openExample()
	defer n.Close()

	f := concord.NewFence(n, "db/fence")
	if _, err := f.Do(ctx, 42, concord.OpPut("db/row", "from the holder of token 42")); err != nil {
		log.Fatal(err)
	}
	_, err := f.Do(ctx, 17, concord.OpPut("db/row", "from an old holder"))
	fmt.Println(errors.Is(err, concord.ErrStaleToken))
	resp, err := n.Get(ctx, "db/row")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", resp.Kvs[0].Value)
	// Output:
	// true
	// from the holder of token 42
}
