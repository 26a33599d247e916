package membership

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Phase is where a node stands on its way into a cluster, as it publishes
// it in its gossip metadata.
type Phase uint8

// Phases, in the order a node usually passes through them.
const (
	// PhaseFresh: no cluster yet; waiting for BootstrapExpect nodes.
	PhaseFresh Phase = iota + 1
	// PhaseProposing: the node proposes Meta.Set as the initial voters
	// under its round Meta.Round (it is the set's founder).
	PhaseProposing
	// PhaseAccepted: the node accepted the proposal (Meta.Founder,
	// Meta.Accepted) of Meta.Set and waits for the founder's decision.
	PhaseAccepted
	// PhaseJoining: the node waits to be added to cluster Meta.Cluster.
	PhaseJoining
	// PhaseMember: the node has raft state in cluster Meta.Cluster.
	PhaseMember
)

func (p Phase) String() string {
	switch p {
	case PhaseFresh:
		return "fresh"
	case PhaseProposing:
		return "proposing"
	case PhaseAccepted:
		return "accepted"
	case PhaseJoining:
		return "joining"
	case PhaseMember:
		return "member"
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// Meta is a node's gossip metadata.
type Meta struct {
	// ID is the node's raft id; PeerAddr its raft transport address.
	ID       uint64
	PeerAddr string
	// Expect is its BootstrapExpect (0: it never bootstraps by gossip).
	Expect int
	Phase  Phase
	// Cluster is the cluster it joins or belongs to (PhaseJoining,
	// PhaseMember).
	Cluster uint64
	// Round is its own latest founder round, in every phase: once a
	// founder publishes a round above the one an acceptor accepted, it
	// will never commit that one.
	Round uint64
	// Founder and Accepted name the proposal a PhaseAccepted node is bound
	// to; Set is the proposed (PhaseProposing) or accepted set of raft
	// ids, sorted.
	Founder, Accepted uint64
	Set               []uint64
}

const (
	metaVersion = 1
	// maxSet bounds a bootstrap set, so that Meta always fits memberlist's
	// 512-byte metadata.
	maxSet         = 9
	maxPeerAddrLen = 255
)

var errBadMeta = errors.New("membership: malformed node metadata")

// encode appends m's binary form to b.
func (m *Meta) encode(b []byte) []byte {
	b = append(b, metaVersion, byte(m.Phase))
	b = binary.BigEndian.AppendUint64(b, m.ID)
	b = binary.AppendUvarint(b, uint64(len(m.PeerAddr)))
	b = append(b, m.PeerAddr...)
	b = binary.AppendUvarint(b, uint64(m.Expect))
	b = binary.BigEndian.AppendUint64(b, m.Cluster)
	b = binary.AppendUvarint(b, m.Round)
	b = binary.BigEndian.AppendUint64(b, m.Founder)
	b = binary.AppendUvarint(b, m.Accepted)
	b = binary.AppendUvarint(b, uint64(len(m.Set)))
	for _, id := range m.Set {
		b = binary.BigEndian.AppendUint64(b, id)
	}
	return b
}

// decodeMeta parses metadata published by a peer; anything malformed,
// from another version or out of bounds is refused with errBadMeta.
func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	r := reader{b: b}
	if r.byte() != metaVersion {
		return m, fmt.Errorf("%w: unknown version", errBadMeta)
	}
	m.Phase = Phase(r.byte())
	m.ID = r.u64()
	m.PeerAddr = string(r.bytes(maxPeerAddrLen))
	m.Expect = int(r.uvarint(maxSet))
	m.Cluster = r.u64()
	m.Round = r.uvarint(1 << 62)
	m.Founder = r.u64()
	m.Accepted = r.uvarint(1 << 62)
	n := r.uvarint(maxSet)
	for range n {
		m.Set = append(m.Set, r.u64())
	}
	switch {
	case r.err != nil:
		return Meta{}, r.err
	case len(r.b) != 0:
		return Meta{}, fmt.Errorf("%w: %d trailing bytes", errBadMeta, len(r.b))
	case m.Phase < PhaseFresh || m.Phase > PhaseMember:
		return Meta{}, fmt.Errorf("%w: unknown phase %d", errBadMeta, m.Phase)
	case m.ID == 0:
		return Meta{}, fmt.Errorf("%w: raft id 0", errBadMeta)
	case !slices.IsSorted(m.Set) || len(slices.Compact(slices.Clone(m.Set))) != len(m.Set):
		return Meta{}, fmt.Errorf("%w: set not sorted and distinct", errBadMeta)
	}
	return m, nil
}

// reader decodes Meta fields, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated or out of range", errBadMeta)
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) uvarint(max uint64) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > max {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(max uint64) []byte {
	n := r.uvarint(max)
	if uint64(len(r.b)) < n {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
