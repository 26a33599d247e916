package concord_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// TestBadInputChangesNothing: each bad request gets its error before
// anything is proposed, and the revision stays where it was.
func TestBadInputChangesNothing(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "k", "v")
	maxKey := strings.Repeat("k", 1536)
	for name, tc := range map[string]struct {
		want error
		f    func() error
	}{
		"put empty key":        {concord.ErrEmptyKey, func() error { _, err := n.Put(ctx, "", "v"); return err }},
		"get empty key":        {concord.ErrEmptyKey, func() error { _, err := n.Get(ctx, ""); return err }},
		"delete empty key":     {concord.ErrEmptyKey, func() error { _, err := n.Delete(ctx, ""); return err }},
		"delete empty range":   {concord.ErrEmptyKey, func() error { _, err := n.Delete(ctx, "", concord.WithRange("")); return err }},
		"key over 1.5 KiB":     {concord.ErrKeyTooLarge, func() error { _, err := n.Put(ctx, maxKey+"k", "v"); return err }},
		"create key too large": {concord.ErrKeyTooLarge, func() error { _, err := n.Create(ctx, maxKey+"k", "v"); return err }},
		"value over 1.5 MiB": {concord.ErrRequestTooLarge, func() error {
			_, err := n.Put(ctx, "k", strings.Repeat("v", 3<<19+1))
			return err
		}},
		"value over the state machine's limit": {concord.ErrRequestTooLarge, func() error {
			_, err := n.Put(ctx, "k", strings.Repeat("v", 1001<<10))
			return err
		}},
		"txn over 1.5 MiB": {concord.ErrRequestTooLarge, func() error {
			v := strings.Repeat("v", 600<<10)
			_, err := n.Txn(ctx).Then(concord.OpPut("a", v), concord.OpPut("b", v), concord.OpPut("c", v)).Commit()
			return err
		}},
		"txn over the state machine's budget": {concord.ErrRequestTooLarge, func() error {
			v := strings.Repeat("v", 700<<10)
			_, err := n.Txn(ctx).Then(concord.OpPut("a", v), concord.OpPut("b", v)).Commit()
			return err
		}},
		"negative revision": {concord.ErrInvalidRevision, func() error { _, err := n.Get(ctx, "k", concord.WithRev(-1)); return err }},
		"future revision":   {concord.ErrFutureRev, func() error { _, err := n.Get(ctx, "k", concord.WithRev(1000)); return err }},
		"compact negative":  {concord.ErrInvalidRevision, func() error { return n.Compact(ctx, -5) }},
		"lease":             {concord.ErrLeaseNotFound, func() error { _, err := n.Put(ctx, "k", "v", concord.WithLease(42)); return err }},
		"ttl":               {concord.ErrInvalidRequest, func() error { _, err := n.Put(ctx, "k", "v", concord.WithTTL(-time.Second)); return err }},
		"value with ignore value": {concord.ErrInvalidRequest, func() error {
			_, err := n.Put(ctx, "k", "v", concord.WithIgnoreValue())
			return err
		}},
		"ignore value of a missing key": {concord.ErrKeyNotFound, func() error {
			_, err := n.Put(ctx, "nope", "", concord.WithIgnoreValue())
			return err
		}},
		"ignore lease of a missing key": {concord.ErrKeyNotFound, func() error {
			_, err := n.Put(ctx, "nope", "x", concord.WithIgnoreLease())
			return err
		}},
		"cas empty key": {concord.ErrEmptyKey, func() error { _, err := n.CompareAndSwap(ctx, "", "a", "b"); return err }},
		"sort target": {concord.ErrInvalidRequest, func() error {
			_, err := n.Get(ctx, "k", concord.WithPrefix(), concord.WithSort(concord.SortTarget(99), concord.SortAscend))
			return err
		}},
		"sort order": {concord.ErrInvalidRequest, func() error {
			_, err := n.Get(ctx, "k", concord.WithPrefix(), concord.WithSort(concord.SortByKey, concord.SortOrder(-7)))
			return err
		}},
		"sort in a txn": {concord.ErrInvalidRequest, func() error {
			_, err := n.Txn(ctx).Then(concord.OpPut("k", "w"), concord.OpGet("k", concord.WithSort(concord.SortByValue, concord.SortDescend+1))).Commit()
			return err
		}},
		"cad empty key": {concord.ErrEmptyKey, func() error { _, err := n.CompareAndDelete(ctx, "", "a"); return err }},
	} {
		t.Run(name, func(t *testing.T) { unchanged(t, n, tc.want, tc.f) })
	}
	// The limits themselves are allowed.
	put(t, n, maxKey, "v")
	put(t, n, "big", strings.Repeat("v", 1000<<10))
}

