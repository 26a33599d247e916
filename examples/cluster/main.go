// Cluster demonstrates how replicas of one binary, started with the same
// flags but for their name and addresses, find each other by gossip and
// form one concord cluster with no operator step: the first
// --bootstrap-expect replicas that see each other found it, later ones
// join it, dead ones are removed after a grace time.
//
// Each replica serves a small HTTP API (--http):
//
//	PUT  /kv/<key>   body = value; linearizable write, returns the revision
//	GET  /kv/<key>   linearizable read (?serializable=1: local); 404 if absent
//	GET  /status     this node and the members as it sees them (JSON)
//	GET  /ready      200 once the node is in a cluster with a leader
//	POST /leave      leave the cluster for good, then exit
//
// Run three on one machine with:
//
//	go run ./examples/cluster --name a --data-dir /tmp/a --peer-addr 127.0.0.1:7001 \
//	  --gossip-addr 127.0.0.1:7101 --http 127.0.0.1:7201 --local \
//	  --join 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 --bootstrap-expect 3
//
// and the same for b and c with ports 7002/7102/7202 and 7003/7103/7203.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/concordkv/concord"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

// options are the command line flags.
type options struct {
	cfg      concord.Config
	http     string
	logLevel string
}

func parse(args []string) (*options, error) {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	var (
		o                         options
		join, key                 string
		local                     bool
		reclaim, stabilize, tick  time.Duration
		name, dataDir             string
		peer, advPeer, gsp, advGs string
		expect, maxVoters         int
	)
	fs.StringVar(&name, "name", "", "member name, unique and stable (default: the host name)")
	fs.StringVar(&dataDir, "data-dir", "", "data directory (\"\" = in memory)")
	fs.StringVar(&peer, "peer-addr", ":7000", "raft transport listen host:port")
	fs.StringVar(&advPeer, "advertise-peer-addr", "", "raft address the others dial (default: peer-addr with this host's address)")
	fs.StringVar(&gsp, "gossip-addr", ":7946", "gossip listen host:port")
	fs.StringVar(&advGs, "advertise-gossip-addr", "", "gossip address the others reach (default: gossip-addr, or this host's private IP)")
	fs.StringVar(&join, "join", "", "comma-separated gossip seeds (host:port, host names allowed)")
	fs.IntVar(&expect, "bootstrap-expect", 0, "form a new cluster once this many replicas gossip")
	fs.StringVar(&key, "gossip-key", "", "gossip encryption key, hex (16, 24 or 32 bytes)")
	fs.BoolVar(&local, "local", false, "loopback/test profile: 10ms raft tick, fast gossip failure detection")
	fs.DurationVar(&reclaim, "dead-reclaim", 0, "remove a member dead this long (default: the profile's)")
	fs.DurationVar(&stabilize, "stabilization", 0, "promote a learner alive this long (default: the profile's)")
	fs.DurationVar(&tick, "tick", 0, "raft tick (default: the profile's)")
	fs.IntVar(&maxVoters, "max-voters", 0, "most voters (default 5)")
	fs.StringVar(&o.http, "http", ":8080", "HTTP API listen host:port (\"\" = none)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.cfg = concord.DefaultConfig()
	if local {
		o.cfg = concord.DefaultLocalConfig()
	}
	c := &o.cfg
	c.Name, c.DataDir, c.BootstrapExpect = name, dataDir, expect
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, err
		}
		c.Name = h
	}
	c.PeerAddr, c.GossipAddr = peer, gsp
	var err error
	if c.AdvertisePeerAddr, err = advertise(advPeer, peer); err != nil {
		return nil, err
	}
	c.AdvertiseGossipAddr = advGs
	if advGs == "" {
		if c.AdvertiseGossipAddr, err = advertise("", gsp); err != nil {
			return nil, err
		}
	}
	for _, j := range strings.Split(join, ",") {
		if j = strings.TrimSpace(j); j != "" {
			c.Join = append(c.Join, j)
		}
	}
	if key != "" {
		if c.GossipKey, err = hex.DecodeString(key); err != nil {
			return nil, fmt.Errorf("--gossip-key: %w", err)
		}
	}
	if reclaim > 0 {
		c.DeadMemberReclaim = reclaim
	}
	if stabilize > 0 {
		c.StabilizationTime = stabilize
	}
	if tick > 0 {
		c.TickInterval = tick
	}
	if maxVoters > 0 {
		c.MaxVoters = maxVoters
	}
	return &o, nil
}

// advertise returns adv, or listen with an unspecified host replaced by
// this host's first non-loopback IPv4 address.
func advertise(adv, listen string) (string, error) {
	if adv != "" {
		return adv, nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return net.JoinHostPort(ipn.IP.String(), port), nil
		}
	}
	return "", fmt.Errorf("no non-loopback address for %q: set the advertise flag", listen)
}

func run(args []string) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	o.cfg.Logger = log
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	n, err := concord.Open(ctx, o.cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	log.Info("cluster: started", "name", o.cfg.Name, "peer", o.cfg.AdvertisePeerAddr, "gossip", o.cfg.AdvertiseGossipAddr, "join", o.cfg.Join, "expect", o.cfg.BootstrapExpect)
	left := make(chan struct{})
	var srv *http.Server
	if o.http != "" {
		ln, err := net.Listen("tcp", o.http)
		if err != nil {
			return err
		}
		srv = &http.Server{Handler: newAPI(n, left), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		log.Info("cluster: http", "addr", ln.Addr().String())
	}
	go func() {
		if err := n.Ready(ctx); err == nil {
			log.Info("cluster: ready", "id", fmt.Sprintf("%x", n.Status().ID))
		}
	}()
	select {
	case <-ctx.Done():
		log.Info("cluster: closing")
		handOff(n, log)
	case <-left:
		log.Info("cluster: left the cluster")
	}
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(sctx)
		cancel()
	}
	if err := n.Close(); err != nil && !errors.Is(err, concord.ErrClosed) {
		return err
	}
	return nil
}

// handOff hands leadership to the most caught-up other voter before a
// leader closes, so that a rolling restart pauses writes for a round trip
// rather than an election timeout.
func handOff(n *concord.Node, log *slog.Logger) {
	if !n.IsLeader() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ms, err := n.Members(ctx)
	if err != nil {
		return
	}
	var to *concord.Member
	for i, m := range ms {
		if m.IsLearner || m.IsLeader || m.GossipState != "alive" || m.Lag < 0 {
			continue
		}
		if to == nil || m.Lag < to.Lag {
			to = &ms[i]
		}
	}
	if to == nil {
		return
	}
	if err := n.TransferLeadership(ctx, to.ID); err != nil {
		log.Warn("cluster: leadership hand-off", "to", to.Name, "err", err)
		return
	}
	log.Info("cluster: handed leadership off", "to", to.Name)
}
