// Package transport carries raft messages and snapshot streams between
// concord peers.
//
// Two implementations ship with it: [TCP], the production transport (one
// long-lived connection per peer, length-prefixed frames, optional mTLS, a
// cluster id that keeps clusters apart), and
// [Network], an in-memory network with seeded faults for tests.
//
// # Contract
//
// The raft peer (package raftnode) is the only caller. It calls [Transport.Send]
// and [Transport.SendSnapshot] from its single raft goroutine, and
// [Transport.AddPeer] / [Transport.RemovePeer] from that goroutine or during
// start-up. None of them may block on the network: Send queues and returns;
// a peer whose queue is full has its messages dropped and is reported
// unreachable, which raft tolerates (it retries by itself).
//
// The transport calls the [Handler] from its own goroutines, possibly from
// several at once. Handler methods must not block for long, except
// ProcessSnapshot, which consumes a stream.
package transport

import (
	"errors"
	"io"

	"go.etcd.io/raft/v3/raftpb"
)

// Errors returned by transports. All are errors.Is-able.
var (
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("transport: closed")
	// ErrFrameTooLarge is returned when a frame's length prefix exceeds the
	// configured maximum; the connection is dropped, nothing is allocated.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrBadFrame is returned for a frame that cannot be decoded.
	ErrBadFrame = errors.New("transport: malformed frame")
	// ErrWrongPeer is returned when a connection's handshake names another
	// receiver than this transport.
	ErrWrongPeer = errors.New("transport: connection meant for another peer")
	// ErrWrongCluster is returned when a connection's handshake names
	// another cluster than this transport's (TCPConfig.ClusterID).
	ErrWrongCluster = errors.New("transport: connection from another cluster")
	// ErrNotAdmitted is returned when TCPConfig.Admit refuses a
	// connection's sender.
	ErrNotAdmitted = errors.New("transport: peer not admitted")
)

// Admitter is an optional interface of a Handler. The TCP transport asks
// it about every inbound connection whose hello passed its own checks,
// with the sender's raft id and incarnation (TCPConfig.Incarnation; 0 if
// it sent none); an error refuses the connection (ErrNotAdmitted, and
// TCP.Refused reports it). Called from the transport's goroutines; must
// not block for long.
type Admitter interface {
	Admit(from, incarnation uint64) error
}

// Handler receives what peers send. It is implemented by the raft peer.
//
// Methods are called from the transport's goroutines, possibly concurrently.
type Handler interface {
	// Process delivers one raft message from a peer. The handler owns m
	// after the call. Must not block for long: queue and return.
	Process(m *raftpb.Message)

	// ProcessSnapshot delivers a MsgSnap together with its body, streamed by
	// the sender. It may block while it consumes body; body is valid only
	// until ProcessSnapshot returns. A nil error tells the sender that the
	// snapshot was received and handed to raft; an error makes the sender
	// report the snapshot as failed.
	ProcessSnapshot(m *raftpb.Message, body io.Reader) error

	// ReportUnreachable tells that a message to peer id could not be
	// delivered. Must not block.
	ReportUnreachable(id uint64)

	// ReportSnapshot tells the outcome of a SendSnapshot to peer id. Must
	// not block.
	ReportSnapshot(id uint64, failed bool)
}

// Transport sends raft messages to peers and delivers theirs to a Handler.
type Transport interface {
	// Start begins accepting and delivering to h. It is called once,
	// before any other method but Addr.
	Start(h Handler) error

	// Addr is the address peers reach this transport at.
	Addr() string

	// AddPeer registers or updates the address of peer id. Idempotent.
	AddPeer(id uint64, addr string)

	// RemovePeer forgets peer id and drops its connection and queue.
	RemovePeer(id uint64)

	// Send queues msgs for delivery and returns without waiting for the
	// network. The transport takes ownership of the messages: the caller
	// must not modify them afterwards. Messages to unknown peers, or beyond
	// a peer's queue, are dropped and reported with Handler.ReportUnreachable.
	// MsgSnap messages must go through SendSnapshot instead.
	Send(msgs []*raftpb.Message)

	// SendSnapshot streams the MsgSnap m and its body to peer m.To on a
	// stream of its own, in the background. It closes body when done and
	// reports the outcome with Handler.ReportSnapshot. It does not block.
	SendSnapshot(m *raftpb.Message, body io.ReadCloser)

	// Close stops all goroutines and closes all connections. Idempotent.
	Close() error
}
