package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// The cases of the administrators' methods and of epochs: ResetUser,
// DeleteFactor, UnlockUser, SuspendFactor, and what an epoch ends.

// wantEpoch fails unless user's epoch is want, in User and in an Attempt.
func wantEpoch(t *testing.T, s mfa.Store, user string, want uint64) {
	t.Helper()
	if got := getUser(t, s, user).Epoch; got != want {
		t.Fatalf("User(%s).Epoch = %d, want %d", user, got, want)
	}
	if got := attempt(t, s, user, t0).Epoch; got != want {
		t.Fatalf("StartAttempt(%s).Epoch = %d, want %d", user, got, want)
	}
}

// testEpoch: a user's epoch starts at 0, even for a user the store has
// never seen, and only ResetUser and DeleteFactor increment it, each by 1.
func testEpoch(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	wantEpoch(t, s, "nobody", 0)
	n, err := s.ResetUser(ctx, "nobody", t0)
	must(t, err)
	if n != 0 {
		t.Fatalf("ResetUser of an unknown user: removed %d, want 0", n)
	}
	wantEpoch(t, s, "nobody", 1)
	_, err = s.ResetUser(ctx, "nobody", t0)
	must(t, err)
	wantEpoch(t, s, "nobody", 2)

	enroll(t, s, "alice", "00000000000000a1", 1)
	enroll(t, s, "alice", "00000000000000a2", 1)
	must(t, addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c1", "cred-1", 0), "r1"))
	wantEpoch(t, s, "alice", 0) // confirmations do not change it
	must(t, s.DeleteFactor(ctx, "alice", "00000000000000a1", t0))
	wantEpoch(t, s, "alice", 1)
	wantErr(t, "DeleteFactor of a factor already deleted", s.DeleteFactor(ctx, "alice", "00000000000000a1", t0), mfa.ErrNotFound)
	wantEpoch(t, s, "alice", 1) // a refused delete does not
	must(t, s.SuspendFactor(ctx, "alice", "00000000000000a2", t0))
	must(t, s.UnlockUser(ctx, "alice"))
	if ok, _, err := s.ConsumeRecoveryCode(ctx, "alice", "r1", t0); err != nil || !ok {
		t.Fatalf("ConsumeRecoveryCode: %v, %v", ok, err)
	}
	wantEpoch(t, s, "alice", 1) // nor do suspensions, unlocks and successes
	n, err = s.ResetUser(ctx, "alice", t0)
	must(t, err)
	if n != 2 {
		t.Fatalf("ResetUser: removed %d, want 2", n)
	}
	wantEpoch(t, s, "alice", 2)
	wantEpoch(t, s, "nobody", 2) // users apart
}

// testResetUser: a reset removes every factor, pending factor, recovery
// code, the activation code, the failures and the last verification, and
// frees the credential IDs; other users keep everything.
func testResetUser(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	for _, u := range []string{"alice", "bob"} {
		enroll(t, s, u, "00000000000000a1", 100)
		must(t, addWebAuthn(t, s, u, webauthnFactor("00000000000000c1", "cred-"+u, 5), "r1", "r2"))
		must(t, s.PutPendingFactor(ctx, u, totpFactor("00000000000000a2"), t0.Add(time.Hour)))
		must(t, s.PutActivationCode(ctx, u, "code", t0.Add(time.Hour)))
		if ok, err := s.AcceptTOTPStep(ctx, u, "00000000000000a1", 101, 0, t0); err != nil || !ok {
			t.Fatalf("AcceptTOTPStep: %v, %v", ok, err)
		}
		wantEvaluated(t, s, u, t0.Add(time.Second), limits.MaxFailures, limits) // locked now
	}
	bob := getUser(t, s, "bob")
	n, err := s.ResetUser(ctx, "alice", t0.Add(2*time.Second))
	must(t, err)
	if n != 2 {
		t.Fatalf("ResetUser: removed %d factors, want 2", n)
	}
	want := mfa.User{ID: "alice", Epoch: 1}
	if diff := cmp.Diff(want, getUser(t, s, "alice"), equateEmpty); diff != "" {
		t.Fatalf("user after a reset (-want +got):\n%s", diff)
	}
	_, err = s.PendingFactor(ctx, "alice", "00000000000000a2", t0)
	wantErr(t, "a pending factor after a reset", err, mfa.ErrNotFound)
	e := session("alice", "after", true)
	e.NeedsActivation, e.Epoch = true, 1
	must(t, s.CreateEnrollment(ctx, e))
	wantErr(t, "the activation code after a reset", s.ActivateEnrollment(ctx, "after", "alice", "code", t0), mfa.ErrWrongCode)
	// The failures are forgotten: the back-off starts again.
	wantEvaluated(t, s, "alice", t0.Add(2*time.Second), limits.MaxFailures, limits)
	wantLocked(t, s, "alice", t0.Add(2*time.Second), t0.Add(2*time.Second+limits.BaseLockout), limits)
	// The credential ID is free: another user registers it.
	must(t, addWebAuthn(t, s, "carol", webauthnFactor("00000000000000c1", "cred-alice", 0)))

	if diff := cmp.Diff(bob, getUser(t, s, "bob"), equateEmpty); diff != "" {
		t.Fatalf("another user after a reset (-before +after):\n%s", diff)
	}
	wantPending(t, s, "bob", totpFactor("00000000000000a2"), t0)
	err = addWebAuthn(t, s, "carol", webauthnFactor("00000000000000c2", "cred-bob", 0))
	wantErr(t, "another user's credential after a reset", err, mfa.ErrDuplicate)
}

// testDeleteFactor: a delete removes one factor, frees its credential ID,
// ends the pending factors and forgets the last verification; the recovery
// codes go with the last factor.
func testDeleteFactor(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	tf, wf := "00000000000000a1", "00000000000000c1"
	enroll(t, s, "alice", tf, 100)
	must(t, addWebAuthn(t, s, "alice", webauthnFactor(wf, "cred-1", 5), "r1", "r2"))
	must(t, s.PutPendingFactor(ctx, "alice", totpFactor("00000000000000a2"), t0.Add(time.Hour)))
	enroll(t, s, "bob", wf, 1)
	if ok, err := s.AcceptTOTPStep(ctx, "alice", tf, 101, 0, t0); err != nil || !ok {
		t.Fatalf("AcceptTOTPStep: %v, %v", ok, err)
	}
	before := getUser(t, s, "alice")
	for _, c := range []struct{ user, factor string }{{"alice", "00000000000000ff"}, {"nobody", tf}, {"bob", tf}} {
		err := s.DeleteFactor(ctx, c.user, c.factor, t0)
		wantErr(t, fmt.Sprintf("DeleteFactor(%s, %s)", c.user, c.factor), err, mfa.ErrNotFound)
	}
	if diff := cmp.Diff(before, getUser(t, s, "alice"), equateEmpty); diff != "" {
		t.Fatalf("a refused delete changed the user (-before +after):\n%s", diff)
	}

	must(t, s.DeleteFactor(ctx, "alice", wf, t0))
	u := getUser(t, s, "alice")
	if len(u.Factors) != 1 || u.Factors[0].ID != tf || u.RecoveryCodes != 2 || u.Epoch != 1 || !u.LastVerifiedAt.IsZero() {
		t.Fatalf("after deleting one of two factors: %+v, want the TOTP factor, 2 recovery codes, epoch 1, no last verification", u)
	}
	_, err := s.PendingFactor(ctx, "alice", "00000000000000a2", t0)
	wantErr(t, "a pending factor put before a delete", err, mfa.ErrNotFound)
	must(t, addWebAuthn(t, s, "carol", webauthnFactor(wf, "cred-1", 0)))
	if u := getUser(t, s, "bob"); len(u.Factors) != 1 || u.Epoch != 0 {
		t.Fatalf("bob after alice's delete of a factor ID he has too: %+v", u)
	}

	// A pending factor put after the delete is there.
	must(t, s.PutPendingFactor(ctx, "alice", totpFactor("00000000000000a3"), t0.Add(time.Hour)))
	wantPending(t, s, "alice", totpFactor("00000000000000a3"), t0)

	must(t, s.DeleteFactor(ctx, "alice", tf, t0))
	u = getUser(t, s, "alice")
	if len(u.Factors) != 0 || u.RecoveryCodes != 0 || u.Epoch != 2 {
		t.Fatalf("after deleting the last factor: %+v, want no factor, no recovery code, epoch 2", u)
	}
	if ok, remaining, err := s.ConsumeRecoveryCode(ctx, "alice", "r1", t0); err != nil || ok || remaining != 0 {
		t.Fatalf("a recovery code after the last factor went: %v, %d left, %v; want false, 0", ok, remaining, err)
	}
	// The deleted TOTP factor accepts nothing, under any epoch.
	for epoch := range uint64(3) {
		if ok, err := s.AcceptTOTPStep(ctx, "alice", tf, 200, epoch, t0); err != nil || ok {
			t.Fatalf("AcceptTOTPStep of a deleted factor, epoch %d: %v, %v", epoch, ok, err)
		}
	}
}

// testUnlockUser: an unlock forgets the failures, the lockouts and the
// lock, and nothing else.
func testUnlockUser(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	enroll(t, s, "alice", "00000000000000a1", 100)
	if ok, err := s.AcceptTOTPStep(ctx, "alice", "00000000000000a1", 101, 0, t0); err != nil || !ok {
		t.Fatalf("AcceptTOTPStep: %v, %v", ok, err)
	}
	// Locked twice: the next lock would be the third back-off.
	wantEvaluated(t, s, "alice", t0, limits.MaxFailures, limits)
	lockEnd := t0.Add(limits.BaseLockout)
	wantEvaluated(t, s, "alice", lockEnd, 1, limits)
	now := lockEnd.Add(time.Second)
	before := getUser(t, s, "alice")
	if !before.Locked(now) {
		t.Fatalf("alice not locked at %v: %+v", now, before)
	}

	must(t, s.UnlockUser(ctx, "alice"))
	want := before
	want.LockedUntil = time.Time{}
	if diff := cmp.Diff(want, getUser(t, s, "alice"), equateEmpty); diff != "" {
		t.Fatalf("user after an unlock (-want +got):\n%s", diff)
	}
	wantEvaluated(t, s, "alice", now, limits.MaxFailures, limits)
	wantLocked(t, s, "alice", now, now.Add(limits.BaseLockout), limits)

	// A user with nothing to unlock, known or not, is unchanged.
	must(t, s.UnlockUser(ctx, "nobody"))
	if diff := cmp.Diff(mfa.User{ID: "nobody"}, getUser(t, s, "nobody"), equateEmpty); diff != "" {
		t.Fatalf("an unknown user after an unlock (-want +got):\n%s", diff)
	}
	enroll(t, s, "bob", "00000000000000a1", 100)
	bob := getUser(t, s, "bob")
	must(t, s.UnlockUser(ctx, "bob"))
	if diff := cmp.Diff(bob, getUser(t, s, "bob"), equateEmpty); diff != "" {
		t.Fatalf("a user without failures after an unlock (-before +after):\n%s", diff)
	}
}

// testSuspendFactor: a suspended factor of any kind verifies nothing, and
// keeps its step and count for when the suspension is lifted.
func testSuspendFactor(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	tf, wf := "00000000000000a1", "00000000000000c1"
	enroll(t, s, "alice", tf, 100)
	must(t, addWebAuthn(t, s, "alice", webauthnFactor(wf, "cred-1", 5)))
	wantErr(t, "SuspendFactor of no factor", s.SuspendFactor(ctx, "alice", "00000000000000ff", t0), mfa.ErrNotFound)
	wantErr(t, "SuspendFactor of an unknown user", s.SuspendFactor(ctx, "nobody", tf, t0), mfa.ErrNotFound)

	at := t0.Add(time.Minute)
	must(t, s.SuspendFactor(ctx, "alice", tf, at))
	must(t, s.SuspendFactor(ctx, "alice", wf, at.Add(time.Second)))
	u := getUser(t, s, "alice")
	if !u.Factors[0].SuspendedAt.Equal(at) || !u.Factors[1].SuspendedAt.Equal(at.Add(time.Second)) {
		t.Fatalf("suspended factors: %+v", u.Factors)
	}
	if diff := cmp.Diff(u.Factors, attempt(t, s, "alice", at).Factors); diff != "" {
		t.Fatalf("StartAttempt's factors, suspended (-User +Attempt):\n%s", diff)
	}
	if ok, err := s.AcceptTOTPStep(ctx, "alice", tf, 101, 0, at); err != nil || ok {
		t.Fatalf("AcceptTOTPStep of a suspended factor: %v, %v; want false", ok, err)
	}
	if o, err := s.AcceptAssertion(ctx, "alice", wf, mfa.AssertionUse{SignCount: 6}, 0, at); err != nil || o != mfa.AssertionRefused {
		t.Fatalf("AcceptAssertion of a suspended factor: %v, %v; want refused", o, err)
	}
	if diff := cmp.Diff(u, getUser(t, s, "alice"), equateEmpty); diff != "" {
		t.Fatalf("refused verifications changed the user (-before +after):\n%s", diff)
	}

	must(t, s.SuspendFactor(ctx, "alice", tf, time.Time{}))
	must(t, s.SuspendFactor(ctx, "alice", wf, time.Time{}))
	for _, f := range getUser(t, s, "alice").Factors {
		if !f.SuspendedAt.IsZero() {
			t.Fatalf("factor %s after the suspension was lifted: suspended at %v", f.ID, f.SuspendedAt)
		}
	}
	if ok, err := s.AcceptTOTPStep(ctx, "alice", tf, 101, 0, at); err != nil || !ok {
		t.Fatalf("AcceptTOTPStep after the suspension was lifted: %v, %v; want true", ok, err)
	}
	if o, err := s.AcceptAssertion(ctx, "alice", wf, mfa.AssertionUse{SignCount: 6}, 0, at); err != nil || o != mfa.AssertionAccepted {
		t.Fatalf("AcceptAssertion after the suspension was lifted: %v, %v; want accepted", o, err)
	}
	// Lifting a suspension that is not there is no error.
	must(t, s.SuspendFactor(ctx, "alice", tf, time.Time{}))
}

// testEpochEnds: whatever was begun before a reset or a delete (a session
// read, activated, completed by a confirmation or by new recovery codes; a
// TOTP or WebAuthn verification) is refused after it, as ErrNotFound or as
// a refusal that changes nothing; begun again under the new epoch, it
// succeeds.
func testEpochEnds(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	tf, wf, spare := "00000000000000a1", "00000000000000c1", "00000000000000b1"
	for i, change := range []struct {
		name string
		fn   func(user string) error
	}{
		{"reset", func(user string) error { _, err := s.ResetUser(ctx, user, t0); return err }},
		{"delete", func(user string) error { return s.DeleteFactor(ctx, user, spare, t0) }},
	} {
		t.Run(change.name, func(t *testing.T) {
			u := fmt.Sprintf("user%d", i)
			enroll(t, s, u, tf, 100)
			enroll(t, s, u, spare, 100)
			must(t, addWebAuthn(t, s, u, webauthnFactor(wf, "cred-"+u, 5), "r1"))
			att := attempt(t, s, u, t0)
			act := session(u, u+"-act", false)
			act.NeedsActivation = true
			must(t, s.CreateEnrollment(ctx, act))
			must(t, s.PutActivationCode(ctx, u, "code", t0.Add(time.Hour)))
			for _, h := range []string{"-read", "-confirm", "-key", "-codes"} {
				must(t, s.CreateEnrollment(ctx, session(u, u+h, false)))
			}

			must(t, change.fn(u))

			_, err := s.Enrollment(ctx, u+"-read", t0)
			wantErr(t, "Enrollment", err, mfa.ErrNotFound)
			// The code is still there after a delete: the session alone refuses.
			must(t, s.PutActivationCode(ctx, u, "code", t0.Add(time.Hour)))
			wantErr(t, "ActivateEnrollment", s.ActivateEnrollment(ctx, u+"-act", u, "code", t0), mfa.ErrNotFound)
			// The pending factor is put after the change: the session alone refuses.
			must(t, s.PutPendingFactor(ctx, u, totpFactor("00000000000000a2"), t0.Add(time.Hour)))
			err = s.ConfirmFactor(ctx, mfa.Confirmation{UserID: u, FactorID: "00000000000000a2", TokenHash: u + "-confirm", Step: 1, Now: t0})
			wantErr(t, "ConfirmFactor", err, mfa.ErrNotFound)
			key := webauthnFactor("00000000000000c2", "cred-new-"+u, 0)
			err = s.ConfirmFactor(ctx, mfa.Confirmation{UserID: u, FactorID: key.ID, Factor: &key, TokenHash: u + "-key", Now: t0})
			wantErr(t, "ConfirmFactor of a credential", err, mfa.ErrNotFound)
			wantErr(t, "ReplaceRecoveryCodes", s.ReplaceRecoveryCodes(ctx, u+"-codes", u, []string{"n1"}, t0), mfa.ErrNotFound)
			before := getUser(t, s, u)
			if ok, err := s.AcceptTOTPStep(ctx, u, tf, 101, att.Epoch, t0); err != nil || ok {
				t.Fatalf("AcceptTOTPStep of the epoch before: %v, %v; want false", ok, err)
			}
			// Refused, not taken for a clone: a count that went backwards
			// under an old epoch suspends nothing.
			for _, count := range []uint32{6, 4} {
				if o, err := s.AcceptAssertion(ctx, u, wf, mfa.AssertionUse{SignCount: count}, att.Epoch, t0); err != nil || o != mfa.AssertionRefused {
					t.Fatalf("AcceptAssertion(sign count %d) of the epoch before: %v, %v; want refused", count, o, err)
				}
			}
			after := getUser(t, s, u)
			if diff := cmp.Diff(before, after, equateEmpty); diff != "" {
				t.Fatalf("refused calls changed the user (-before +after):\n%s", diff)
			}
			if after.Epoch != att.Epoch+1 {
				t.Fatalf("epoch %d after the %s, want %d", after.Epoch, change.name, att.Epoch+1)
			}
			// The refused credential ID is free.
			must(t, addWebAuthn(t, s, "other-"+u, webauthnFactor("00000000000000c1", "cred-new-"+u, 0)))

			// Begun again under the new epoch, each succeeds.
			e := session(u, u+"-again", false)
			e.Epoch = after.Epoch
			must(t, s.CreateEnrollment(ctx, e))
			wantSession(t, s, e, t0)
			if change.name == "reset" {
				must(t, s.ConfirmFactor(ctx, mfa.Confirmation{UserID: u, FactorID: "00000000000000a2", TokenHash: e.TokenHash, Step: 1, Now: t0}))
				return
			}
			must(t, s.ReplaceRecoveryCodes(ctx, e.TokenHash, u, []string{"n1"}, t0))
			if ok, err := s.AcceptTOTPStep(ctx, u, tf, 101, after.Epoch, t0); err != nil || !ok {
				t.Fatalf("AcceptTOTPStep of the new epoch: %v, %v; want true", ok, err)
			}
			if o, err := s.AcceptAssertion(ctx, u, wf, mfa.AssertionUse{SignCount: 6}, after.Epoch, t0); err != nil || o != mfa.AssertionAccepted {
				t.Fatalf("AcceptAssertion of the new epoch: %v, %v; want accepted", o, err)
			}
		})
	}
}

// testConcurrentReset races confirmations, TOTP steps and assertions, all
// begun under epoch 0, with a reset: each either succeeded before the reset
// or was refused. So the reset removed the two factors and every factor
// confirmed, and none is left.
func testConcurrentReset(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	const n = 10
	tf, wf := "00000000000000a1", "00000000000000c1"
	enroll(t, s, "alice", tf, 0)
	must(t, addWebAuthn(t, s, "alice", webauthnFactor(wf, "cred-1", 0), "r1"))
	epoch := attempt(t, s, "alice", t0).Epoch
	for i := range n {
		must(t, s.CreateEnrollment(ctx, session("alice", fmt.Sprintf("h%d", i), false)))
		must(t, s.PutPendingFactor(ctx, "alice", totpFactor(fmt.Sprintf("%016x", 0x100+i)), t0.Add(time.Hour)))
	}
	var (
		mu        sync.Mutex
		confirmed int
		removed   int
	)
	race(t, 3*n+1, func(i int) (bool, error) {
		switch k := i % n; {
		case i == 3*n:
			r, err := s.ResetUser(ctx, "alice", t0)
			mu.Lock()
			removed = r
			mu.Unlock()
			return false, err
		case i < n:
			err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: fmt.Sprintf("%016x", 0x100+k), TokenHash: fmt.Sprintf("h%d", k), Step: 1, Now: t0})
			if errors.Is(err, mfa.ErrNotFound) {
				return false, nil
			}
			mu.Lock()
			confirmed++
			mu.Unlock()
			return false, err
		case i < 2*n:
			_, err := s.AcceptTOTPStep(ctx, "alice", tf, int64(k+1), epoch, t0)
			return false, err
		default:
			_, err := s.AcceptAssertion(ctx, "alice", wf, mfa.AssertionUse{SignCount: uint32(k + 1)}, epoch, t0)
			return false, err
		}
	})
	u := getUser(t, s, "alice")
	if len(u.Factors) != 0 || u.RecoveryCodes != 0 || u.Epoch != epoch+1 {
		t.Fatalf("after the race: %+v; want no factor, no recovery code, epoch %d", u, epoch+1)
	}
	if removed != 2+confirmed {
		t.Fatalf("the reset removed %d factors; want the 2 enrolled and the %d confirmed", removed, confirmed)
	}
	for i := range n {
		_, err := s.Enrollment(ctx, fmt.Sprintf("h%d", i), t0)
		wantErr(t, "a session after the race", err, mfa.ErrNotFound)
	}
}
