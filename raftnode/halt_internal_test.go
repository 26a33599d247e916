package raftnode

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// TestForgedMessageHaltsPeerNotProcess: a heartbeat claiming a commit far
// past this peer's log (forged, or from another cluster) makes raft panic;
// the peer stops with ErrHalted and the process goes on.
func TestForgedMessageHaltsPeerNotProcess(t *testing.T) {
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
	select {
	case <-n.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the peer did not stop")
	}
	if err := n.Err(); !errors.Is(err, ErrHalted) {
		t.Fatalf("Err = %v, want ErrHalted", err)
	}
	if _, err := n.Propose(ctx, []byte("y")); !errors.Is(err, ErrStopped) || !errors.Is(err, ErrHalted) {
		t.Fatalf("Propose on a halted peer: %v", err)
	}
}
