package fsm

// LiveKeys returns the live keys as the readCache holds them for rev, or
// nil if it holds none for rev.
func (f *FSM) LiveKeys(rev int64) []string {
	t := f.reads.liveAt(rev)
	if t == nil {
		return nil
	}
	out := []string{}
	t.Ascend(func(k string) bool { out = append(out, k); return true })
	return out
}
