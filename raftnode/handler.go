package raftnode

import (
	"context"
	"os"

	pb "go.etcd.io/raft/v3/raftpb"
	"io"
)

// report is a transport's delivery report for raft.
type report struct {
	id               uint64
	snapshot, failed bool
}

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
	case h.reportC <- report{id: id}:
	default:
	}
}

// ReportSnapshot must not lose the report (raft would wait for it), nor
// block: the transport may call it on the raft goroutine.
func (h *handler) ReportSnapshot(id uint64, failed bool) {
	r := report{id: id, snapshot: true, failed: failed}
	select {
	case h.reportC <- r:
	default:
		go func() {
			select {
			case h.reportC <- r:
			case <-h.doneC:
			}
		}()
	}
}
