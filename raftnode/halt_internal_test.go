package raftnode

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/transport"
)

// TestPanicHaltsPeerNotProcess: a panic on the raft goroutine (here the
// Applier's; raft's own on state it cannot reconcile are the same) stops
// the peer with ErrHalted, and the process goes on.
func TestPanicHaltsPeerNotProcess(t *testing.T) {
	net := transport.NewNetwork(1)
	t.Cleanup(net.Close)
	n, err := Start(Config{
		ID: 1, DataDir: t.TempDir(), Peers: []Peer{{ID: 1, Addr: "mem://1"}},
		Transport: net.Transport(1), Applier: panicApplier{},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := n.Propose(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Propose(ctx, []byte("boom")); !errors.Is(err, ErrStopped) || !errors.Is(err, ErrHalted) {
		t.Fatalf("Propose of the panicking command: %v, want ErrStopped and ErrHalted", err)
	}
	if err := n.Err(); !errors.Is(err, ErrHalted) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Err = %v, want ErrHalted naming the panic", err)
	}
}

// panicApplier is a nopApplier that panics on the command "boom".
type panicApplier struct{ nopApplier }

func (panicApplier) Apply(_ *Txn, _ uint64, cmd []byte) ([]byte, error) {
	if string(cmd) == "boom" {
		panic("applier: boom")
	}
	return nil, nil
}

// TestHeartbeatPastLogIgnored: a heartbeat whose commit index is past
// this peer's log (a leader that still counts entries this peer lost with
// its data, see incarnation.go) has its commit index ignored; raft would
// halt on it. The peer follows the sender's term and goes on.
func TestHeartbeatPastLogIgnored(t *testing.T) {
	p := &syncProbe{}
	n := startLoneProbed(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := n.Propose(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	term := n.Status().Term
	(*handler)(n).Process(&pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(uint64(777)), To: new(n.ID()),
		Term: new(term + 10), Commit: new(uint64(1 << 40))})
	deadline := time.Now().Add(10 * time.Second)
	for n.Status().Term != term+10 {
		if time.Now().After(deadline) {
			t.Fatalf("term %d, want the heartbeat's %d", n.Status().Term, term+10)
		}
		select {
		case <-n.Done():
			t.Fatalf("the peer stopped: %v", n.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := n.Err(); err != nil {
		t.Fatalf("Err = %v", err)
	}
	if last, _ := n.st.LastIndex(); n.Status().Commit > last {
		t.Fatalf("commit %d after the heartbeat, past the log's last index %d", n.Status().Commit, last)
	}
}
