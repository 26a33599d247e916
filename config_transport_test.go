package concord_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/transport"
)

// memCluster returns the configs of size members named m1..mN whose
// Transport is their endpoint on net.
func memCluster(net *transport.Network, size int) []concord.Config {
	initial := map[string]string{}
	var cfgs []concord.Config
	for i := range size {
		cfg := concord.DefaultLocalConfig()
		cfg.Name = fmt.Sprintf("m%d", i+1)
		cfg.Transport = net.Transport(concord.MemberID(cfg.Name))
		initial[cfg.Name] = cfg.Transport.Addr()
		cfgs = append(cfgs, cfg)
	}
	for i := range cfgs {
		cfgs[i].InitialCluster = initial
	}
	return cfgs
}

// TestConfigTransport: members on a caller's transport.Network form a
// cluster, report the transport's addresses, obey its faults, and close
// their transports with them.
func TestConfigTransport(t *testing.T) {
	net := transport.NewNetwork(1)
	t.Cleanup(net.Close)
	cfgs := memCluster(net, 3)
	ctx := testCtx(t)
	nodes := make([]*concord.Node, len(cfgs))
	for i, cfg := range cfgs {
		n, err := concord.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes[i] = n
	}
	put(t, nodes[0], "k", "v")
	for i, n := range nodes {
		if v := value(t, n, "k"); v != "v" {
			t.Fatalf("m%d reads %q", i+1, v)
		}
	}
	ms, err := nodes[1].Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if want := fmt.Sprintf("mem://%d", concord.MemberID(m.Name)); m.PeerAddr != want || m.ID != concord.MemberID(m.Name) {
			t.Fatalf("member %+v, want PeerAddr %q", m, want)
		}
	}

	// The network's faults apply: the isolated leader loses its quorum.
	lead := -1
	eventually(t, 10*time.Second, "a leader", func() bool {
		for i, n := range nodes {
			if n.IsLeader() {
				lead = i
				return true
			}
		}
		return false
	})
	net.Isolate(nodes[lead].Status().ID)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := nodes[lead].Put(short, "k", "lost?"); err == nil {
		t.Fatal("an isolated leader committed a write")
	}
	other := nodes[(lead+1)%3]
	put(t, other, "k", "w") // the others elect a leader and go on
	net.Heal()
	eventually(t, 10*time.Second, "the old leader to catch up", func() bool {
		return value(t, nodes[lead], "k", concord.WithSerializable()) == "w"
	})

	// Close closes the transport: the network then hands out a fresh
	// endpoint for the id.
	tr := cfgs[2].Transport
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	if net.Transport(concord.MemberID("m3")) == tr {
		t.Fatal("Close left the node's transport open")
	}
}

// TestConfigTransportValidation: with a Transport, the TCP settings are
// refused, InitialCluster must give this member the transport's address,
// and a failed Open closes the transport it was given.
func TestConfigTransportValidation(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*concord.Config)
		rule string
	}{
		"peer addr": {func(c *concord.Config) { c.PeerAddr = "127.0.0.1:7000" }, "leave them empty with Transport"},
		"advertise": {func(c *concord.Config) { c.AdvertisePeerAddr = "127.0.0.1:7000" }, "leave them empty with Transport"},
		"tls":       {func(c *concord.Config) { c.PeerTLS = &tls.Config{} }, "leave them empty with Transport"},
		"not the transport's address": {func(c *concord.Config) {
			c.InitialCluster = map[string]string{"a": "mem://1", "b": "mem://2"}
		}, `InitialCluster["a"] "mem://1" must equal Transport.Addr()`},
		"shared addr": {func(c *concord.Config) {
			c.InitialCluster = map[string]string{"a": c.Transport.Addr(), "b": c.Transport.Addr()}
		}, "must have distinct addresses"},
	} {
		t.Run(name, func(t *testing.T) {
			net := transport.NewNetwork(1)
			defer net.Close()
			cfg := concord.DefaultLocalConfig()
			cfg.Name = "a"
			cfg.Transport = net.Transport(concord.MemberID("a"))
			tc.edit(&cfg)
			openRefused(t, cfg, tc.rule)
			if net.Transport(concord.MemberID("a")) == cfg.Transport {
				t.Fatal("a failed Open left the transport open")
			}
		})
	}
}

// TestConfigTransportAlone: a lone member on a given transport needs no
// InitialCluster and keeps the caller's config as it was.
func TestConfigTransportAlone(t *testing.T) {
	net := transport.NewNetwork(1)
	t.Cleanup(net.Close)
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "solo"
	tr := net.Transport(concord.MemberID("solo"))
	cfg.Transport = tr
	n := openReady(t, cfg)
	if cfg.Transport != tr || cfg.PeerAddr != "" || cfg.AdvertisePeerAddr != "" {
		t.Fatalf("Open changed the caller's config: %+v", cfg)
	}
	put(t, n, "k", "v")
	if l, ok := n.Leader(); !ok || l.PeerAddr != tr.Addr() {
		t.Fatalf("leader %+v %v, want PeerAddr %q", l, ok, tr.Addr())
	}
}
