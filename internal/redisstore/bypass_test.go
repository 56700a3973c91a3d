package redisstore

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/redistest"
)

// TestBypassScriptsRunTwice runs the bypass scripts with an effect twice
// for one call, as go-redis does when a connection fails after the script
// was sent: the second run answers as the first did and changes nothing
// (see opKey). A consumption run twice is not refused as a used code, and
// a review run twice is not refused as a second review.
func TestBypassScriptsRunTwice(t *testing.T) {
	ctx := t.Context()
	s := New(redistest.Client(t, redistest.Start(t)))
	now := time.UnixMilli(1_790_000_000_000).UTC()
	b := mfa.Bypass{ID: "00000000000000b1", UserID: "alice", IssuedBy: "ops-alice", Reason: "lost phone", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.PutBypass(ctx, b, "h"); err != nil {
		t.Fatal(err)
	}
	b.UsedAt = now.Add(time.Minute)
	nonce := newNonce()
	for run := range 2 {
		got, ok, err := s.consumeBypass(ctx, "alice", "h", b.UsedAt, nonce)
		if err != nil || !ok {
			t.Fatalf("consumption, run %d: %v, %v; want consumed", run+1, ok, err)
		}
		if diff := cmp.Diff(b, got); diff != "" {
			t.Fatalf("consumption, run %d (-want +got):\n%s", run+1, diff)
		}
	}
	if _, ok, err := s.ConsumeBypass(ctx, "alice", "h", b.UsedAt); err != nil || ok {
		t.Fatalf("a new consumption after one run twice: %v, %v; want refused", ok, err)
	}

	b.ReviewedBy, b.ReviewNote, b.ReviewedAt = "ops-carol", "checked", now.Add(2*time.Minute)
	nonce = newNonce()
	for run := range 2 {
		got, err := s.reviewBypass(ctx, "alice", b.ID, bypassReview{By: "ops-carol", Note: "checked", MS: b.ReviewedAt.UnixMilli()}, nonce)
		if err != nil {
			t.Fatalf("review, run %d: %v", run+1, err)
		}
		if diff := cmp.Diff(b, got); diff != "" {
			t.Fatalf("review, run %d (-want +got):\n%s", run+1, diff)
		}
	}
	if _, err := s.ReviewBypass(ctx, b.ID, "ops-dave", "again", now); err == nil {
		t.Fatal("a new review after one run twice: accepted")
	}
}
