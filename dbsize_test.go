package concord_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/concordkv/concord"
)

// TestStatusDBSize: a node on disk reports the space its files take from
// the start (badger's own measure comes a minute after it opens), and
// more once megabytes are written; a node in memory reports 0.
func TestStatusDBSize(t *testing.T) {
	if got := openOne(t).Status().DBSize; got != 0 {
		t.Fatalf("in memory: DBSize %d, want 0", got)
	}
	cfg := concord.DefaultLocalConfig()
	cfg.Name = "disk"
	cfg.DataDir = t.TempDir()
	n := openReady(t, cfg)
	first := n.Status().DBSize
	if first <= 0 {
		t.Fatalf("on disk: DBSize %d right after Open, want > 0", first)
	}
	val := strings.Repeat("x", 64<<10)
	for i := range 64 { // 4 MiB of values, in the log and in the state
		put(t, n, fmt.Sprintf("k%d", i), val)
	}
	eventually(t, 10*time.Second, "DBSize to grow by 4 MiB", func() bool {
		return n.Status().DBSize >= first+4<<20
	})
}
