package concord

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/concordkv/concord/raftnode"
)

// TestErrorMapping: how errors of the raft peer reach callers.
func TestErrorMapping(t *testing.T) {
	n := &Node{rn: nil}
	lost := fmt.Errorf("wrapped: %w", raftnode.ErrAppliedBySnapshot)
	if err := n.raftErr(lost); !errors.Is(err, ErrResultUnknown) || !errors.Is(err, raftnode.ErrAppliedBySnapshot) {
		t.Fatalf("applied by snapshot -> %v", err)
	}
	if err := ctxErr(context.DeadlineExceeded); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline -> %v", err)
	}
	if err := ctxErr(ctxErr(context.DeadlineExceeded)); err.Error() != "concord: timed out: context deadline exceeded" {
		t.Fatalf("deadline wrapped twice: %v", err)
	}
	if err := ctxErr(context.Canceled); err != context.Canceled {
		t.Fatalf("canceled -> %v", err)
	}
}

func TestMemberID(t *testing.T) {
	if MemberID("a") == MemberID("b") || MemberID("a") != MemberID("a") || MemberID("") == 0 {
		t.Fatal("memberID is not a stable, distinct, non-zero hash")
	}
}

func TestPrefixEnd(t *testing.T) {
	for in, want := range map[string]string{"a": "b", "a\xff": "b", "\xff\xff": "\x00", "ab": "ac"} {
		if got := string(prefixEnd([]byte(in))); got != want {
			t.Errorf("prefixEnd(%q) = %q, want %q", in, got, want)
		}
	}
}
