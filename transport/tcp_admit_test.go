package transport

import (
	"errors"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

var errTestRefused = errors.New("test: not this incarnation")

// TestAdmitSeesIncarnation: a Handler's Admit gets the dialer's id and incarnation
// from its hello; a refusal delivers nothing, reports the peer unreachable
// to the dialer and shows in Refused; an admitted dialer is served.
func TestAdmitSeesIncarnation(t *testing.T) {
	recS, recA, recB := newRecorder(), newRecorder(), newRecorder()
	adm := &admitter{recorder: recS, seen: map[uint64]uint64{}}
	s := newTestTCP(t, 3, adm, nil)
	a := newTestTCP(t, 1, recA, func(c *TCPConfig) { c.Incarnation = 55 })
	b := newTestTCP(t, 2, recB, func(c *TCPConfig) { c.Incarnation = 66 })
	a.AddPeer(3, s.Addr())
	b.AddPeer(3, s.Addr())
	b.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 2, 3, 0)})
	recB.waitUntil(t, "peer 3 reported unreachable to the refused dialer", func() bool { return recB.unreachable[3] > 0 })
	if err := s.Refused(time.Minute); !errors.Is(err, ErrNotAdmitted) || !errors.Is(err, errTestRefused) {
		t.Fatalf("Refused after a refused hello: %v, want ErrNotAdmitted wrapping Admit's error", err)
	}
	if n := recS.count(); n != 0 {
		t.Fatalf("refused dialer delivered %d messages", n)
	}
	a.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 3, 0)})
	recS.waitUntil(t, "admitted dialer's message delivered", func() bool { return len(recS.msgs) == 1 })
	adm.mu.Lock()
	defer adm.mu.Unlock()
	if adm.seen[1] != 55 || adm.seen[2] != 66 {
		t.Fatalf("Admit saw incarnations %v, want 1:55 2:66", adm.seen)
	}
}

// admitter is a recorder that refuses incarnation 66.
type admitter struct {
	*recorder
	mu   sync.Mutex
	seen map[uint64]uint64 // guarded by mu
}

func (a *admitter) Admit(from, inc uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen[from] = inc
	if inc == 66 {
		return errTestRefused
	}
	return nil
}
