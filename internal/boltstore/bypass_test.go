package boltstore

import (
	"testing"
	"time"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// TestSweepKeepsBypasses: bypasses are kept for review, whatever their
// expiry and use: Sweep deletes none.
func TestSweepKeepsBypasses(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	t0 := time.UnixMilli(1_790_000_000_000).UTC()
	used := mfa.Bypass{ID: "00000000000000b1", UserID: "alice", IssuedBy: "ops", Reason: "r", IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	unused := mfa.Bypass{ID: "00000000000000b2", UserID: "bob", IssuedBy: "ops", Reason: "r", IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	for _, b := range []mfa.Bypass{used, unused} {
		if err := s.PutBypass(ctx, b, "h-"+b.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := s.ConsumeBypass(ctx, "alice", "h-"+used.ID, t0); err != nil || !ok {
		t.Fatalf("ConsumeBypass: %v, %v", ok, err)
	}
	if _, err := s.Sweep(t0.Add(365*24*time.Hour), time.Hour); err != nil {
		t.Fatal(err)
	}
	bs, _, err := s.Bypasses(ctx, mfa.BypassQuery{Limit: 10})
	if err != nil || len(bs) != 2 {
		t.Fatalf("Bypasses after a sweep a year later: %d, %v; want both", len(bs), err)
	}
}
