package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/concordkv/concord/internal/testnet"
)

// childArgsEnv, when set, makes the test binary a replica: it runs the
// example with these arguments (separated by \x1f) instead of the tests.
const childArgsEnv = "CONCORD_CLUSTER_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childArgsEnv); args != "" {
		if err := run(strings.Split(args, "\x1f")); err != nil {
			fmt.Fprintln(os.Stderr, "cluster:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// client talks to replicas' HTTP APIs (always on loopback here).
var client = &http.Client{Timeout: 5 * time.Second}

func put(addr, key, val string) error {
	req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/kv/"+key, strings.NewReader(val))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: %s: %s", key, resp.Status, b)
	}
	return nil
}

// get returns key's value; found is false on a 404.
func get(addr, key string) (val string, found bool, err error) {
	resp, err := client.Get("http://" + addr + "/kv/" + key)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return string(b), true, nil
	case http.StatusNotFound:
		return "", false, nil
	}
	return "", false, fmt.Errorf("GET %s: %s: %s", key, resp.Status, b)
}

func getStatus(addr string) (status, error) {
	var st status
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// shape is a status's voters and learners, sorted.
func shape(st status) (voters, learners []string) {
	for _, m := range st.Members {
		if m.Role == "learner" {
			learners = append(learners, m.Name)
		} else {
			voters = append(voters, m.Name)
		}
	}
	slices.Sort(voters)
	slices.Sort(learners)
	return voters, learners
}

// procs runs replicas of this example as OS processes on loopback, all
// with the same flags but for name, addresses and data dir.
type procs struct {
	t     *testing.T
	dir   string
	extra []string // flags common to all

	mu    sync.Mutex
	addrs map[string][3]string // name -> peer, gossip, http
	cmds  map[string]*exec.Cmd // running ones
}

func newProcs(t *testing.T, seeds []string, extra ...string) *procs {
	p := &procs{t: t, dir: t.TempDir(), addrs: map[string][3]string{}, cmds: map[string]*exec.Cmd{}}
	var join []string
	for _, s := range seeds {
		join = append(join, p.addr(s)[1])
	}
	p.extra = append([]string{"--local", "--join", strings.Join(join, ",")}, extra...)
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.cmds {
			c.Process.Kill()
			c.Wait()
		}
		if t.Failed() {
			p.dumpLogs()
		}
	})
	return p
}

// addr returns name's peer, gossip and HTTP addresses, fixed on first use.
func (p *procs) addr(name string) [3]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.addrs[name]; ok {
		return a
	}
	free, err := testnet.FreeAddrs(3)
	if err != nil {
		p.t.Fatal(err)
	}
	a := [3]string(free)
	p.addrs[name] = a
	return a
}

func (p *procs) http(name string) string { return p.addr(name)[2] }

// start starts replica name (again, on its data dir, if it ran before).
func (p *procs) start(name string) {
	p.t.Helper()
	a := p.addr(name)
	args := append([]string{
		"--name", name, "--data-dir", filepath.Join(p.dir, name),
		"--peer-addr", a[0], "--gossip-addr", a[1], "--http", a[2], "--log-level", "debug",
	}, p.extra...)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(args, "\x1f"))
	logf, err := os.OpenFile(filepath.Join(p.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.cmds[name] = cmd
	p.mu.Unlock()
}

// kill kills replica name with SIGKILL; stop stops it with SIGTERM (a
// graceful close).
func (p *procs) kill(name string) { p.signal(name, syscall.SIGKILL) }
func (p *procs) stop(name string) { p.signal(name, syscall.SIGTERM) }

func (p *procs) signal(name string, sig syscall.Signal) {
	p.t.Helper()
	p.mu.Lock()
	cmd := p.cmds[name]
	delete(p.cmds, name)
	p.mu.Unlock()
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		p.t.Fatalf("%s did not stop on %v", name, sig)
	}
}

// running returns the names of the running replicas, sorted.
func (p *procs) running() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for n := range p.cmds {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// waitShape waits until every running replica reports the same voters
// and learners, nv and nl of them, and the same leader.
func (p *procs) waitShape(d time.Duration, nv, nl int) (voters, learners []string) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for {
		ok := true
		leaders := map[string]bool{}
		voters, learners = nil, nil
		for i, name := range p.running() {
			st, err := getStatus(p.http(name))
			v, l := shape(st)
			if i == 0 {
				voters, learners = v, l
			}
			if err != nil || !st.Ready || st.Leader == "" || len(v) != nv || len(l) != nl || !slices.Equal(v, voters) || !slices.Equal(l, learners) {
				ok = false
				last = fmt.Sprintf("%s: ready %v leader %q voters %v learners %v (%v)", name, st.Ready, st.Leader, v, l, err)
				break
			}
			leaders[st.Leader] = true
		}
		if ok && len(leaders) == 1 {
			return voters, learners
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out after %v waiting for %d voters and %d learners: %s", d, nv, nl, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *procs) dumpLogs() {
	for name := range p.addrs {
		b, _ := os.ReadFile(filepath.Join(p.dir, name+".log"))
		lines := strings.Split(string(b), "\n")
		var keep []string
		for _, l := range lines {
			if strings.Contains(l, "membership") || strings.Contains(l, "cluster:") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "panic") {
				keep = append(keep, l)
			}
		}
		if len(keep) > 40 {
			keep = keep[len(keep)-40:]
		}
		p.t.Logf("--- %s log (membership lines, last 40) ---\n%s", name, strings.Join(keep, "\n"))
	}
}
