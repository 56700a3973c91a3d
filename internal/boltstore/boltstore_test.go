package boltstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/mfa/storetest"
)

func newStore(t *testing.T) *Store {
	s, err := Open(filepath.Join(t.TempDir(), "secondfactor.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) mfa.Store { return newStore(t) })
}

func TestOpenTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secondfactor.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	}()
	if _, err := Open(path); err == nil {
		t.Fatal("a second Open of a file in use succeeded")
	}
}

// TestSweep checks what Sweep deletes, at each boundary: a record goes
// from the instant it expires, and failures FailureTTL after the last one.
func TestSweep(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	t0 := time.UnixMilli(1_790_000_000_000).UTC()
	lim := mfa.Limits{MaxFailures: 10, BaseLockout: 30 * time.Second, MaxLockout: time.Hour, FailureTTL: time.Hour}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateEnrollment(ctx, mfa.Enrollment{TokenHash: "h", UserID: "alice", ExpiresAt: t0.Add(time.Minute)}))
	must(s.PutActivationCode(ctx, "alice", "c", t0.Add(time.Minute)))
	if _, err := s.StartAttempt(ctx, "mallory-guessed-this", t0, lim); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		now  time.Time
		want int
	}{
		{t0, 0},
		{t0.Add(time.Minute - time.Millisecond), 0},
		{t0.Add(time.Minute), 2},                       // alice's session, then alice with no code left
		{t0.Add(lim.FailureTTL - time.Millisecond), 0}, // mallory's failure still counts
		{t0.Add(lim.FailureTTL), 1},                    // and now it is forgotten
		{t0.Add(lim.FailureTTL + time.Hour), 0},
	} {
		n, err := s.Sweep(c.now, lim.FailureTTL)
		must(err)
		if n != c.want {
			t.Fatalf("Sweep at t0+%v: deleted %d records, want %d", c.now.Sub(t0), n, c.want)
		}
	}
}

func TestTamper(t *testing.T) {
	storetest.RunTamper(t, func(t *testing.T) mfa.Store { return newStore(t) },
		func(ctx context.Context, s mfa.Store, userID string, seq uint64, edit func(*mfa.Event)) error {
			if edit == nil {
				return RemoveEvent(ctx, s.(*Store), userID, seq)
			}
			return TamperEvent(ctx, s.(*Store), userID, seq, edit)
		})
}

// TestSweepKeepsUser checks that Sweep drops what expired from a user
// record that it keeps, and only that.
func TestSweepKeepsUser(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	t0 := time.UnixMilli(1_790_000_000_000).UTC()
	f := mfa.Factor{ID: "00000000000000a1", Kind: mfa.KindTOTP, CreatedAt: t0}
	if err := s.PutPendingFactor(ctx, "alice", f, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutActivationCode(ctx, "alice", "c", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := s.Sweep(t0.Add(time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("Sweep: deleted %d records, want 0", n)
	}
	var got *userRec
	if err := s.db.View(func(tx *bolt.Tx) error {
		got, err = getUser(tx, "alice")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := &userRec{Activation: &activationRec{Hash: "c", ExpiresAt: t0.Add(time.Hour)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("alice's record after Sweep (-want +got):\n%s", diff)
	}
}

// BenchmarkVerifyTOTPPath measures the store's side of an accepted
// VerifyTOTP: StartAttempt and AcceptTOTPStep, then, as the service does
// since issue 7, the audit event. Each is a write transaction, one fsync
// when alone; the nosync cases leave the fsync out, to see the CPU cost
// without the disk's noise.
func BenchmarkVerifyTOTPPath(b *testing.B) {
	ctx := b.Context()
	t0 := time.UnixMilli(1_790_000_000_000).UTC()
	lim := mfa.Limits{MaxFailures: 1 << 30, BaseLockout: time.Second, MaxLockout: time.Second, FailureTTL: time.Hour}
	for _, c := range []struct {
		name             string
		withEvent, fsync bool
	}{
		{"attempt+step", false, true},
		{"attempt+step+event", true, true},
		{"nosync/attempt+step", false, false},
		{"nosync/attempt+step+event", true, false},
	} {
		withEvent := c.withEvent
		b.Run(c.name, func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "secondfactor.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			s.db.NoSync = !c.fsync
			f := mfa.Factor{ID: "00000000000000a1", Kind: mfa.KindTOTP, CreatedAt: t0, TOTP: &mfa.TOTP{Digits: 6, Period: 30}}
			if err := s.CreateEnrollment(ctx, mfa.Enrollment{TokenHash: "h", UserID: "alice", ExpiresAt: t0.Add(time.Hour)}); err != nil {
				b.Fatal(err)
			}
			if err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", Factor: &f, TokenHash: "h", Now: t0}); err != nil {
				b.Fatal(err)
			}
			step := int64(0)
			for b.Loop() {
				step++
				a, err := s.StartAttempt(ctx, "alice", t0, lim)
				if err != nil {
					b.Fatal(err)
				}
				if ok, err := s.AcceptTOTPStep(ctx, "alice", f.ID, step, a.Epoch, t0); err != nil || !ok {
					b.Fatalf("step %d: %v, %v", step, ok, err)
				}
				if withEvent {
					if _, err := s.AppendEvent(ctx, mfa.Event{UserID: "alice", Time: t0, Action: mfa.ActionVerifyTOTP, Result: "accepted", FactorID: f.ID}); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
