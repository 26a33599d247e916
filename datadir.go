package concord

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/concordkv/concord/internal/membership"
)

// memberFile is the name, in DataDir, of the file binding the data dir to
// its member.
const memberFile = "member"

// memberRecord is memberFile's content (JSON).
type memberRecord struct {
	// Name and ID are the member the data dir belongs to.
	Name string `json:"name"`
	ID   uint64 `json:"id"`
	// Cluster lists the names of the initial members, sorted.
	Cluster []string `json:"cluster"`
	// Left is set once the member left the cluster (Leave).
	Left bool `json:"left,omitempty"`
	// Removed is set once the member stopped on learning it was removed
	// from its cluster (ErrRemoved).
	Removed bool `json:"removed,omitempty"`
	// Gossip is a gossip member's way into its cluster (see
	// internal/membership.State).
	Gossip *membership.State `json:"gossip,omitempty"`
	// PeerAddr is the address the member's peers dial (its advertised
	// raft address), as of its last start.
	PeerAddr string `json:"peer_addr,omitempty"`
	// ClusterID is the static cluster's id (see clusterID); 0 for other
	// members and for data dirs made before concord had cluster ids.
	ClusterID uint64 `json:"cluster_id,omitempty"`
	// ClusterIDProvisional is set until the member is first ready: until
	// then its cluster id follows InitialCluster at every start, so that
	// a start with a wrong map, corrected later, leaves nothing behind.
	// Once the member has been in its cluster the id is fixed (later
	// starts take only addresses from InitialCluster).
	ClusterIDProvisional bool `json:"cluster_id_provisional,omitempty"`
	// Incarnation names the data dir's content: random, made with the
	// member file. A member that comes back with another (its data dir
	// wiped) rejoins as a learner first (raftnode/incarnation.go).
	Incarnation uint64 `json:"incarnation,omitempty"`
}

// checkPeerAddr refuses to reopen the data dir of a member of a cluster
// of several at another peer address than it last ran with: its peers
// know it by the old one, so it would be cut off without a word (concord
// does not move a member's address). A one-node cluster may move; the
// record follows addr.
func checkPeerAddr(dir string, rec *memberRecord, addr string) error {
	if rec.PeerAddr == addr {
		return nil
	}
	if rec.PeerAddr != "" && (len(rec.Cluster) > 1 || rec.Gossip != nil) {
		return fmt.Errorf("%w: member %q last ran at peer address %q, and its peers know it by that address; "+
			"reopening DataDir %q at %q would cut it off from them: reopen it at %q, or remove it (Leave) and join anew with an empty DataDir",
			ErrInvalidConfig, rec.Name, rec.PeerAddr, dir, addr, rec.PeerAddr)
	}
	cur, err := readMember(dir) // the file's latest, gossip state included
	if err != nil {
		return err
	}
	cur.PeerAddr = addr
	if err := writeMember(dir, cur); err != nil {
		return err
	}
	rec.PeerAddr = addr
	return nil
}

// claimDataDir binds c.DataDir to c's member on its first use (with a new
// raft id, see newMemberID) and, on later ones, refuses a config naming
// another member or other initial members: raft state must never be
// reused by a different member. It returns the member's record.
func claimDataDir(c *Config) (*memberRecord, error) {
	cluster := []string{c.Name}
	if len(c.InitialCluster) > 0 {
		cluster = cluster[:0]
		for name := range c.InitialCluster {
			cluster = append(cluster, name)
		}
		slices.Sort(cluster)
	}
	rec, err := readMember(c.DataDir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := refuseForeignDir(c.DataDir); err != nil {
			return nil, err
		}
		cid := clusterID(c.InitialCluster)
		rec = &memberRecord{Name: c.Name, ID: newMemberID(c), Cluster: cluster, ClusterID: cid, ClusterIDProvisional: cid != 0, Incarnation: randomID()}
		return rec, writeMember(c.DataDir, rec)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case rec.Name != c.Name:
		return nil, fmt.Errorf("%w: DataDir %q belongs to member %q, not to Name %q", ErrInvalidConfig, c.DataDir, rec.Name, c.Name)
	case rec.Left:
		return nil, fmt.Errorf("%w: member %q left its cluster; remove DataDir %q to join anew", ErrInvalidConfig, c.Name, c.DataDir)
	case rec.Removed:
		return nil, fmt.Errorf("%w: member %q was removed from its cluster; remove DataDir %q to join anew", ErrRemoved, c.Name, c.DataDir)
	case !slices.Equal(rec.Cluster, cluster):
		return nil, fmt.Errorf("%w: InitialCluster names members %q, but DataDir %q was created with %q: an existing cluster's membership does not change through InitialCluster", ErrInvalidConfig, cluster, c.DataDir, rec.Cluster)
	case rec.ID == 0:
		return nil, fmt.Errorf("%w: DataDir %q: member file has no raft id", ErrInvalidConfig, c.DataDir)
	}
	if rec.ClusterIDProvisional {
		rec.ClusterID = clusterID(c.InitialCluster)
	}
	if rec.Incarnation == 0 { // made before concord had incarnations
		inc := randomID()
		if err := updateMember(c.DataDir, func(r *memberRecord) { r.Incarnation = inc }); err != nil {
			return nil, err
		}
		rec.Incarnation = inc
	}
	return rec, nil
}

// fixClusterID records in the member file that the member's cluster id
// is id for good (see memberRecord.ClusterIDProvisional).
func fixClusterID(dir string, id uint64) error {
	return updateMember(dir, func(rec *memberRecord) {
		rec.ClusterID, rec.ClusterIDProvisional = id, false
	})
}

// saveGossipState records a gossip member's state in its member file.
func saveGossipState(dir string, st membership.State) error {
	return updateMember(dir, func(rec *memberRecord) { rec.Gossip = &st })
}

// updateMember applies edit to the member file in dir. A running node
// calls it under Node.memberMu: its gossip manager, its readiness and
// Leave may update the file at once.
func updateMember(dir string, edit func(*memberRecord)) error {
	rec, err := readMember(dir)
	if err != nil {
		return err
	}
	edit(rec)
	return writeMember(dir, rec)
}

// refuseForeignDir refuses a data dir without a member file that holds a
// concord database: it was not made by this version, or is damaged.
func refuseForeignDir(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "db")); err == nil {
		return fmt.Errorf("%w: DataDir %q holds a database but no %s file; refusing to guess its member", ErrInvalidConfig, dir, memberFile)
	}
	return nil
}

func readMember(dir string) (*memberRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, memberFile))
	if err != nil {
		return nil, err
	}
	rec := new(memberRecord)
	if err := json.Unmarshal(b, rec); err != nil {
		return nil, fmt.Errorf("concord: corrupt %s: %w", filepath.Join(dir, memberFile), err)
	}
	return rec, nil
}

// writeMember replaces the member file atomically and durably.
func writeMember(dir string, rec *memberRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, memberFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, memberFile))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// markRemoved records in the member file that the member was removed.
func markRemoved(dir string) error {
	return updateMember(dir, func(rec *memberRecord) { rec.Removed = true })
}

// markLeft records in the member file that the member left its cluster.
func markLeft(dir string) error {
	return updateMember(dir, func(rec *memberRecord) { rec.Left = true })
}
