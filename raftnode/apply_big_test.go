package raftnode_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/transport"
)

// wideApplier writes many keys per command: the command is small, its
// writes are not.
type wideApplier struct{}

func (wideApplier) Apply(txn *raftnode.Txn, index uint64, cmd []byte) ([]byte, error) {
	n := binary.BigEndian.Uint32(cmd)
	val := make([]byte, 64)
	for i := range n {
		if err := txn.Set(fmt.Appendf(nil, "s/%x/%d", cmd[4:], i), val); err != nil {
			return nil, err
		}
	}
	return nil, nil
}
func (wideApplier) Snapshot(*badger.Txn, io.Writer) error { return nil }
func (wideApplier) Restore(*badger.DB, io.Reader) error   { return nil }

// TestApplyCommitsBetweenWideCommands: many commands that each write
// thousands of keys, applied in few Readies, would overflow one badger
// transaction; apply counts what the Applier writes and commits between
// commands, so none fails.
func TestApplyCommitsBetweenWideCommands(t *testing.T) {
	net := transport.NewNetwork(1)
	defer net.Close()
	n, err := raftnode.Start(raftnode.Config{
		ID: 1, Peers: []raftnode.Peer{{ID: 1, Addr: "mem://1"}},
		Transport: net.Transport(1), Applier: wideApplier{},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			cmd := binary.BigEndian.AppendUint32(nil, 3000)
			cmd = binary.BigEndian.AppendUint64(cmd, uint64(i))
			if _, err := n.Propose(ctx, cmd); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("propose: %v (node: %v)", err, n.Err())
	}
}
