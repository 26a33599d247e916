package concord_test

import (
	"net"
	"path/filepath"
	"testing"

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
