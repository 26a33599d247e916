package raftnode

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dgraph-io/badger/v4"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/schema"
	"github.com/concordkv/concord/internal/wire"
)

// A snapshot stream is
//
//	record(wire.SnapshotHeader)
//	record(wire.KV)...      the replicated keys under schema.AppliedGroup
//	record(empty)           end of the raftnode section
//	applier stream          Applier.Snapshot's bytes, to EOF
//
// where record(m) is a uvarint length followed by m's protobuf encoding.
// The state it carries is the state after applying entry
// SnapshotHeader.applied_index. The sender makes the raft snapshot metadata
// it travels with describe that index; should the state still be newer,
// entries up to it are skipped on the receiver.

const snapshotVersion = 1

// maxSnapshotRecord bounds one record of the raftnode section.
const maxSnapshotRecord = 1 << 20

// sendSnapshot streams the current state to m.To. The read transaction is
// opened here, on the raft goroutine, so it sees a whole applied state.
func (l *loop) sendSnapshot(m *pb.Message) {
	n := l.n
	txn := n.db.NewTransaction(false)
	// raft filled m's metadata from the last compaction point, but the body
	// is the state as of the applied index, with the conf changes applied
	// since. Describe that state instead (as etcd does): the receiver's raft
	// ignores a snapshot whose ConfState lacks it, as one from before the
	// AddLearner of a new peer does.
	if applied := n.applied.Load(); applied > m.GetSnapshot().GetMetadata().GetIndex() {
		if term, err := l.st.Term(applied); err == nil {
			m.Snapshot = &pb.Snapshot{Metadata: &pb.SnapshotMetadata{
				Index: new(applied), Term: new(term), ConfState: l.st.confState(),
			}}
		}
	}
	pr, pw := io.Pipe()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer txn.Discard()
		pw.CloseWithError(n.writeSnapshot(txn, pw))
	}()
	n.tr.SendSnapshot(m, pr)
}

// replicatedKey tells whether an applied-group key travels in snapshots.
func replicatedKey(k []byte) bool {
	return !bytes.Equal(k, schema.Applied) && !bytes.Equal(k, schema.Restoring)
}

func (n *Node) writeSnapshot(txn *badger.Txn, w io.Writer) error {
	item, err := txn.Get(schema.Applied)
	if err != nil {
		return fmt.Errorf("raftnode: snapshot without applied index: %w", err)
	}
	av, err := item.ValueCopy(nil)
	if err != nil {
		return err
	}
	applied, _ := schema.ParseU64(av)
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := writeRecord(bw, &wire.SnapshotHeader{Version: snapshotVersion, AppliedIndex: applied}); err != nil {
		return err
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.AppliedGroup, PrefetchValues: true, PrefetchSize: 64})
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().KeyCopy(nil)
		if !replicatedKey(k) {
			continue
		}
		v, err := it.Item().ValueCopy(nil)
		if err == nil {
			err = writeRecord(bw, &wire.KV{Key: k, Value: v})
		}
		if err != nil {
			it.Close()
			return err
		}
	}
	it.Close()
	if _, err := bw.Write([]byte{0}); err != nil {
		return err
	}
	if err := n.cfg.Applier.Snapshot(txn, bw); err != nil {
		return err
	}
	return bw.Flush()
}

func writeRecord(w io.Writer, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return errors.New("raftnode: empty snapshot record would read as the end marker")
	}
	if _, err := w.Write(binary.AppendUvarint(nil, uint64(len(b)))); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// readRecord reads one record into m; it returns io.EOF at the end marker.
func readRecord(r *bufio.Reader, m proto.Message) error {
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("raftnode: snapshot record: %w", err)
	}
	if size == 0 {
		return io.EOF
	}
	if size > maxSnapshotRecord {
		return fmt.Errorf("raftnode: snapshot record of %d bytes exceeds %d", size, maxSnapshotRecord)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("raftnode: snapshot record: %w", err)
	}
	return proto.Unmarshal(b, m)
}

// installSnapshot restores the snapshot raft just accepted from its
// spooled body and resets the loop's view of the state.
func (l *loop) installSnapshot(meta *pb.SnapshotMetadata) error {
	path, ok := l.spools[meta.GetIndex()]
	if !ok {
		return fmt.Errorf("no body received for snapshot at index %d", meta.GetIndex())
	}
	delete(l.spools, meta.GetIndex())
	if err := l.n.restore(path, meta); err != nil {
		return err
	}
	if err := l.dedup.load(l.n.db); err != nil {
		return err
	}
	l.members = nil
	if err := l.n.loadMembers(); err != nil {
		return err
	}
	l.answerSnapshotted()
	l.confIdx = l.n.applied.Load()
	l.snapIdx = meta.GetIndex()
	for idx, p := range l.spools {
		if idx <= meta.GetIndex() {
			os.Remove(p)
			delete(l.spools, idx)
		}
	}
	for id, addr := range l.n.Peers() {
		if id != l.n.cfg.ID {
			l.n.tr.AddPeer(id, addr)
		}
	}
	return nil
}

