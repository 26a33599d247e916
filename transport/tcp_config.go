package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// TCPConfig configures [NewTCP]. A zero optional field selects its default.
type TCPConfig struct {
	// ID is this peer's raft id. Required, non-zero.
	ID uint64
	// ListenAddr is the "host:port" to listen on. Required; port 0 picks a
	// free port (see [TCP.Addr]).
	ListenAddr string
	// AdvertiseAddr is the address peers dial. Default: the bound listen
	// address.
	AdvertiseAddr string
	// ClusterID, if not 0, names the cluster this peer belongs to. It is
	// sent in the hello of every connection this peer makes, and an
	// inbound connection whose hello names another, non-zero, cluster is
	// refused (ErrWrongCluster): raft ids alone do not tell clusters
	// apart when their members share names, and a peer address reused by
	// another cluster would otherwise take its raft messages. A hello
	// with no cluster id is accepted (a peer that has none yet, such as
	// one joining through gossip).
	ClusterID uint64
	// Incarnation, if not 0, names this peer's data: it is sent in the
	// hello of every connection this peer makes (see Admitter).
	Incarnation uint64
	// TLS, when non-nil, enables mutual TLS; nil means plaintext. One config
	// serves both ends: Certificates is this peer's certificate, presented
	// to the peers it dials and to those dialing it, and RootCAs (or
	// ClientCAs, if set) is the pool every peer certificate must chain to.
	// The listener forces ClientAuth to tls.RequireAndVerifyClientCert, so a
	// peer whose certificate comes from another CA, or that speaks
	// plaintext, can neither connect nor deliver a message. Certificates
	// need both the server and client extended key usages, and a SAN
	// matching the host peers dial. Any holder of a valid certificate may
	// claim any raft id. The config is cloned, never modified.
	TLS *tls.Config
	// Logger receives connection errors. Default: nothing is logged.
	Logger *slog.Logger
	// MaxFrameSize bounds one frame, that is one encoded raft message: a
	// larger outgoing message is dropped and reported unreachable, and a
	// peer announcing a larger frame is disconnected. Keep it well above
	// raft's MaxSizePerMsg plus the largest entry. Snapshot bodies are
	// streamed in small chunks and are not bounded by it. Default 16 MiB.
	MaxFrameSize int
	// QueueSize is how many messages may wait per peer; Send drops beyond
	// it. Default 4096.
	QueueSize int
	// DialTimeout bounds a dial, TLS handshake included, and an inbound
	// connection's TLS handshake and hello. Default 5s.
	DialTimeout time.Duration
	// WriteTimeout bounds each write to a peer; a peer that reads nothing
	// for that long is disconnected. Default 5s.
	WriteTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before redialing a peer,
	// which doubles after each failure. Defaults 50ms and 2s.
	MinBackoff, MaxBackoff time.Duration
}

const maxFrameLimit = 1 << 30 // largest MaxFrameSize accepted

// withDefaults returns cfg with defaults filled in, or why it is invalid.
func (cfg TCPConfig) withDefaults() (TCPConfig, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.DialTimeout, 5*time.Second)
	def(&cfg.WriteTimeout, 5*time.Second)
	def(&cfg.MinBackoff, 50*time.Millisecond)
	def(&cfg.MaxBackoff, 2*time.Second)
	if cfg.MaxFrameSize == 0 {
		cfg.MaxFrameSize = 16 << 20
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 4096
	}
	switch {
	case cfg.ID == 0:
		return cfg, errors.New("ID must be non-zero")
	case cfg.ListenAddr == "":
		return cfg, errors.New("ListenAddr is required")
	case cfg.MaxFrameSize < 0 || cfg.MaxFrameSize > maxFrameLimit:
		return cfg, fmt.Errorf("MaxFrameSize must be in [1, %d]", maxFrameLimit)
	case cfg.QueueSize < 0:
		return cfg, errors.New("QueueSize must not be negative")
	case cfg.DialTimeout < 0 || cfg.WriteTimeout < 0 || cfg.MinBackoff < 0:
		return cfg, errors.New("durations must not be negative")
	case cfg.MaxBackoff < cfg.MinBackoff:
		return cfg, errors.New("MaxBackoff must be at least MinBackoff")
	}
	return cfg, nil
}