// TestLargeRequestsOnDisk: on disk, a request up to MaxRequestBytes goes
// through raft; one the state machine cannot apply in one transaction is
// refused there, and changes nothing either.
func TestLargeRequestsOnDisk(t *testing.T) {
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "disk"
	cfg.DataDir = t.TempDir()
	n := openReady(t, cfg)
	ctx := testCtx(t)
	v := strings.Repeat("v", 700<<10)
	unchanged(t, n, concord.ErrRequestTooLarge, func() error {
		_, err := n.Txn(ctx).Then(concord.OpPut("a", v), concord.OpPut("b", v)).Commit()
		return err
	})
	unchanged(t, n, concord.ErrRequestTooLarge, func() error {
		_, err := n.Txn(ctx).Then(concord.OpPut("a", v), concord.OpPut("b", v), concord.OpPut("c", v)).Commit()
		return err
	})
	if _, err := n.Txn(ctx).Then(concord.OpPut("a", v[:500<<10]), concord.OpPut("b", v[:500<<10])).Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestLimitsConfigurable(t *testing.T) {
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "small"
	cfg.MaxRequestBytes = 1024
	cfg.MaxKeySize = 8
	n := openReady(t, cfg)
	ctx := testCtx(t)
	unchanged(t, n, concord.ErrRequestTooLarge, func() error { _, err := n.Put(ctx, "k", strings.Repeat("v", 1024)); return err })
	unchanged(t, n, concord.ErrKeyTooLarge, func() error { _, err := n.Put(ctx, "123456789", "v"); return err })
	put(t, n, "12345678", strings.Repeat("v", 900))
}

// TestOpenValidation: each invalid config is refused with ErrInvalidConfig
// and a message naming the rule, and nothing is created on disk.
func TestOpenValidation(t *testing.T) {
	base := func() concord.Config {
		c := concord.DefaultLocalConfig()
		c.Name = "a"
		c.DataDir = filepath.Join(t.TempDir(), "data")
		return c
	}
	const electionRule = "TickInterval × ElectionTicks (the election timeout) must be at most"
	for name, tc := range map[string]struct {
		edit func(*concord.Config)
		rule string
	}{
		"no name":         {func(c *concord.Config) { c.Name = "" }, "Name is required"},
		"gossip addr":     {func(c *concord.Config) { c.GossipAddr = "127.0.0.1:7946" }, "GossipAddr needs PeerAddr"},
		"bad gossip addr": {func(c *concord.Config) { c.PeerAddr, c.GossipAddr = "127.0.0.1:0", "nowhere" }, "GossipAddr must be host:port"},
		"bad join": {func(c *concord.Config) {
			c.PeerAddr, c.GossipAddr, c.Join = "127.0.0.1:0", "127.0.0.1:0", []string{"x"}
		}, "Join entry must be host:port"},
		"advertise gossip": {func(c *concord.Config) { c.AdvertiseGossipAddr = "10.0.0.1:7946" }, "AdvertiseGossipAddr needs GossipAddr"},
		"join":             {func(c *concord.Config) { c.Join = []string{"10.0.0.2:7946"} }, "Join needs GossipAddr"},
		"bootstrap expect": {func(c *concord.Config) { c.BootstrapExpect = 3 }, "BootstrapExpect needs GossipAddr"},
		"expect too big":   {func(c *concord.Config) { c.BootstrapExpect = 7 }, "BootstrapExpect must be in [0, 5]"},
		"expect negative":  {func(c *concord.Config) { c.BootstrapExpect = -1 }, "BootstrapExpect must be in"},
		"expect and static": {func(c *concord.Config) {
			c.BootstrapExpect, c.InitialCluster = 1, map[string]string{"a": "127.0.0.1:1"}
		}, "BootstrapExpect and InitialCluster are two ways"},
		"gossip key":        {func(c *concord.Config) { c.GossipKey = make([]byte, 16) }, "GossipKey needs GossipAddr"},
		"gossip key size":   {func(c *concord.Config) { c.GossipKey = make([]byte, 15) }, "GossipKey must be 16, 24 or 32 bytes"},
		"max voters":        {func(c *concord.Config) { c.MaxVoters = -1 }, "MaxVoters must be at least 1"},
		"negative reclaim":  {func(c *concord.Config) { c.DeadMemberReclaim = -time.Second }, "must not be negative"},
		"tick":              {func(c *concord.Config) { c.TickInterval = time.Microsecond }, "TickInterval must be at least 1ms"},
		"election ticks":    {func(c *concord.Config) { c.ElectionTicks, c.HeartbeatTicks = 2, 2 }, "ElectionTicks (2) must be greater than HeartbeatTicks (2)"},
		"negative ticks":    {func(c *concord.Config) { c.HeartbeatTicks = -1 }, "must be positive"},
		"snapshot entries":  {func(c *concord.Config) { c.SnapshotEntries, c.SnapshotCatchUpEntries = 10, 10 }, "SnapshotCatchUpEntries (10) must be below SnapshotEntries (10)"},
		"max request bytes": {func(c *concord.Config) { c.MaxRequestBytes = 1 << 30 }, "MaxRequestBytes must be in"},
		"max key size":      {func(c *concord.Config) { c.MaxKeySize = 1 << 20 }, "MaxKeySize must be in"},
		"negative key size": {func(c *concord.Config) { c.MaxKeySize = -1 }, "MaxKeySize must be in"},
		"progress interval": {func(c *concord.Config) { c.WatchProgressInterval = -time.Second }, "WatchProgressInterval must be at least 1ms"},
		"tick overflow":     {func(c *concord.Config) { c.TickInterval = math.MaxInt64 }, electionRule},
		"ticks overflow":    {func(c *concord.Config) { c.ElectionTicks = 1 << 57 }, electionRule},
		"timeout too long":  {func(c *concord.Config) { c.TickInterval, c.ElectionTicks = math.MaxInt64/10, 2 }, electionRule},
		"cluster without self": {func(c *concord.Config) {
			c.InitialCluster = map[string]string{"b": "127.0.0.1:1", "c": "127.0.0.1:2"}
		}, `InitialCluster must name this member (Name "a")`},
		"cluster bad addr": {func(c *concord.Config) {
			c.InitialCluster = map[string]string{"a": "127.0.0.1:1", "b": "nowhere"}
		}, `InitialCluster["b"] must be host:port`},
		"cluster empty addr": {func(c *concord.Config) {
			c.InitialCluster = map[string]string{"a": "127.0.0.1:1", "b": ""}
		}, `InitialCluster["b"] must be a peer address`},
		"cluster shared addr": {func(c *concord.Config) {
			c.InitialCluster = map[string]string{"a": "127.0.0.1:1", "b": "127.0.0.1:1"}
		}, "must have distinct addresses"},
		"cluster port 0": {func(c *concord.Config) {
			c.InitialCluster = map[string]string{"a": "127.0.0.1:0", "b": "127.0.0.1:2"}
		}, `InitialCluster["a"] must have a fixed port`},
		"cluster empty name": {func(c *concord.Config) {
			c.InitialCluster = map[string]string{"a": "127.0.0.1:1", "": "127.0.0.1:2"}
		}, "must not hold an empty name"},
		"advertise mismatch": {func(c *concord.Config) {
			c.InitialCluster = map[string]string{"a": "127.0.0.1:1", "b": "127.0.0.1:2"}
			c.AdvertisePeerAddr = "127.0.0.1:9"
		}, `AdvertisePeerAddr "127.0.0.1:9" must equal InitialCluster["a"]`},
		"bad peer addr":     {func(c *concord.Config) { c.PeerAddr = "localhost" }, "PeerAddr must be host:port"},
		"peer port range":   {func(c *concord.Config) { c.PeerAddr = "127.0.0.1:70000" }, "PeerAddr must be host:port"},
		"peer port name":    {func(c *concord.Config) { c.PeerAddr = "127.0.0.1:http" }, "PeerAddr must be host:port"},
		"gossip port range": {func(c *concord.Config) { c.PeerAddr, c.GossipAddr = "127.0.0.1:0", "127.0.0.1:70000" }, "GossipAddr must be host:port"},
		"advertise gossip port": {func(c *concord.Config) {
			c.PeerAddr, c.GossipAddr, c.AdvertiseGossipAddr = "127.0.0.1:0", "127.0.0.1:0", "10.0.0.1:99999"
		}, "AdvertiseGossipAddr must be host:port"},
		"join port": {func(c *concord.Config) {
			c.PeerAddr, c.GossipAddr, c.Join = "127.0.0.1:0", "127.0.0.1:0", []string{"10.0.0.2:-1"}
		}, "Join entry must be host:port"},
		"cluster port range": {func(c *concord.Config) {
			c.InitialCluster = map[string]string{"a": "127.0.0.1:1", "b": "127.0.0.1:65536"}
		}, `InitialCluster["b"] must be host:port`},
		"gossip peer addr without host or port": {func(c *concord.Config) {
			c.PeerAddr, c.GossipAddr, c.BootstrapExpect = "0.0.0.0:0", "127.0.0.1:0", 1
		}, "with no host and port 0 needs AdvertisePeerAddr"},
		"bad advertise addr":   {func(c *concord.Config) { c.PeerAddr, c.AdvertisePeerAddr = "127.0.0.1:0", "garbage" }, "AdvertisePeerAddr must be host:port"},
		"tls without listener": {func(c *concord.Config) { c.PeerTLS = &tls.Config{} }, "PeerTLS and AdvertisePeerAddr need PeerAddr"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := base()
			tc.edit(&cfg)
			openRefused(t, cfg, tc.rule)
			if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
				t.Fatalf("DataDir was created for an invalid config (%v)", err)
			}
		})
	}
}