// restore replaces the replicated state with the snapshot body at path and
// makes meta the start of the raft log. A marker written first makes a
// crash anywhere in here redo the whole restore on the next start.
func (n *Node) restore(path string, meta *pb.SnapshotMetadata) error {
	mb, err := proto.Marshal(meta)
	if err != nil {
		return err
	}
	marker, err := proto.Marshal(&wire.RestoreMarker{Path: path, Metadata: mb})
	if err != nil {
		return err
	}
	n.restoring.Store(&path) // removeSpools keeps it: a restart redoes the install from it
	if err := n.update(func(txn *badger.Txn) error { return txn.Set(schema.Restoring, marker) }); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	applied, err := n.restoreFrom(bufio.NewReaderSize(f, 256<<10))
	if err != nil {
		return err
	}
	if applied < meta.GetIndex() {
		return fmt.Errorf("raftnode: snapshot state at %d is older than its metadata %d", applied, meta.GetIndex())
	}
	c := n.newChain()
	defer c.discard()
	if err := c.set(schema.Applied, schema.U64(applied)); err != nil {
		return err
	}
	if err := n.st.installSnapshot(c, meta); err != nil {
		return err
	}
	if err := n.update(func(txn *badger.Txn) error { return txn.Delete(schema.Restoring) }); err != nil {
		return err
	}
	cs := &pb.ConfState{}
	if err := n.db.View(func(txn *badger.Txn) error { return getProto(txn, schema.ConfState, cs) }); err != nil {
		return err
	}
	n.st.setConfState(cs)
	n.applied.Store(applied)
	n.restoring.Store(nil)
	os.Remove(path)
	return nil
}

// update runs f in a transaction of the peer's writer, committed and
// synced.
func (n *Node) update(f func(*badger.Txn) error) error {
	c := n.newChain()
	defer c.discard()
	if err := f(c.txn); err != nil {
		return err
	}
	return c.done()
}

// restoreFrom loads a snapshot stream and returns its applied index.
func (n *Node) restoreFrom(r *bufio.Reader) (uint64, error) {
	var hdr wire.SnapshotHeader
	if err := readRecord(r, &hdr); err != nil {
		return 0, err
	}
	if hdr.GetVersion() != snapshotVersion {
		return 0, fmt.Errorf("raftnode: snapshot version %d, want %d", hdr.GetVersion(), snapshotVersion)
	}
	c := newRestoreChain(n.db)
	defer c.discard()
	var stale [][]byte
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.AppliedGroup})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if k := it.Item().KeyCopy(nil); replicatedKey(k) {
				stale = append(stale, k)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range stale {
		if err := c.delete(k); err != nil {
			return 0, err
		}
	}
	for {
		var kv wire.KV
		err := readRecord(r, &kv)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		if !bytes.HasPrefix(kv.GetKey(), schema.AppliedGroup) || !replicatedKey(kv.GetKey()) {
			return 0, fmt.Errorf("raftnode: snapshot carries foreign key %q", kv.GetKey())
		}
		if err := c.set(kv.GetKey(), kv.GetValue()); err != nil {
			return 0, err
		}
	}
	if err := c.done(); err != nil {
		return 0, err
	}
	err = errors.Join(n.cfg.Applier.Restore(n.db, r), n.w.forget()) // written around the writer
	if err != nil {
		return 0, fmt.Errorf("raftnode: applier restore: %w", err)
	}
	return hdr.GetAppliedIndex(), nil
}

// resumeRestore finishes a restore a crash interrupted.
func (n *Node) resumeRestore() error {
	var m wire.RestoreMarker
	found := false
	err := n.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(schema.Restoring)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return item.Value(func(v []byte) error { return proto.Unmarshal(v, &m) })
	})
	if err != nil || !found {
		return err
	}
	meta := &pb.SnapshotMetadata{}
	if err := proto.Unmarshal(m.GetMetadata(), meta); err != nil {
		return err
	}
	if err := n.restore(m.GetPath(), meta); err != nil {
		return fmt.Errorf("raftnode: resume interrupted snapshot install: %w", err)
	}
	return nil
}

// spool writes a received snapshot body to a file and returns its path.
func (n *Node) spool(m *pb.Message, body io.Reader) (string, error) {
	meta := m.GetSnapshot().GetMetadata()
	f, err := os.CreateTemp(n.cfg.SnapshotDir, fmt.Sprintf("%016x-%016x-*.snap", meta.GetTerm(), meta.GetIndex()))
	if err != nil {
		return "", err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	_, err = io.Copy(bw, body)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && n.cfg.DataDir != "" {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n.cfg.DataDir != "" {
		err = syncDir(n.cfg.SnapshotDir) // the restore marker will name the file
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// syncDir syncs directory dir, so that the files created in it last.
func syncDir(dir string) error { return syncOpened(os.Open(dir)) }
