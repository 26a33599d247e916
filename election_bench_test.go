package concord_test

import (
	"context"
	"testing"
	"time"

	"github.com/concordkv/concord"
	"github.com/concordkv/concord/concordtest"
)

// BenchmarkElectionFailover measures, on three in-process nodes, the
// time from the moment the leader's session ends (session-close: its
// lease is revoked), the leader resigns (resign), or the leader stops
// renewing as a killed process would (crash-ttl1s: Session.Orphan with a
// 1 s TTL, so the lease expires), to the return of Campaign on the next
// campaigner, waiting on another node. Each iteration is one hand-over;
// the next leader's node rotates.
func BenchmarkElectionFailover(b *testing.B) {
	for _, mode := range []string{"session-close", "resign", "crash-ttl1s"} {
		b.Run(mode, func(b *testing.B) {
			c := concordtest.NewCluster(b, 3)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			campaign := func(i int) (*concord.Election[int], *concord.Session, <-chan error) {
				ttl := 5 * time.Second
				if mode == "crash-ttl1s" {
					ttl = time.Second
				}
				s, err := concord.NewSession(c.Node(i%3), concord.WithSessionTTL(ttl))
				if err != nil {
					b.Fatal(err)
				}
				e := concord.NewElection[int](s, "elect/bench")
				errc := make(chan error, 1)
				go func() { errc <- e.Campaign(ctx, i) }()
				for e.Key() == "" {
					time.Sleep(time.Millisecond)
				}
				return e, s, errc
			}
			lead, ls, errc := campaign(0)
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			var total time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				next, ns, nerrc := campaign(i + 1)
				b.StartTimer()
				start := time.Now()
				var err error
				switch mode {
				case "resign":
					err = lead.Resign(ctx)
				case "crash-ttl1s":
					ls.Orphan()
				default:
					err = ls.Close()
				}
				if err != nil {
					b.Fatal(err)
				}
				if err := <-nerrc; err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				b.StopTimer()
				ls.Close()
				b.StartTimer()
				lead, ls = next, ns
			}
			b.StopTimer()
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/failover")
			ls.Close()
		})
	}
}
