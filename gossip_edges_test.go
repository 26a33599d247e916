package concord_test

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-sockaddr"

	"github.com/concordkv/concord"
)

// TestGossipUnspecifiedPeerAddrAdvertised: a gossip member that binds its
// peer port on every interface (PeerAddr "0.0.0.0:port") advertises this
// machine's private address at that port, as memberlist does for gossip,
// never the unspecified address, which peers cannot dial; and it reopens
// its DataDir with the same config.
func TestGossipUnspecifiedPeerAddrAdvertised(t *testing.T) {
	a := freeAddrs(t, 2)
	_, port, _ := net.SplitHostPort(a[0])
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "g1"
	cfg.DataDir = filepath.Join(t.TempDir(), "g1")
	cfg.PeerAddr, cfg.GossipAddr, cfg.BootstrapExpect = "0.0.0.0:"+port, a[1], 1
	ip, err := sockaddr.GetPrivateIP()
	if err != nil || ip == "" {
		// No private address to default to: Open must say so.
		openRefused(t, cfg, "set AdvertisePeerAddr")
		return
	}
	want := net.JoinHostPort(ip, port)
	for round := range 2 {
		n := openReady(t, cfg)
		ms, err := n.Members(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 || ms[0].PeerAddr != want {
			t.Fatalf("round %d: members %+v, want one at peer address %q", round, ms, want)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCloseDuringJoinToSilentSeed: Close returns promptly while the
// member's gossip join waits on seeds that accept a connection and never
// answer (memberlist waits up to 10 s for each in the LAN profile).
func TestCloseDuringJoinToSilentSeed(t *testing.T) {
	var seeds []string
	accepted := make(chan struct{}, 16)
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() }) // held open, never answered
				accepted <- struct{}{}
			}
		}()
		seeds = append(seeds, ln.Addr().String())
	}
	a := freeAddrs(t, 2)
	cfg := concord.DefaultConfig() // the LAN gossip profile
	cfg.Name = "j1"
	cfg.DataDir = filepath.Join(t.TempDir(), "j1")
	cfg.PeerAddr, cfg.GossipAddr, cfg.Join = a[0], a[1], seeds
	n, err := concord.Open(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-accepted: // the join is waiting on a seed
	case <-testCtx(t).Done():
		t.Fatal("the member never dialed its seeds")
	}
	start := time.Now()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with a join waiting on silent seeds", d)
	}
}
