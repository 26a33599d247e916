package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/concordkv/concord/internal/testnet"
)

// childArgsEnv, when set, makes the test binary a replica: it runs the
// example with these arguments (separated by \x1f) instead of the tests.
const childArgsEnv = "CONCORD_ELECTION_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childArgsEnv); args != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		err := run(ctx, strings.Split(args, "\x1f"), os.Stdout)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "election:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// replica is one running process and the lines it printed.
type replica struct {
	name  string
	cmd   *exec.Cmd
	lines chan string // closed when its stdout ends
}

func startReplica(t *testing.T, name string, args []string) *replica {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(append([]string{"--name", name}, args...), "\x1f"))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, cmd: cmd, lines: make(chan string, 1024)}
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return r
}

// electedRE matches a replica's "elected" line.
var electedRE = regexp.MustCompile(`^(\w+): elected \(token (\d+)\)$`)

// collector merges every replica's lines and answers waits on them.
type collector struct {
	mu    sync.Mutex
	lines []string
	cond  chan struct{} // closed and replaced on each new line
}

func (c *collector) add(line string) {
	c.mu.Lock()
	c.lines = append(c.lines, line)
	close(c.cond)
	c.cond = make(chan struct{})
	c.mu.Unlock()
}

// wait returns the first line from index from on matching match, waiting
// at most d.
func (c *collector) wait(t *testing.T, from int, d time.Duration, what string, match func(string) bool) (string, int) {
	t.Helper()
	deadline := time.After(d)
	for {
		c.mu.Lock()
		for i := from; i < len(c.lines); i++ {
			if match(c.lines[i]) {
				line := c.lines[i]
				c.mu.Unlock()
				return line, i
			}
		}
		from = len(c.lines)
		cond := c.cond
		c.mu.Unlock()
		select {
		case <-cond:
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("no %s within %v; output:\n%s", what, d, strings.Join(c.lines, "\n"))
		}
	}
}

// TestElectionProcesses runs three replicas of the example as OS
// processes, waits until one is elected and every replica sees it, kills
// that leader's process with SIGKILL, and checks that another replica is
// elected with a higher token and that both survivors see it. It prints
// the failover time (kill to "elected").
func TestElectionProcesses(t *testing.T) {
	const ttl = time.Second
	names := []string{"a", "b", "c"}
	free, err := testnet.FreeAddrs(len(names))
	if err != nil {
		t.Fatal(err)
	}
	var members []string
	for i, n := range names {
		members = append(members, n+"="+free[i])
	}
	args := []string{"--initial-cluster", strings.Join(members, ","), "--local", "--ttl", ttl.String()}
	c := &collector{cond: make(chan struct{})}
	reps := map[string]*replica{}
	for _, n := range names {
		r := startReplica(t, n, args)
		reps[n] = r
		go func() {
			for line := range r.lines {
				c.add(line)
			}
		}()
	}

	line, at := c.wait(t, 0, 60*time.Second, "replica elected", electedRE.MatchString)
	m := electedRE.FindStringSubmatch(line)
	first, token := m[1], m[2]
	for _, n := range names {
		c.wait(t, 0, 20*time.Second, n+" seeing "+first, func(l string) bool {
			return l == fmt.Sprintf("%s: leader %s (token %s)", n, first, token)
		})
	}
	t.Logf("%s elected (token %s); killing its process", first, token)
	killed := time.Now()
	if err := reps[first].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	line, _ = c.wait(t, at+1, 30*time.Second, "a new leader", func(l string) bool {
		m := electedRE.FindStringSubmatch(l)
		return m != nil && m[1] != first
	})
	failover := time.Since(killed)
	m = electedRE.FindStringSubmatch(line)
	next, nextToken := m[1], m[2]
	if t1, _ := strconv.ParseInt(token, 10, 64); mustInt(t, nextToken) <= t1 {
		t.Fatalf("new leader's token %s, not above %s", nextToken, token)
	}
	for _, n := range names {
		if n == first {
			continue
		}
		c.wait(t, at+1, 20*time.Second, n+" seeing "+next, func(l string) bool {
			return l == fmt.Sprintf("%s: leader %s (token %s)", n, next, nextToken)
		})
	}
	t.Logf("failover: %s elected (token %s) %v after %s's process was killed (session TTL %v)",
		next, nextToken, failover.Round(time.Millisecond), first, ttl)

}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
