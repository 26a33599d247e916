package raftnode_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/raftnode/raftnodetest"
	"github.com/concordkv/concord/transport"
)

const straceChildEnv = "CONCORD_STRACE_CHILD_DIR"

// TestFsyncBeforeEveryAck watches the syscalls themselves: a child process
// (this test binary) runs a lone on-disk peer under strace and prints
// "ACK n" after each acknowledged proposal; between any two acks the kernel
// must have completed a sync call of the memtable that holds the data: an
// fsync or fdatasync of a .mem file, or an msync (badger's own Sync). With
// badger's default (no SyncWrites) and no explicit sync there would be
// none; a sync of another file does not count.
func TestFsyncBeforeEveryAck(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed (.ci/run installs it)")
	}
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-qq", "-y", "-o", trace, "-e", "trace=msync,fsync,fdatasync,write",
		os.Args[0], "-test.run=^TestFsyncChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), straceChildEnv+"="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child under strace: %v\n%s", err, out)
	}
	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	acks, syncs, syncsSinceAck := 0, 0, 0
	unfinished := map[string]string{} // by thread: a call's first half
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		tid, rest, _ := strings.Cut(line, " ")
		if head, ok := strings.CutSuffix(rest, " <unfinished ...>"); ok {
			unfinished[tid] = head
			continue
		}
		if _, tail, ok := strings.Cut(rest, " resumed>"); ok {
			line = tid + " " + unfinished[tid] + tail
			delete(unfinished, tid)
		}
		switch {
		case strings.Contains(line, "write(1") && strings.Contains(line, `, "ACK `):
			if syncsSinceAck == 0 && acks > 0 {
				t.Fatalf("ack %d printed with no sync since ack %d", acks+1, acks)
			}
			acks++
			syncsSinceAck = 0
		case isSyncDone(line):
			syncs++
			syncsSinceAck++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if acks < 50 {
		t.Fatalf("saw %d acks in the trace, want 50", acks)
	}
	t.Logf("%d acks, %d completed sync calls", acks, syncs)
}

// isSyncDone tells whether an strace -y line (a split call already
// joined) reports a sync of a memtable that returned 0.
func isSyncDone(line string) bool {
	if !strings.HasSuffix(line, "= 0") {
		return false
	}
	if strings.Contains(line, "msync(") {
		return true
	}
	return (strings.Contains(line, "fsync(") || strings.Contains(line, "fdatasync(")) && strings.Contains(line, ".mem>)")
}

// TestFsyncChild is the child of TestFsyncBeforeEveryAck; it does nothing
// in a normal run.
func TestFsyncChild(t *testing.T) {
	dir := os.Getenv(straceChildEnv)
	if dir == "" {
		return
	}
	net := transport.NewNetwork(1)
	defer net.Close()
	n, err := raftnode.Start(raftnode.Config{
		ID: 1, DataDir: dir, Peers: []raftnode.Peer{{ID: 1, Addr: "mem://1"}},
		Transport: net.Transport(1), Applier: &raftnodetest.KV{},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 50 {
		if _, err := n.Propose(ctx, raftnodetest.PutCmd(fmt.Sprint("k", i), "v")); err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString(fmt.Sprintf("ACK %d\n", i))
	}
}
