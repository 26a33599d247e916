package raftnode

import (
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/concordkv/concord/transport"
)

type dropTransport struct{ transport.Transport }

func (dropTransport) Send([]*pb.Message) {}

// TestSyncerSyncsTheAppendsMemtable: after a restore (the writer no longer
// knows the memtable's fill), an append is queued for the syncer, and the
// loop's next commits rotate the memtable before the syncer runs. The
// syncer must sync the memtable that holds the append, not badger's Sync,
// which covers whichever memtable is active when it runs: then the append's
// responses would go out while it sits unsynced in the old memtable,
// until the writer's own sync of it.
func TestSyncerSyncsTheAppendsMemtable(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithMemTableSize(1 << 20).WithValueThreshold(100 << 10))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := &Node{db: db, tr: dropTransport{}}
	rotated := make(chan struct{})
	syncedC := make(chan int, 8)
	n.sync = func(fid int, vlog bool) error {
		<-rotated // the syncer runs only once the loop has rotated
		syncedC <- fid
		return n.mems.sync(db, fid, vlog)
	}
	n.syncOld = func(fid int) error {
		close(rotated)
		return syncMemFile(db.Opts().Dir, fid)
	}
	w, err := newWriter(db, (*badger.Txn).Commit, n.sync, n.syncOld)
	if err != nil {
		t.Fatal(err)
	}
	n.w = w
	defer n.mems.close()
	if err := w.forget(); err != nil { // as after a snapshot restore
		t.Fatal(err)
	}
	memA := w.fid
	set := func(k string, v []byte) {
		txn := db.NewTransaction(true)
		if err := txn.Set([]byte(k), v); err != nil {
			t.Fatal(err)
		}
		if err := w.commit(txn, int64(len(k)+len(v))); err != nil {
			t.Fatal(err)
		}
	}
	set("entry-A", []byte("x"))
	sy := newSyncer(n, 0)
	go sy.run()
	defer sy.stop()
	if sy.add(syncReq{need: 1, fid: w.target(), remote: []*pb.Message{{Type: pb.MsgAppResp.Enum(), To: new(uint64(2))}}}) {
		t.Fatal("released without a sync")
	}
	val := make([]byte, 32<<10)
	for i := 0; w.fid == memA && i < 200; i++ {
		set(fmt.Sprintf("k%d", i), val)
	}
	if w.fid == memA {
		t.Fatal("no rotation")
	}
	fid := <-syncedC
	if fid != memA {
		t.Fatalf("the syncer synced %d (-1: badger's Sync, the active memtable %d) for an append in memtable %d", fid, w.fid, memA)
	}
}