// openRefused fails t unless Open refuses cfg with ErrInvalidConfig and
// an error naming rule.
func openRefused(t *testing.T, cfg concord.Config, rule string) {
	t.Helper()
	n, err := concord.Open(context.Background(), cfg)
	if err == nil {
		n.Close()
		t.Fatal("Open accepted an invalid config")
	}
	wantErr(t, err, concord.ErrInvalidConfig)
	if !strings.Contains(err.Error(), rule) {
		t.Fatalf("error %q does not name the rule %q", err, rule)
	}
}

// TestOpenKeepsCallersConfig: Open works on a clone of cfg.
func TestOpenKeepsCallersConfig(t *testing.T) {
	cfg := concord.Config{Name: "solo", InitialCluster: map[string]string{"solo": "127.0.0.1:0"}}
	n := openReady(t, cfg)
	if cfg.TickInterval != 0 || cfg.PeerAddr != "" || len(cfg.InitialCluster) != 1 {
		t.Fatalf("Open changed the caller's config: %+v", cfg)
	}
	cfg.InitialCluster["other"] = "127.0.0.1:1"
	if _, err := n.Put(testCtx(t), "k", "v"); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultConfigs(t *testing.T) {
	d := concord.DefaultConfig()
	if d.TickInterval != 100*time.Millisecond || d.ElectionTicks != 10 || d.HeartbeatTicks != 1 ||
		d.MaxRequestBytes != 3<<19 || d.MaxKeySize != 1536 || d.SnapshotEntries != 10000 || d.SnapshotCatchUpEntries != 5000 {
		t.Fatalf("DefaultConfig: %+v", d)
	}
	if d.GossipAddr != "" || d.PeerAddr != "" || d.DataDir != "" {
		t.Fatal("DefaultConfig must leave addresses and DataDir empty")
	}
	l := concord.DefaultLocalConfig()
	if l.TickInterval != 10*time.Millisecond || l.ElectionTicks != 10 {
		t.Fatalf("DefaultLocalConfig: %+v", l)
	}
}

// TestConcurrentLargeWritesInMemory: concurrent writes near the size
// limits are packed into raft entries badger can hold in memory.
func TestConcurrentLargeWritesInMemory(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 3 {
				size := []int{1000 << 10, 300 << 10, 100 << 10}[(g+i)%3]
				if _, err := n.Put(ctx, fmt.Sprintf("k%d-%d", g, i), strings.Repeat("v", size)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if g := get(t, n, "k", concord.WithPrefix(), concord.WithCountOnly()); g.Count != 48 {
		t.Fatalf("%d keys", g.Count)
	}
}

// TestTTLOnlyForWrites: WithTTL on a Get or Delete is refused, and grants
// no lease.
func TestTTLOnlyForWrites(t *testing.T) {
	n := openOne(t)
	ctx := testCtx(t)
	put(t, n, "ttl/k", "v")
	unchanged(t, n, concord.ErrInvalidRequest, func() error {
		_, err := n.Delete(ctx, "ttl/k", concord.WithTTL(time.Minute))
		return err
	})
	if _, err := n.Get(ctx, "ttl/k", concord.WithTTL(time.Minute)); !errors.Is(err, concord.ErrInvalidRequest) {
		t.Fatalf("Get WithTTL: %v, want ErrInvalidRequest", err)
	}
	if ls, err := n.Leases(ctx); err != nil || len(ls) != 0 {
		t.Fatalf("leases after refused ops: %v, %v", ls, err)
	}
	if got := value(t, n, "ttl/k"); got != "v" {
		t.Fatalf("key after a refused Delete: %q", got)
	}
}
