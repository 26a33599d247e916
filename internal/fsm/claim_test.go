package fsm_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
)

func claimReq(key, end, marker, val string, lease int64) *command.Request {
	return &command.Request{Request: &command.Request_Claim{Claim: &command.ClaimRequest{
		Key: []byte(key), RangeEnd: bs(end), Marker: []byte(marker), Value: []byte(val), Lease: lease,
	}}}
}

// TestClaimMarkerCountsAgainstLease: a claim's marker is attached to its
// lease and counts against the lease's limits: with the lease full, the
// claim is refused and changes nothing; with room, it takes one slot.
func TestClaimMarkerCountsAgainstLease(t *testing.T) {
	nd := startNode(t, false)
	mustOK(t, nd.propose(grant(1, time.Minute)))
	for b := 0; b < fsm.MaxLeaseKeys/256; b++ {
		txn := &command.TxnRequest{}
		for i := b * 256; i < (b+1)*256; i++ {
			txn.Success = append(txn.Success, &command.RequestOp{Request: &command.RequestOp_RequestPut{
				RequestPut: &command.PutRequest{Key: fmt.Appendf(nil, "k%05d", i), Value: []byte("v"), Lease: 1},
			}})
		}
		mustOK(t, nd.propose(&command.Request{Request: &command.Request_Txn{Txn: txn}}))
	}
	mustOK(t, nd.propose(put("q/1", "job")))
	before := dump(t, nd.n.DB())
	resp := nd.propose(claimReq("q/", "q0", "c/", "me", 1))
	if resp.GetCode() != command.Code_TOO_LARGE {
		t.Fatalf("claim with a full lease: %v (%s), want TOO_LARGE", resp.GetCode(), resp.GetError())
	}
	if after := dump(t, nd.n.DB()); after != before {
		t.Fatalf("a refused claim changed the state:\n%s\nwant\n%s", after, before)
	}
	mustOK(t, nd.propose(del("k00000", "")))
	resp = mustOK(t, nd.propose(claimReq("q/", "q0", "c/", "me", 1)))
	if kv := resp.GetClaim().GetMarker(); string(kv.GetKey()) != "c/1" || kv.GetLease() != 1 {
		t.Fatalf("claim: %v", resp.GetClaim())
	}
	if resp := nd.propose(leasedPut("over", "v", 1)); resp.GetCode() != command.Code_TOO_LARGE {
		t.Fatalf("put over the key count after the claim: %v", resp.GetCode())
	}
}

// TestClaimEvents: watchers hear a claim as two puts at one revision, the
// marker's and the touched key's (with its previous state), and a claim
// that finds nothing free as nothing.
func TestClaimEvents(t *testing.T) {
	nd := startNode(t, true)
	mustOK(t, nd.propose(put("q/a", "1")))
	mustOK(t, nd.propose(claimReq("q/", "q0", "c/", "x", 0)))
	mustOK(t, nd.propose(claimReq("q/", "q0", "c/", "y", 0)))
	resp := mustOK(t, nd.propose(&command.Request{Request: &command.Request_Add{Add: &command.AddRequest{Key: []byte("n"), Delta: 2}}}))
	if resp.GetAdd().GetValue() != 2 {
		t.Fatalf("add: %v", resp.GetAdd())
	}
	var got []string
	for _, c := range nd.commits() {
		for _, ev := range c.Events {
			got = append(got, formatEvent(ev))
		}
	}
	want := []string{
		"PUT q/a=1 c=2 m=2 v=1",
		"PUT c/a=x c=3 m=3 v=1",
		"PUT q/a=1 c=2 m=3 v=2 prev: q/a=1 c=2 m=2 v=1",
		"PUT n=2 c=4 m=4 v=1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func formatClaim(b *strings.Builder, in string, r *command.ClaimResponse) {
	if r.Kv == nil {
		fmt.Fprintf(b, "%snothing free\n", in)
		return
	}
	fmt.Fprintf(b, "%sclaimed: %s\n%smarker: %s\n", in, formatKV(r.Kv), in, formatKV(r.Marker))
}

func formatAdd(b *strings.Builder, in string, r *command.AddResponse) {
	fmt.Fprintf(b, "%svalue=%d %s\n", in, r.Value, formatKV(r.Kv))
}
