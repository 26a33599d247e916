package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// docker runs the docker CLI, bounded by a minute.
func docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// dockerAnswers tells whether a Docker engine answers within 10 seconds.
func dockerAnswers() bool {
	if _, err := exec.LookPath("docker"); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "docker", "info").Run() == nil
}

// containers is three replicas of the FROM-scratch image on a private
// Docker network; the test reaches their HTTP APIs through ports
// published on 127.0.0.1 only.
type containers struct {
	t      *testing.T
	prefix string
	net    string
	ips    map[string]string
}

func (c *containers) must(args ...string) string {
	c.t.Helper()
	out, err := docker(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// http returns the loopback address of name's published HTTP port (it
// changes when the container restarts).
func (c *containers) http(name string) string {
	out, err := docker("port", c.prefix+name, "8080/tcp")
	if err != nil {
		return "127.0.0.1:1" // not running: unreachable
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "127.0.0.1:") {
			return l
		}
	}
	return "127.0.0.1:1"
}

// TestContainers: three containers of the FROM-scratch image form a
// cluster on a private network; one is partitioned off (docker network
// disconnect), one paused, one killed and restarted, under a steady write
// load. After each heal a leader is back within 10 s, and no
// acknowledged write is lost. Skipped when no Docker engine answers.
func TestContainers(t *testing.T) {
	if !dockerAnswers() {
		t.Skip("no Docker engine answers (docker info): container test skipped")
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 6))
	c := &containers{t: t, prefix: fmt.Sprintf("concordtest%d-", rng.IntN(1e6)), ips: map[string]string{}}
	image := c.prefix + "image"

	// The image: the static binary, FROM scratch.
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "cluster"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v: %s", err, out)
	}
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("build", "-q", "-t", image, dir)
	t.Cleanup(func() { docker("rmi", "-f", image) })

	// A private network with a subnet of our own, fixed addresses so that
	// a reconnected container keeps its own.
	var subnet string
	for try := 0; ; try++ {
		subnet = fmt.Sprintf("172.30.%d", rng.IntN(250))
		c.net = c.prefix + "net"
		if _, err := docker("network", "create", "--subnet", subnet+".0/24", c.net); err == nil {
			break
		} else if try == 10 {
			t.Fatal(err)
		}
	}
	names := []string{"c1", "c2", "c3"}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range names {
				out, _ := docker("logs", "--tail", "30", c.prefix+n)
				t.Logf("--- %s ---\n%s", n, out)
			}
		}
		for _, n := range names {
			docker("rm", "-f", c.prefix+n)
		}
		docker("network", "rm", c.net)
	})
	var join []string
	for i, n := range names {
		c.ips[n] = fmt.Sprintf("%s.%d", subnet, 10+i)
		join = append(join, c.ips[n]+":7946")
	}
	for _, n := range names {
		c.must("run", "-d", "--name", c.prefix+n, "--hostname", n, "--network", c.net, "--ip", c.ips[n],
			"-p", "127.0.0.1::8080", image,
			"--name", n, "--local", "--join", strings.Join(join, ","), "--bootstrap-expect", "3",
			"--dead-reclaim", "10m", "--log-level", "debug")
	}
	leaderWithin := func(what string, d time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			leaders := map[string]bool{}
			ok := true
			for _, n := range names {
				st, err := getStatus(c.http(n))
				v, _ := shape(st)
				if err != nil || !st.Ready || st.Leader == "" || len(v) != 3 {
					ok = false
					break
				}
				leaders[st.Leader] = true
			}
			if ok && len(leaders) == 1 {
				took := time.Since(start)
				t.Logf("%s: one leader on all three after %v", what, took.Round(time.Millisecond))
				return took
			}
			if time.Since(start) > d {
				t.Fatalf("%s: no leader agreed by all three within %v", what, d)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	leaderWithin("start", 60*time.Second)

	// A steady writer through the replicas it can reach.
	var mu sync.Mutex
	acked := map[string]string{}
	var seq, fails atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		for {
			select {
			case <-stop:
				return
			default:
			}
			i := seq.Add(1)
			k, v := fmt.Sprintf("k%05d", i), fmt.Sprint(i)
			if err := put(c.http(names[r.IntN(3)]), k, v); err != nil {
				fails.Add(1)
				time.Sleep(20 * time.Millisecond)
				continue
			}
			mu.Lock()
			acked[k] = v
			mu.Unlock()
		}
	})
	pick := func() string { return names[rng.IntN(3)] }

	victim := pick()
	c.must("network", "disconnect", c.net, c.prefix+victim)
	t.Logf("partitioned %s", victim)
	time.Sleep(3 * time.Second)
	c.must("network", "connect", "--ip", c.ips[victim], c.net, c.prefix+victim)
	worst := leaderWithin("after healing the partition of "+victim, 10*time.Second)

	victim = pick()
	c.must("pause", c.prefix+victim)
	t.Logf("paused %s", victim)
	time.Sleep(3 * time.Second)
	c.must("unpause", c.prefix+victim)
	worst = max(worst, leaderWithin("after unpausing "+victim, 10*time.Second))

	victim = pick()
	c.must("kill", c.prefix+victim)
	t.Logf("killed %s", victim)
	time.Sleep(2 * time.Second)
	c.must("start", c.prefix+victim)
	worst = max(worst, leaderWithin("after restarting "+victim, 10*time.Second))

	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range acked {
			if !yield(k) {
				return
			}
		}
	})
	for _, n := range names {
		addr := c.http(n)
		for _, k := range keys {
			got, found, err := get(addr, k)
			if err != nil || !found || got != acked[k] {
				t.Fatalf("%s reads %s = %q %v (%v); acknowledged %q", n, k, got, found, err, acked[k])
			}
		}
	}
	t.Logf("%d acknowledged writes (%d attempts failed during faults) readable on all three; slowest heal-to-leader %v",
		len(acked), fails.Load(), worst.Round(time.Millisecond))
}
