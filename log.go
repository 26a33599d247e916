package concord

// Attribute keys of the node's log records (raftnode adds raft_id and
// component to raft's and badger's).
const (
	logKeyMember   = "member"
	logKeyLeader   = "leader"
	logKeyRevision = "revision"
)
