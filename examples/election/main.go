// Election demonstrates how replicas of one binary elect a leader with
// concord: every replica runs the same program with the same flags but
// for its name and port, embeds a concord node of one static cluster
// (--initial-cluster, etcd style), campaigns, and prints who leads. Kill
// the leader's process and another replica takes over once the dead
// one's session expires (--ttl).
//
// Run three on one machine with:
//
//	C=a=127.0.0.1:7001,b=127.0.0.1:7002,c=127.0.0.1:7003
//	go run ./examples/election --name a --initial-cluster $C --local &
//	go run ./examples/election --name b --initial-cluster $C --local &
//	go run ./examples/election --name c --initial-cluster $C --local &
//
// Each replica prints lines such as
//
//	a: leader b (token 12)
//	b: elected (token 12)
//	a: no leader
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/concordkv/concord"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "election:", err)
		os.Exit(1)
	}
}

// options are the command line flags.
type options struct {
	cfg   concord.Config
	ttl   time.Duration
	label string // the election's name
}

func parse(args []string) (*options, error) {
	fs := flag.NewFlagSet("election", flag.ContinueOnError)
	var (
		o       options
		name    string
		initial string
		dataDir string
		local   bool
		verbose bool
	)
	fs.StringVar(&name, "name", "", "this replica's name, one of --initial-cluster's (required)")
	fs.StringVar(&initial, "initial-cluster", "", "every replica: name=host:port,... (raft peer addresses)")
	fs.StringVar(&dataDir, "data-dir", "", "data directory (\"\" = in memory: a restarted replica needs its data dir to rejoin)")
	fs.BoolVar(&local, "local", false, "loopback profile: 10ms raft tick")
	fs.BoolVar(&verbose, "v", false, "log concord's debug output to stderr")
	fs.DurationVar(&o.ttl, "ttl", 2*time.Second, "session TTL: how long a dead leader keeps the lead")
	fs.StringVar(&o.label, "election", "examples/election", "the election's name")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.cfg = concord.DefaultConfig()
	if local {
		o.cfg = concord.DefaultLocalConfig()
	}
	o.cfg.Name, o.cfg.DataDir = name, dataDir
	o.cfg.InitialCluster = map[string]string{}
	for _, m := range strings.Split(initial, ",") {
		n, addr, ok := strings.Cut(strings.TrimSpace(m), "=")
		if !ok || n == "" || addr == "" {
			return nil, fmt.Errorf("--initial-cluster: %q is not name=host:port", m)
		}
		o.cfg.InitialCluster[n] = addr
	}
	addr, ok := o.cfg.InitialCluster[name]
	if !ok {
		return nil, fmt.Errorf("--name %q is not in --initial-cluster", name)
	}
	o.cfg.PeerAddr = addr
	h := slog.Handler(slog.NewTextHandler(io.Discard, nil))
	if verbose {
		h = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	o.cfg.Logger = slog.New(h)
	return &o, nil
}

// run is the replica: it opens its node, prints every leader change it
// observes, and campaigns (again, with a new session, whenever its
// session ends) until ctx ends; then it resigns and closes.
func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	n, err := concord.Open(ctx, o.cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.Ready(ctx); err != nil {
		return err
	}
	me := o.cfg.Name
	say := func(format string, args ...any) { fmt.Fprintf(out, me+": "+format+"\n", args...) }

	// Observe through an election on a session of its own: the observer
	// outlives the campaigner's sessions.
	obsSession, err := concord.NewSession(n, concord.WithSessionTTL(o.ttl))
	if err != nil {
		return err
	}
	defer obsSession.Close()
	observed := make(chan struct{})
	go func() {
		defer close(observed)
		for l := range concord.NewElection[string](obsSession, o.label).Observe(ctx) {
			if l.Key == "" {
				say("no leader")
			} else {
				say("leader %s (token %d)", l.Value, l.Token)
			}
		}
	}()
	defer func() { <-observed }()

	for ctx.Err() == nil {
		if err := campaign(ctx, n, o, say); err != nil && ctx.Err() == nil {
			say("campaign: %v", err)
			// The cluster may have no quorum right now: try again soon.
			select {
			case <-ctx.Done():
			case <-time.After(o.ttl / 2):
			}
		}
	}
	return nil
}

// campaign campaigns on a new session and, once elected, leads until the
// session ends or ctx does (then it resigns, handing over at once).
func campaign(ctx context.Context, n *concord.Node, o *options, say func(string, ...any)) error {
	s, err := concord.NewSession(n, concord.WithSessionTTL(o.ttl), concord.WithSessionContext(ctx))
	if err != nil {
		return err
	}
	defer s.Close()
	e := concord.NewElection[string](s, o.label)
	if err := e.Campaign(ctx, o.cfg.Name); err != nil {
		if errors.Is(err, concord.ErrSessionExpired) {
			return nil // a new session next time round
		}
		return err
	}
	say("elected (token %d)", e.Token())
	select {
	case <-s.Done():
		say("session ended: no longer leader")
	case <-ctx.Done():
		rctx, cancel := context.WithTimeout(context.Background(), o.ttl)
		defer cancel()
		if err := e.Resign(rctx); err == nil {
			say("resigned")
		}
	}
	return nil
}
