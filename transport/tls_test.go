package transport

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/internal/testca"
	"github.com/concordkv/concord/internal/wire"
)

// testCA is a certificate authority made up for one test.
type testCA struct {
	*testca.CA
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca, err := testca.New(name)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{CA: ca, pool: ca.Pool}
}

// leaf issues a peer certificate for 127.0.0.1, good as server and client.
func (ca *testCA) leaf(t *testing.T, name string) tls.Certificate {
	t.Helper()
	cert, err := ca.Leaf(name)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// peerTLS is a peer config: its own certificate, trusting roots.
func peerTLS(cert tls.Certificate, roots *x509.CertPool) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots}
}

func withTLS(c *tls.Config) func(*TCPConfig) {
	return func(cfg *TCPConfig) { cfg.TLS = c }
}

func TestTCPMutualTLS(t *testing.T) {
	ca := newTestCA(t, "ca-a")
	c1, c2 := peerTLS(ca.leaf(t, "one"), ca.pool), peerTLS(ca.leaf(t, "two"), ca.pool)
	r1, r2 := newRecorder(), newRecorder()
	t1 := newTestTCP(t, 1, r1, withTLS(c1))
	t2 := newTestTCP(t, 2, r2, withTLS(c2))
	mesh(t1, t2)
	t1.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1), msg(raftpb.MsgApp, 1, 2, 2)})
	t2.Send([]*raftpb.Message{msg(raftpb.MsgAppResp, 2, 1, 2)})
	r2.waitUntil(t, "messages to 2", func() bool { return len(r2.msgs) == 2 })
	r1.waitUntil(t, "message to 1", func() bool { return len(r1.msgs) == 1 })

	body := newGenReader(1 << 20)
	t1.SendSnapshot(msg(raftpb.MsgSnap, 1, 2, 3), body)
	r1.waitUntil(t, "snapshot report", func() bool { return len(r1.snapReports) == 1 })
	if r := r1.snapshotReports()[0]; r.failed {
		t.Fatal("snapshot over mTLS failed")
	}
	if c1.ClientAuth != tls.NoClientCert || c1.ClientCAs != nil {
		t.Fatal("NewTCP modified the caller's tls.Config")
	}
}

func TestTCPTLSKeepsOutsiders(t *testing.T) {
	caA, caB := newTestCA(t, "ca-a"), newTestCA(t, "ca-b")
	r1, r2, r3 := newRecorder(), newRecorder(), newRecorder()
	t1 := newTestTCP(t, 1, r1, withTLS(peerTLS(caA.leaf(t, "one"), caA.pool)))
	t2 := newTestTCP(t, 2, r2, withTLS(peerTLS(caA.leaf(t, "two"), caA.pool)))
	// The outsider trusts CA-A, so it would accept t1 as a server, but its
	// own certificate comes from CA-B.
	outsider := peerTLS(caB.leaf(t, "three"), caA.pool)
	t3 := newTestTCP(t, 3, r3, withTLS(outsider))

	t3.AddPeer(1, t1.Addr())
	for i := range uint64(3) {
		t3.Send([]*raftpb.Message{msg(raftpb.MsgApp, 3, 1, i)})
		r3.waitUntil(t, "outsider's connection refused", func() bool { return r3.unreachable[1] > int(i) })
	}

	hello := helloFrame(t, &wire.Hello{From: 3, To: 1, Kind: kindMessages, Version: version})
	data := cat(hello, msgFrame(t, msg(raftpb.MsgApp, 3, 1, 9)))
	dialers := map[string]func() (net.Conn, error){
		"client cert from another CA": func() (net.Conn, error) {
			return tls.Dial("tcp", t1.Addr(), outsider)
		},
		"no client cert": func() (net.Conn, error) {
			return tls.Dial("tcp", t1.Addr(), &tls.Config{RootCAs: caA.pool})
		},
		"plaintext": func() (net.Conn, error) {
			return net.Dial("tcp", t1.Addr())
		},
	}
	for name, dial := range dialers {
		t.Run(name, func(t *testing.T) {
			c, err := dial()
			if err != nil {
				return // refused during the handshake: nothing was sent
			}
			defer c.Close()
			c.Write(data)
			expectHangUp(t, c)
		})
	}

	mesh(t1, t2)
	t2.Send([]*raftpb.Message{msg(raftpb.MsgApp, 2, 1, 1)})
	r1.waitUntil(t, "the insider's message", func() bool { return len(r1.msgs) > 0 })
	for _, m := range r1.messages() {
		if m.GetFrom() != 2 {
			t.Fatalf("peer 1 accepted a message from %d", m.GetFrom())
		}
	}
}

func TestTLSConfigValidation(t *testing.T) {
	ca := newTestCA(t, "ca")
	for name, c := range map[string]*tls.Config{
		"no certificate": {RootCAs: ca.pool},
		"no roots":       {Certificates: []tls.Certificate{ca.leaf(t, "x")}},
	} {
		t.Run(name, func(t *testing.T) {
			tr, err := NewTCP(TCPConfig{ID: 1, ListenAddr: "127.0.0.1:0", TLS: c})
			if err == nil {
				tr.Close()
				t.Fatal("NewTCP accepted an unusable TLS config")
			}
		})
	}
}

func TestTLSConfigsForceClientAuth(t *testing.T) {
	ca := newTestCA(t, "ca")
	inner := &tls.Config{RootCAs: ca.pool}
	cfg := peerTLS(ca.leaf(t, "x"), ca.pool)
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return inner, nil }
	server, client, err := tlsConfigs(cfg)
	if err != nil {
		t.Fatal(err)
	}
	perConn, err := server.GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*tls.Config{server, perConn} {
		if c.ClientAuth != tls.RequireAndVerifyClientCert || c.ClientCAs != ca.pool {
			t.Fatalf("server config: ClientAuth %v, ClientCAs set %v", c.ClientAuth, c.ClientCAs != nil)
		}
	}
	if client.RootCAs != ca.pool || len(client.Certificates) != 1 {
		t.Fatal("client config lost its roots or certificate")
	}
	if cfg.ClientAuth != tls.NoClientCert || inner.ClientAuth != tls.NoClientCert {
		t.Fatal("tlsConfigs modified its input")
	}
}
