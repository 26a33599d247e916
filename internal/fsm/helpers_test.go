package fsm_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
	"github.com/concordkv/concord/internal/schema"
	"github.com/concordkv/concord/raftnode"
	"github.com/concordkv/concord/transport"
)

// node is a one-peer, in-memory raftnode running an FSM.
type node struct {
	t   testing.TB
	n   *raftnode.Node
	f   *fsm.FSM
	mu  sync.Mutex
	got []fsm.Commit // guarded by mu; what OnCommit received
}

// startNode starts a node; with events, OnCommit records every commit.
func startNode(t testing.TB, events bool) *node {
	t.Helper()
	nd := &node{t: t}
	var cfg fsm.Config
	if events {
		cfg.OnCommit = func(c fsm.Commit) {
			nd.mu.Lock()
			nd.got = append(nd.got, c)
			nd.mu.Unlock()
		}
	}
	nd.f = fsm.New(cfg)
	net := transport.NewNetwork(1)
	n, err := raftnode.Start(raftnode.Config{
		ID: 1, Peers: []raftnode.Peer{{ID: 1, Addr: "mem://1"}},
		Transport: net.Transport(1), Applier: nd.f,
	})
	if err != nil {
		net.Close()
		t.Fatal(err)
	}
	nd.n = n
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Error(err)
		}
		net.Close()
	})
	if err := nd.f.Load(n.DB()); err != nil {
		t.Fatal(err)
	}
	return nd
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// proposeRaw proposes cmd and decodes the result.
func (nd *node) proposeRaw(cmd []byte) *command.Response {
	nd.t.Helper()
	res, err := nd.n.Propose(ctx(nd.t), cmd)
	if err != nil {
		nd.t.Fatal(err)
	}
	resp, err := command.DecodeResponse(res)
	if err != nil {
		nd.t.Fatal(err)
	}
	return resp
}

func (nd *node) propose(req *command.Request) *command.Response {
	nd.t.Helper()
	b, err := command.EncodeRequest(req)
	if err != nil {
		nd.t.Fatal(err)
	}
	return nd.proposeRaw(b)
}

// read serves req as the Node will: ReadIndex, then Range on a View.
func (nd *node) read(req *command.RangeRequest) *command.Response {
	nd.t.Helper()
	if err := nd.n.ReadIndex(ctx(nd.t)); err != nil {
		nd.t.Fatal(err)
	}
	return rangeDB(nd.t, nd.f, nd.n.DB(), req)
}

func rangeDB(t testing.TB, f *fsm.FSM, db *badger.DB, req *command.RangeRequest) *command.Response {
	t.Helper()
	var resp *command.Response
	err := db.View(func(txn *badger.Txn) error {
		var err error
		resp, err = f.Range(txn, req)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func (nd *node) commits() []fsm.Commit {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return append([]fsm.Commit(nil), nd.got...)
}

// dump returns every key under schema.State with its value, in order.
func dump(t testing.TB, db *badger.DB) string {
	t.Helper()
	var b bytes.Buffer
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.State})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "%q = %x\n", it.Item().Key(), v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Request builders.

func put(k, v string) *command.Request {
	return &command.Request{Request: &command.Request_Put{Put: &command.PutRequest{Key: []byte(k), Value: []byte(v)}}}
}

func del(k, end string) *command.Request {
	return &command.Request{Request: &command.Request_DeleteRange{DeleteRange: &command.DeleteRangeRequest{Key: []byte(k), RangeEnd: bs(end)}}}
}

func compact(rev int64) *command.Request {
	return &command.Request{Request: &command.Request_Compaction{Compaction: &command.CompactionRequest{Revision: rev}}}
}

func get(k, end string, rev int64) *command.RangeRequest {
	return &command.RangeRequest{Key: []byte(k), RangeEnd: bs(end), Revision: rev}
}

func bs(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// prefixEnd is etcd's GetPrefixRangeEnd.
func prefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00"
}

// mustOK fails unless resp succeeded.
func mustOK(t testing.TB, resp *command.Response) *command.Response {
	t.Helper()
	if resp.GetCode() != command.Code_OK {
		t.Fatalf("code %v: %s", resp.GetCode(), resp.GetError())
	}
	return resp
}
