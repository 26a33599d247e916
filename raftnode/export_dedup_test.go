package raftnode

// SetDedupWindowForTest sets the dedup window and returns the old one.
func SetDedupWindowForTest(w uint64) uint64 {
	old := dedupWindow
	dedupWindow = w
	return old
}
