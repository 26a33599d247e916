// Package killtest runs a test binary's child test in its own process and
// kills it with SIGKILL at a chosen moment, for durability tests: the child
// prints one line per acknowledged operation, the parent kills it after
// some of them and then checks that every acknowledged one survived.
package killtest

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Child describes one run of a child process.
type Child struct {
	// Name prefixes failure messages, e.g. "round 3".
	Name string
	// Test is the child test function's name; the child is this test
	// binary run with -test.run=^Test$.
	Test string
	// Env is added to the child's environment.
	Env []string
	// KillAfter is how many acks to wait for, then KillDelay more.
	KillAfter int
	KillDelay time.Duration
	// Handle is called for every full line the child printed, also those
	// printed after the kill was sent (they reached a client). It reports
	// whether the line was an ack; other lines that are not part of the
	// caller's protocol should make it return false and are shown on
	// failure.
	Handle func(line string) (ack bool, protocol bool)
}

// Run starts the child, kills it once KillAfter acks and KillDelay have
// passed, feeds every line to Handle, and fails t unless the child died of
// SIGKILL with no race report or panic on stderr. It returns the acks.
func Run(t testing.TB, c Child) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+c.Test+"$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), c.Env...)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			cmd.Process.Signal(os.Kill) // SIGKILL: nothing flushed, nothing closed
		}
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		br := bufio.NewReader(stdout)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return // a final fragment without '\n' was never fully printed
			}
			lines <- strings.TrimSuffix(line, "\n")
		}
	}()
	var other []string // lines outside the protocol: the child's failure
	acks := 0
	handle := func(line string) {
		ack, protocol := c.Handle(line)
		if ack {
			acks++
		}
		if !protocol && len(other) < 50 {
			other = append(other, line)
		}
	}
	defer func() { // on a failure below, still reap the child
		kill()
		for range lines {
		}
		cmd.Wait()
	}()

	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	var killC <-chan time.Time
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("%s: child exited before it was killed (%d acks): %v\nstdout:\n%s\nstderr:\n%s",
					c.Name, acks, cmd.ProcessState, strings.Join(other, "\n"), stderr.String())
			}
			handle(line)
			if acks >= c.KillAfter && killC == nil {
				killC = time.After(c.KillDelay)
			}
		case <-killC:
			kill()
			break wait
		case <-deadline.C:
			kill()
			t.Fatalf("%s: only %d of %d acks within 60s\nstdout:\n%s\nstderr:\n%s",
				c.Name, acks, c.KillAfter, strings.Join(other, "\n"), stderr.String())
		}
	}
	// Whatever the child printed before it died counts: those acks were
	// given to a client.
	for line := range lines {
		handle(line)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("%s: child ended with %v, want killed by SIGKILL\nstderr:\n%s", c.Name, err, stderr.String())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s: child ended with %v, want killed by SIGKILL\nstderr:\n%s", c.Name, err, stderr.String())
	}
	if s := stderr.String(); strings.Contains(s, "DATA RACE") || strings.Contains(s, "panic:") {
		t.Fatalf("%s: child failed:\n%s", c.Name, s)
	}
	return acks
}

// lockedBuffer collects the child's stderr, which exec copies on a
// goroutine of its own.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
