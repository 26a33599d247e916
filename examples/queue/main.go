// Queue demonstrates how to share work through a concord Queue: three
// nodes in one process, a producer enqueues jobs (a few urgent ones with
// a higher priority), and three workers, one per node, claim and ack
// them. One worker crashes with two jobs in hand: its session stops
// renewing its lease, the lease expires, and its claims vanish with it,
// so the two jobs are delivered again, to the other workers. Every job is
// done exactly once.
//
// Run it with:
//
//	go run ./examples/queue
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/concordkv/concord"
)

const jobs = 12

// job is what the queue carries.
type job struct {
	N      int
	Urgent bool
}

func (j job) String() string {
	if j.Urgent {
		return fmt.Sprintf("job-%02d (urgent)", j.N)
	}
	return fmt.Sprintf("job-%02d", j.N)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "queue:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes, err := startCluster(ctx, 3)
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	if err != nil {
		return err
	}
	fmt.Println("3 nodes up")

	// The producer, on n1.
	ps, err := concord.NewSession(nodes[0])
	if err != nil {
		return err
	}
	defer ps.Close()
	q := concord.NewQueue[job](ps, "jobs")
	for i := 1; i <= jobs; i++ {
		j := job{N: i, Urgent: i%4 == 0}
		var opts []concord.EnqueueOption
		if j.Urgent {
			opts = append(opts, concord.WithPriority(1))
		}
		if _, err := q.Enqueue(ctx, j, opts...); err != nil {
			return err
		}
	}
	fmt.Printf("producer: enqueued %d jobs, every 4th urgent (priority 1)\n", jobs)

	// Worker w2, on n2, takes two jobs and crashes before acking them:
	// its session's lease (TTL 1s) is no longer renewed.
	s2, err := concord.NewSession(nodes[1], concord.WithSessionTTL(time.Second))
	if err != nil {
		return err
	}
	w2 := concord.NewQueue[job](s2, "jobs")
	var lost []string
	redelivered := map[int]bool{}
	for range 2 {
		m, err := w2.Dequeue(ctx)
		if err != nil {
			return err
		}
		lost = append(lost, m.Value.String())
		redelivered[m.Value.N] = false
	}
	s2.Orphan()
	fmt.Printf("w2: took %v and crashed without acking; its claims end with its lease\n", lost)

	// Workers w1 and w3, on n1 and n3, do every job.
	done := map[int]int{}
	var mu sync.Mutex
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	for _, w := range []struct {
		name string
		node *concord.Node
	}{{"w1", nodes[0]}, {"w3", nodes[2]}} {
		s, err := concord.NewSession(w.node)
		if err != nil {
			stop()
			return err
		}
		defer s.Close()
		wq := concord.NewQueue[job](s, "jobs")
		wg.Go(func() {
			for {
				m, err := wq.Dequeue(wctx)
				if err != nil {
					if wctx.Err() == nil {
						errc <- err
					}
					return
				}
				note := ""
				if m.Deliveries > 1 {
					note = fmt.Sprintf(" (delivery %d: redelivered)", m.Deliveries)
				}
				time.Sleep(5 * time.Millisecond) // the work
				if err := m.Ack(wctx); err != nil {
					errc <- err
					return
				}
				fmt.Printf("%s: did %v%s\n", w.name, m.Value, note)
				mu.Lock()
				if _, ok := redelivered[m.Value.N]; ok {
					redelivered[m.Value.N] = m.Deliveries == 2
				}
				done[m.Value.N]++
				all := len(done) == jobs
				mu.Unlock()
				if all {
					stop()
				}
			}
		})
	}
	wg.Wait()
	stop()
	select {
	case err := <-errc:
		return err
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("not every job was done: %w", err)
	}
	var twice []int
	for n, k := range done {
		if k != 1 {
			twice = append(twice, n)
		}
	}
	sort.Ints(twice)
	if len(twice) > 0 {
		return fmt.Errorf("jobs done more than once: %v", twice)
	}
	for n, ok := range redelivered {
		if !ok {
			return fmt.Errorf("job-%02d, lost by w2, was not done on its second delivery", n)
		}
	}
	left, err := q.Len(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("all %d jobs done exactly once; %d left in the queue\n", jobs, left)
	return nil
}

// startCluster opens size in-memory nodes on loopback TCP and waits until
// they are ready. The caller closes the nodes returned, even on error.
func startCluster(ctx context.Context, size int) ([]*concord.Node, error) {
	initial := map[string]string{}
	var names []string
	var lns []net.Listener
	for i := range size {
		// Pick a free port: listen, note the address, let it go once all
		// are picked (closed at once, a port could be handed out twice).
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		names = append(names, fmt.Sprintf("n%d", i+1))
		initial[names[i]] = ln.Addr().String()
	}
	for _, ln := range lns {
		ln.Close()
	}
	var nodes []*concord.Node
	for _, name := range names {
		cfg := concord.DefaultLocalConfig() // loopback profile; DataDir "" = in memory
		cfg.Name = name
		cfg.InitialCluster = initial
		n, err := concord.Open(ctx, cfg)
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.Ready(ctx); err != nil {
			return nodes, errors.Join(errors.New("cluster not ready"), err)
		}
	}
	return nodes, nil
}
