package concord

import "testing"

// TestIncarnationKeptAndUpgraded: a data dir gets an incarnation when it
// is made and keeps it on every reopen; one made before concord had
// incarnations gets one on its next open, kept from then on.
func TestIncarnationKeptAndUpgraded(t *testing.T) {
	c := DefaultLocalConfig()
	c.Name, c.DataDir = "n1", t.TempDir()
	rec, err := claimDataDir(&c)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Incarnation == 0 {
		t.Fatal("new data dir without an incarnation")
	}
	again, err := claimDataDir(&c)
	if err != nil {
		t.Fatal(err)
	}
	if again.Incarnation != rec.Incarnation {
		t.Fatalf("reopen changed the incarnation: %x, was %x", again.Incarnation, rec.Incarnation)
	}
	old := *rec
	old.Incarnation = 0
	if err := writeMember(c.DataDir, &old); err != nil {
		t.Fatal(err)
	}
	up, err := claimDataDir(&c)
	if err != nil {
		t.Fatal(err)
	}
	if up.Incarnation == 0 {
		t.Fatal("old data dir still without an incarnation")
	}
	kept, err := readMember(c.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if kept.Incarnation != up.Incarnation {
		t.Fatalf("upgraded incarnation %x not persisted (file has %x)", up.Incarnation, kept.Incarnation)
	}
}
