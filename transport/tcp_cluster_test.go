package transport

import (
	"errors"
	"net"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/internal/wire"
)

// TestServeChecksCluster: a transport with a cluster id refuses a stream
// whose hello names another cluster, before any message, and serves one
// naming its own cluster or none.
func TestServeChecksCluster(t *testing.T) {
	rec := newRecorder()
	tr := newTestTCP(t, 2, rec, func(c *TCPConfig) { c.ClusterID = 7 })
	valid := msgFrame(t, msg(raftpb.MsgApp, 1, 2, 1))
	for _, tc := range []struct {
		cluster uint64
		kind    uint32
		want    error
	}{
		{8, kindMessages, ErrWrongCluster},
		{8, kindSnapshot, ErrWrongCluster},
		{7, kindMessages, nil},
		{0, kindMessages, nil},
	} {
		before := rec.count()
		client, server := net.Pipe()
		go func() {
			client.Write(cat(helloFrame(t, &wire.Hello{From: 1, To: 2, Kind: tc.kind, Version: version, Cluster: tc.cluster}), valid))
			client.Close()
		}()
		err := tr.serve(server)
		server.Close()
		if !errors.Is(err, tc.want) {
			t.Fatalf("hello of cluster %d, kind %d: serve = %v, want %v", tc.cluster, tc.kind, err, tc.want)
		}
		if got, want := rec.count()-before, map[bool]int{true: 1, false: 0}[tc.want == nil]; got != want {
			t.Fatalf("hello of cluster %d: handler got %d messages, want %d", tc.cluster, got, want)
		}
	}
}

// TestTCPClusterIDKeepsClustersApart: two clusters whose members have the
// same raft ids. A peer of the other cluster that dials this one's
// address (say, an address reused) gets nothing delivered and sees the
// peer unreachable; a peer of the same cluster is served.
func TestTCPClusterIDKeepsClustersApart(t *testing.T) {
	recC, recA, recB := newRecorder(), newRecorder(), newRecorder()
	c := newTestTCP(t, 3, recC, func(c *TCPConfig) { c.ClusterID = 7 })
	a := newTestTCP(t, 1, recA, func(c *TCPConfig) { c.ClusterID = 7 })
	b := newTestTCP(t, 1, recB, func(c *TCPConfig) { c.ClusterID = 8 })
	a.AddPeer(3, c.Addr())
	b.AddPeer(3, c.Addr())
	b.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 3, 0)})
	recB.waitUntil(t, "peer 3 reported unreachable to the other cluster", func() bool { return recB.unreachable[3] > 0 })
	if err := c.Refused(time.Minute); !errors.Is(err, ErrWrongCluster) {
		t.Fatalf("Refused after the other cluster's connection: %v, want ErrWrongCluster", err)
	}
	if err := c.Refused(0); err != nil {
		t.Fatalf("Refused(0) = %v, want nil: the refusal is older than that", err)
	}
	if err := a.Refused(time.Minute); err != nil {
		t.Fatalf("a transport that refused nothing: Refused = %v", err)
	}
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 3, 1)})
	recC.waitUntil(t, "the same cluster's message", func() bool { return len(recC.msgs) > 0 })
	for _, m := range recC.messages() {
		if m.GetType() != raftpb.MsgApp {
			t.Fatalf("peer 3 got %v from the other cluster", m)
		}
	}
}
