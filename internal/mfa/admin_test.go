package mfa_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// TestAdminRefusals: every administrator's change needs a valid user, a
// reason and, for a factor, a factor of the user in the state the change
// needs; a refused change changes nothing and leaves no event.
func TestAdminRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	u := e.enrollTOTP(t, "dr-admin")
	before := e.events(t, u.userID)
	const unknownFactor = "0123456789abcdef"
	if u.factorID == unknownFactor {
		t.Fatal("precondition: the factor has the unknown factor's ID")
	}
	type call func(ctx context.Context, userID, factorID, reason string) error
	reset := func(ctx context.Context, userID, _, reason string) error {
		_, err := e.svc.ResetUser(ctx, userID, reason)
		return err
	}
	unlock := func(ctx context.Context, userID, _, reason string) error {
		return e.svc.UnlockUser(ctx, userID, reason)
	}
	issue := func(ctx context.Context, userID, _, reason string) error {
		_, _, err := e.svc.IssueActivationCode(ctx, userID, reason)
		return err
	}
	calls := []struct {
		name string
		call call
	}{
		{"ResetUser", reset}, {"DeleteFactor", e.svc.DeleteFactor}, {"UnlockUser", unlock},
		{"EnableFactor", e.svc.EnableFactor}, {"IssueActivationCode", issue},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			for _, tt := range []struct {
				name   string
				userID string
				reason string
				want   outcome
			}{
				{"no reason", u.userID, "", badField("reason")},
				{"a reason with a line break", u.userID, "lost\nphone", badField("reason")},
				{"too long a reason", u.userID, strings.Repeat("é", mfa.MaxReason/2+1), badField("reason")},
				{"a reason that is not UTF-8", u.userID, "lost \xff", badField("reason")},
				{"no user", "", "lost phone", badField("user_id")},
				{"a user id with a space", "dr admin", "lost phone", badField("user_id")},
			} {
				err := c.call(asAdmin(t), tt.userID, u.factorID, tt.reason)
				if diff := cmp.Diff(tt.want, outcomeOf(t, err)); diff != "" {
					t.Errorf("%s mismatch (-want +got):\n%s", tt.name, diff)
				}
			}
		})
	}
	for _, tt := range []struct {
		name     string
		call     call
		factorID string
		want     outcome
	}{
		{"DeleteFactor of a malformed factor id", e.svc.DeleteFactor, "xyz", badField("factor_id")},
		{"DeleteFactor of a factor the user does not have", e.svc.DeleteFactor, unknownFactor, refused(mfa.ReasonFactorNotFound)},
		{"EnableFactor of a malformed factor id", e.svc.EnableFactor, "XYZ", badField("factor_id")},
		{"EnableFactor of a factor the user does not have", e.svc.EnableFactor, unknownFactor, refused(mfa.ReasonFactorNotFound)},
		{"EnableFactor of a factor that is not suspended", e.svc.EnableFactor, u.factorID, refused(mfa.ReasonFactorNotSuspended)},
	} {
		err := tt.call(asAdmin(t), u.userID, tt.factorID, "lost phone")
		if diff := cmp.Diff(tt.want, outcomeOf(t, err)); diff != "" {
			t.Errorf("%s mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
	if got := e.user(t, u.userID); len(got.Factors) != 1 || got.Epoch != 0 {
		t.Errorf("after refused changes: %d factors, epoch %d; want 1, 0", len(got.Factors), got.Epoch)
	}
	if diff := cmp.Diff(auditedOf(before), auditedOf(e.events(t, u.userID))); diff != "" {
		t.Errorf("refused changes left events (-before +after):\n%s", diff)
	}
}

// TestResetUser: a reset removes every factor, recovery code and lock;
// nothing the user had works after it, and the user enrols again as at
// first.
func TestResetUser(t *testing.T) {
	e := newEnv(t, envOptions{webauthn: true})
	u := e.enrollTOTP(t, "dr-reset")
	if r := e.verify(t, u.userID, e.code(t, u, 0)); r.Verdict != mfa.Accepted {
		t.Fatalf("verification: %+v", r)
	}
	key, _, _ := e.registerKey(t, e.createSession(t, u.userID, mfa.ProofExistingFactor).Token.Reveal())
	e.clock.Advance(period)

	removed, err := e.svc.ResetUser(asAdmin(t), u.userID, "phone and key stolen")
	if err != nil {
		t.Fatal(err)
	}
	if removed != 2 {
		t.Errorf("removed %d factors, want 2", removed)
	}
	got := e.user(t, u.userID)
	if len(got.Factors) != 0 || got.RecoveryCodes != 0 || got.Epoch != 1 {
		t.Errorf("after the reset: %d factors, %d recovery codes, epoch %d; want 0, 0, 1", len(got.Factors), got.RecoveryCodes, got.Epoch)
	}
	if r := e.verify(t, u.userID, e.code(t, u, 0)); r != rejected {
		t.Errorf("the old TOTP code: %+v, want rejected", r)
	}
	if r, err := e.svc.VerifyRecoveryCode(t.Context(), u.userID, u.recovery[0].Reveal(), mfa.Client{}); err != nil || r.Verdict != mfa.Rejected {
		t.Errorf("an old recovery code: %+v, %v; want rejected", r, err)
	}
	if r := e.login(t, u.userID, key); r != rejected {
		t.Errorf("the old key: %+v, want rejected", r)
	}
	_, err = e.svc.CreateEnrollment(t.Context(), mfa.EnrollmentRequest{UserID: u.userID, Proof: mfa.ProofExistingFactor})
	if diff := cmp.Diff(refused(mfa.ReasonNotEnrolled), outcomeOf(t, err)); diff != "" {
		t.Errorf("PROOF_EXISTING_FACTOR after the reset (-want +got):\n%s", diff)
	}
	again := e.enrollTOTP(t, u.userID)
	if len(again.recovery) != mfa.RecoveryCodeCount {
		t.Errorf("enrolled again with %d recovery codes, want %d", len(again.recovery), mfa.RecoveryCodeCount)
	}
	// A user never seen is reset too.
	if n, err := e.svc.ResetUser(asAdmin(t), "nobody-yet", "precaution"); err != nil || n != 0 {
		t.Errorf("ResetUser of an unknown user: %d, %v; want 0, nil", n, err)
	}
}

// TestDeleteFactor: a deleted factor verifies nothing; the recovery codes
// go with the last factor.
func TestDeleteFactor(t *testing.T) {
	e := newEnv(t, envOptions{webauthn: true})
	u := e.enrollTOTP(t, "dr-delete")
	if r := e.verify(t, u.userID, e.code(t, u, 0)); r.Verdict != mfa.Accepted {
		t.Fatalf("verification: %+v", r)
	}
	key, kf, _ := e.registerKey(t, e.createSession(t, u.userID, mfa.ProofExistingFactor).Token.Reveal())
	e.clock.Advance(period)

	if err := e.svc.DeleteFactor(asAdmin(t), u.userID, kf.ID, "key lost"); err != nil {
		t.Fatal(err)
	}
	got := e.user(t, u.userID)
	if diff := cmp.Diff([]string{u.factorID}, factorIDs(got)); diff != "" {
		t.Errorf("factors after deleting the key (-want +got):\n%s", diff)
	}
	if got.RecoveryCodes != mfa.RecoveryCodeCount {
		t.Errorf("%d recovery codes left, want %d", got.RecoveryCodes, mfa.RecoveryCodeCount)
	}
	if r := e.login(t, u.userID, key); r != rejected {
		t.Errorf("the deleted key: %+v, want rejected", r)
	}
	if r := e.verify(t, u.userID, e.code(t, u, 0)); r != accepted {
		t.Errorf("the remaining TOTP factor: %+v, want accepted", r)
	}

	if err := e.svc.DeleteFactor(asAdmin(t), u.userID, u.factorID, "phone lost"); err != nil {
		t.Fatal(err)
	}
	got = e.user(t, u.userID)
	if len(got.Factors) != 0 || got.RecoveryCodes != 0 {
		t.Errorf("after deleting the last factor: %d factors, %d recovery codes; want none", len(got.Factors), got.RecoveryCodes)
	}
	err := e.svc.DeleteFactor(asAdmin(t), u.userID, u.factorID, "phone lost")
	if diff := cmp.Diff(refused(mfa.ReasonFactorNotFound), outcomeOf(t, err)); diff != "" {
		t.Errorf("deleting it again (-want +got):\n%s", diff)
	}
}

// TestUnlockUser: an administrator lifts a lock at once; the failures
// counted before it are forgotten.
func TestUnlockUser(t *testing.T) {
	e := newEnv(t, envOptions{})
	u := e.enrollTOTP(t, "dr-unlock")
	for range limits.MaxFailures {
		e.verify(t, u.userID, e.wrongCode(t, u))
	}
	if r := e.verify(t, u.userID, e.code(t, u, 0)); r.Verdict != mfa.Locked {
		t.Fatalf("after %d failures: %+v, want locked", limits.MaxFailures, r)
	}
	if err := e.svc.UnlockUser(asAdmin(t), u.userID, "user called the help desk"); err != nil {
		t.Fatal(err)
	}
	if got := e.user(t, u.userID); !got.LockedUntil.IsZero() {
		t.Errorf("LockedUntil %s after the unlock, want zero", got.LockedUntil)
	}
	// MaxFailures-1 failures lock nothing: the count started again.
	for range limits.MaxFailures - 1 {
		e.verify(t, u.userID, e.wrongCode(t, u))
	}
	if r := e.verify(t, u.userID, e.code(t, u, 0)); r != accepted {
		t.Errorf("after the unlock: %+v, want accepted", r)
	}
	if err := e.svc.UnlockUser(asAdmin(t), "dr-never-locked", "precaution"); err != nil {
		t.Errorf("unlocking a user who is not locked: %v", err)
	}
}
