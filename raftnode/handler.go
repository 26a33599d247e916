package raftnode

import (
	"context"
	"io"
	"os"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// handler is the Node seen by its transport (transport.Handler).
type handler Node

func (h *handler) Process(m *pb.Message) {
	select {
	case h.recvC <- m:
	default: // raft recovers lost messages by itself
	}
}

func (h *handler) ProcessSnapshot(m *pb.Message, body io.Reader) error {
	n := (*Node)(h)
	path, err := n.spool(m, body)
	if err != nil {
		return err
	}
	idx := m.GetSnapshot().GetMetadata().GetIndex()
	err = n.do(context.Background(), func(l *loop) {
		if old, ok := l.spools[idx]; ok {
			os.Remove(old)
		}
		l.spools[idx] = path
		l.step(m)
	})
	if err != nil {
		os.Remove(path)
	}
	return err
}

func (h *handler) ReportUnreachable(id uint64) {
	select {
	case h.ctlC <- func(l *loop) { l.rn.ReportUnreachable(id) }:
	default:
	}
}

// ReportSnapshot must not lose the report (raft would wait for it), nor
// block: the transport may call it on the raft goroutine.
func (h *handler) ReportSnapshot(id uint64, failed bool) {
	st := raft.SnapshotFinish
	if failed {
		st = raft.SnapshotFailure
	}
	r := func(l *loop) { l.rn.ReportSnapshot(id, st) }
	select {
	case h.ctlC <- r:
	default:
		go func() {
			select {
			case h.ctlC <- r:
			case <-h.doneC:
			}
		}()
	}
}

// Admit implements transport.Admitter: see Node.Admit.
func (h *handler) Admit(from, incarnation uint64) error { return (*Node)(h).Admit(from, incarnation) }
