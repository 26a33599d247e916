package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/concordkv/concord"
)

// requestTimeout bounds one API call.
const requestTimeout = 5 * time.Second

// newAPI serves the HTTP API of node n; a successful POST /leave closes
// left.
func newAPI(n *concord.Node, left chan<- struct{}) http.Handler {
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /kv/{key...}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		resp, err := n.Put(ctx, r.PathValue("key"), string(body))
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, map[string]int64{"revision": resp.Revision})
	})
	mux.HandleFunc("GET /kv/{key...}", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		var opts []concord.OpOption
		if r.URL.Query().Get("serializable") != "" {
			opts = append(opts, concord.WithSerializable())
		}
		resp, err := n.Get(ctx, r.PathValue("key"), opts...)
		if err != nil {
			fail(w, err)
			return
		}
		if len(resp.Kvs) == 0 {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Write(resp.Kvs[0].Value)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 100*time.Millisecond)
		defer cancel()
		if err := n.Ready(ctx); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 500*time.Millisecond)
		defer cancel()
		st := n.Status()
		out := status{Name: st.Name, ID: fmt.Sprintf("%x", st.ID), IsLeader: n.IsLeader(), Revision: st.Revision, Applied: st.AppliedIndex}
		if l, ok := n.Leader(); ok {
			out.Leader = l.Name
		}
		ms, err := n.Members(ctx)
		out.Ready = err == nil
		for _, m := range ms {
			out.Members = append(out.Members, member{
				Name: m.Name, ID: fmt.Sprintf("%x", m.ID), PeerAddr: m.PeerAddr, GossipAddr: m.GossipAddr,
				Role: m.Role(), Gossip: m.GossipState, Lag: m.Lag,
			})
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("POST /leave", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		if err := n.Leave(ctx); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "left")
		once.Do(func() { close(left) })
	})
	return mux
}

// status is GET /status's answer.
type status struct {
	Name     string   `json:"name"`
	ID       string   `json:"id"`
	Ready    bool     `json:"ready"`
	IsLeader bool     `json:"is_leader"`
	Leader   string   `json:"leader"`
	Revision int64    `json:"revision"`
	Applied  uint64   `json:"applied"`
	Members  []member `json:"members"`
}

type member struct {
	Name       string `json:"name"`
	ID         string `json:"id"`
	PeerAddr   string `json:"peer_addr"`
	GossipAddr string `json:"gossip_addr"`
	Role       string `json:"role"`
	Gossip     string `json:"gossip"`
	Lag        int64  `json:"lag"`
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// fail answers err: 503 while the cluster cannot serve (no leader, not
// ready, closed), 400 for bad requests.
func fail(w http.ResponseWriter, err error) {
	code := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, concord.ErrEmptyKey), errors.Is(err, concord.ErrKeyTooLarge),
		errors.Is(err, concord.ErrRequestTooLarge), errors.Is(err, concord.ErrInvalidRequest):
		code = http.StatusBadRequest
	}
	http.Error(w, strings.TrimSpace(err.Error()), code)
}
