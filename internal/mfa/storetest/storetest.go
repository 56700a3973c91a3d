// Package storetest is the conformance suite of mfa.Store, and so the
// definition of how a store behaves: every implementation runs it, with the
// same cases. It pins each boundary that the contract in package mfa states
// (the exact instant a record expires, a lock ends or failures are
// forgotten; the step, sign count and recovery code that are accepted and
// the next that is not), every error a method documents, and the concurrent
// cases where N goroutines race for a one-time value and exactly one may win.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// NewStore returns an empty store for one test.
type NewStore func(t *testing.T) mfa.Store

// Run runs the suite against stores made by newStore, one store per case.
func Run(t *testing.T, newStore NewStore) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s mfa.Store)
	}{
		{"UnknownUser", testUnknownUser},
		{"CancelledContext", testCancelledContext},

		{"Enrollment", testEnrollment},
		{"EnrollmentExpiry", testEnrollmentExpiry},
		{"PendingFactor", testPendingFactor},
		{"PendingFactorExpiry", testPendingFactorExpiry},
		{"ActivateEnrollment", testActivateEnrollment},
		{"ActivationCodeExpiry", testActivationCodeExpiry},
		{"ConfirmFactor", testConfirmFactor},
		{"ConfirmFactorRefused", testConfirmFactorRefused},
		{"ConfirmFactorInvalid", testConfirmFactorInvalid},
		{"ConfirmPendingWebAuthn", testConfirmPendingWebAuthn},
		{"ConfirmNeedsActivation", testConfirmNeedsActivation},
		{"ConfirmFirstFactorOnly", testConfirmFirstFactorOnly},
		{"FactorsOrder", testFactorsOrder},

		{"AcceptTOTPStep", testAcceptTOTPStep},
		{"StepRange", testStepRange},
		{"LockBoundary", testLockBoundary},
		{"Backoff", testBackoff},
		{"FailureTTL", testFailureTTL},
		{"BackoffForgotten", testBackoffForgotten},
		{"InvalidLimits", testInvalidLimits},
		{"SuccessResets", testSuccessResets},
		{"UsersApart", testUsersApart},

		{"WebAuthnFactor", testWebAuthnFactor},
		{"DuplicateCredential", testDuplicateCredential},
		{"AcceptAssertion", testAcceptAssertion},
		{"Challenge", testChallenge},
		{"ChallengeExpiry", testChallengeExpiry},
		{"RecoveryCodes", testRecoveryCodes},
		{"RecoveryCodesAreASet", testRecoveryCodesAreASet},
		{"ReplaceRecoveryCodes", testReplaceRecoveryCodes},

		{"Epoch", testEpoch},
		{"ResetUser", testResetUser},
		{"DeleteFactor", testDeleteFactor},
		{"UnlockUser", testUnlockUser},
		{"SuspendFactor", testSuspendFactor},
		{"EpochEnds", testEpochEnds},

		{"AppendEvent", testAppendEvent},
		{"Events", testEvents},
		{"EventsRefused", testEventsRefused},
		{"Chain", testChain},
		{"ChainUsers", testChainUsers},
		{"PruneEvents", testPruneEvents},

		{"ConcurrentAcceptTOTPStep", testConcurrentAccept},
		{"ConcurrentStartAttempt", testConcurrentStartAttempt},
		{"ConcurrentConfirmFactor", testConcurrentConfirm},
		{"ConcurrentActivate", testConcurrentActivate},
		{"ConcurrentTakeChallenge", testConcurrentTakeChallenge},
		{"ConcurrentAcceptAssertion", testConcurrentAcceptAssertion},
		{"ConcurrentConsumeRecoveryCode", testConcurrentConsumeRecovery},
		{"ConcurrentDuplicateCredential", testConcurrentDuplicateCredential},
		{"ConcurrentReset", testConcurrentReset},
		{"ConcurrentAppendEvent", testConcurrentAppendEvent},
		{"ConcurrentPruneEvents", testConcurrentPruneEvents},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, newStore(t))
		})
	}
	runBypass(t, newStore)
	runOutbox(t, newStore)
}

const (
	ms = time.Millisecond
	// maxStep is the largest TOTP step the contract allows.
	maxStep = 1 << 53
	// maxRecoveryCodes is the most recovery code hashes one call may give.
	maxRecoveryCodes = 1000
)

var (
	// t0 is whole milliseconds: stores may keep times at that precision.
	t0     = time.UnixMilli(1_790_000_000_123).UTC()
	limits = mfa.DefaultLimits()
	// equateEmpty: a store may return nil or an empty slice for no factors.
	equateEmpty = cmpopts.EquateEmpty()
)

func totpFactor(id string) mfa.Factor {
	return mfa.Factor{
		ID: id, Kind: mfa.KindTOTP, Name: "phone " + id, CreatedAt: t0,
		TOTP: &mfa.TOTP{Algorithm: "SHA1", Digits: 6, Period: 30, KeyID: "k1", Sealed: []byte("sealed-" + id)},
	}
}

func webauthnFactor(id string, credID string, signCount uint32) mfa.Factor {
	return mfa.Factor{
		ID: id, Kind: mfa.KindWebAuthn, Name: "key " + id, CreatedAt: t0,
		WebAuthn: &mfa.WebAuthn{
			CredentialID: []byte(credID), PublicKey: []byte("cose-" + credID), AttestationType: "none",
			AttestationFormat: "none", AAGUID: make([]byte, 16), Transports: []string{"usb", "nfc"},
			BackupEligible: true, BackupState: false, UserVerified: true, SignCount: signCount,
		},
	}
}

// session is an enrolment session of user, usable at once, that expires
// 15 minutes after t0.
func session(user, hash string, first bool) mfa.Enrollment {
	return mfa.Enrollment{
		TokenHash: hash, UserID: user, DisplayName: "Dr " + user, Proof: mfa.ProofStrong,
		CreatedAt: t0, ExpiresAt: t0.Add(15 * time.Minute), FirstFactor: first,
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// sentinels are the errors of the contract.
var sentinels = []error{mfa.ErrNotFound, mfa.ErrConflict, mfa.ErrWrongCode, mfa.ErrDuplicate, mfa.ErrUnavailable}

// wantMisuse checks that err reports a call the contract does not allow:
// an error, but none of the contract's sentinels.
func wantMisuse(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want one", what)
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			t.Fatalf("%s: got %v, want an error that is none of the contract's sentinels", what, err)
		}
	}
}

// wantSession fails unless the session want.TokenHash is there at now,
// as want.
func wantSession(t *testing.T, s mfa.Store, want mfa.Enrollment, now time.Time) {
	t.Helper()
	got, err := s.Enrollment(t.Context(), want.TokenHash, now)
	if err != nil {
		t.Fatalf("session %s: %v, want it there", want.TokenHash, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("session %s (-want +got):\n%s", want.TokenHash, diff)
	}
}

// wantPending fails unless user's pending factor want is there at now.
func wantPending(t *testing.T, s mfa.Store, user string, want mfa.Factor, now time.Time) {
	t.Helper()
	got, err := s.PendingFactor(t.Context(), user, want.ID, now)
	if err != nil {
		t.Fatalf("pending factor %s of %s: %v, want it there", want.ID, user, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("pending factor %s of %s (-want +got):\n%s", want.ID, user, diff)
	}
}

func getUser(t *testing.T, s mfa.Store, id string) mfa.User {
	t.Helper()
	u, err := s.User(t.Context(), id)
	must(t, err)
	return u
}

// enroll gives user a confirmed TOTP factor id whose last step is step.
func enroll(t *testing.T, s mfa.Store, user, id string, step int64) {
	t.Helper()
	ctx := t.Context()
	hash := "h-" + user + "-" + id
	must(t, s.CreateEnrollment(ctx, session(user, hash, false)))
	must(t, s.PutPendingFactor(ctx, user, totpFactor(id), t0.Add(10*time.Minute)))
	must(t, s.ConfirmFactor(ctx, mfa.Confirmation{UserID: user, FactorID: id, TokenHash: hash, Step: step, Now: t0}))
}

// addWebAuthn gives user the confirmed WebAuthn factor f and, if any, the
// recovery codes.
func addWebAuthn(t *testing.T, s mfa.Store, user string, f mfa.Factor, recovery ...string) error {
	t.Helper()
	ctx := t.Context()
	hash := "h-" + user + "-" + f.ID
	must(t, s.CreateEnrollment(ctx, session(user, hash, false)))
	return s.ConfirmFactor(ctx, mfa.Confirmation{UserID: user, FactorID: f.ID, Factor: &f, TokenHash: hash, Now: t0, RecoveryHashes: recovery})
}

// attempt runs StartAttempt with the suite's limits.
func attempt(t *testing.T, s mfa.Store, user string, now time.Time) mfa.Attempt {
	t.Helper()
	return attemptWith(t, s, user, now, limits)
}

func attemptWith(t *testing.T, s mfa.Store, user string, now time.Time, lim mfa.Limits) mfa.Attempt {
	t.Helper()
	a, err := s.StartAttempt(t.Context(), user, now, lim)
	must(t, err)
	return a
}

// wantEvaluated runs n attempts at now and fails if any is locked.
func wantEvaluated(t *testing.T, s mfa.Store, user string, now time.Time, n int, lim mfa.Limits) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if a := attemptWith(t, s, user, now, lim); a.Locked {
			t.Fatalf("attempt %d of %d at %v: locked until %v, want it evaluated", i, n, now, a.LockedUntil)
		}
	}
}

// wantLocked runs one attempt at now and fails unless it is locked until
// until, with no factor.
func wantLocked(t *testing.T, s mfa.Store, user string, now, until time.Time, lim mfa.Limits) {
	t.Helper()
	a := attemptWith(t, s, user, now, lim)
	if !a.Locked || !a.LockedUntil.Equal(until) || len(a.Factors) != 0 {
		t.Fatalf("attempt at %v: got %+v, want locked until %v without factors", now, a, until)
	}
}

func testUnknownUser(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	if diff := cmp.Diff(mfa.User{ID: "nobody"}, getUser(t, s, "nobody"), equateEmpty); diff != "" {
		t.Fatalf("unknown user (-want +got):\n%s", diff)
	}
	ok, err := s.AcceptTOTPStep(ctx, "nobody", "0123456789abcdef", 100, 0, t0)
	must(t, err)
	if ok {
		t.Fatal("AcceptTOTPStep of an unknown user's factor: got true")
	}
	outcome, err := s.AcceptAssertion(ctx, "nobody", "0123456789abcdef", mfa.AssertionUse{SignCount: 1}, 0, t0)
	must(t, err)
	if outcome != mfa.AssertionRefused {
		t.Fatalf("AcceptAssertion of an unknown user's factor: got %v, want refused", outcome)
	}
	ok, remaining, err := s.ConsumeRecoveryCode(ctx, "nobody", "r1", t0)
	must(t, err)
	if ok || remaining != 0 {
		t.Fatalf("ConsumeRecoveryCode of an unknown user: got %v, %d left; want false, 0", ok, remaining)
	}
	_, err = s.PendingFactor(ctx, "nobody", "0123456789abcdef", t0)
	wantErr(t, "PendingFactor of unknown user", err, mfa.ErrNotFound)
	if a := attempt(t, s, "nobody", t0); a.Locked || len(a.Factors) != 0 {
		t.Fatalf("StartAttempt of an unknown user: got %+v, want evaluated with no factor", a)
	}
}

// testCancelledContext calls every method with a context cancelled before
// the call: each returns an error wrapping context.Canceled and changes
// nothing.
func testCancelledContext(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	tf, wf := totpFactor("00000000000000a1"), webauthnFactor("00000000000000c1", "cred-1", 1)
	enroll(t, s, "alice", tf.ID, 100)
	must(t, addWebAuthn(t, s, "alice", wf, "r1", "r2", "r3"))
	act := session("alice", "act", false)
	act.NeedsActivation = true
	must(t, s.CreateEnrollment(ctx, act))
	must(t, s.PutActivationCode(ctx, "alice", "code", t0.Add(time.Hour)))
	must(t, s.CreateEnrollment(ctx, session("alice", "more", false)))
	pending := totpFactor("00000000000000a2")
	must(t, s.PutPendingFactor(ctx, "alice", pending, t0.Add(time.Hour)))
	ch := mfa.Challenge{UserID: "alice", Session: []byte("{}")}
	must(t, s.PutChallenge(ctx, "ch", ch, t0.Add(time.Hour)))
	wantEvaluated(t, s, "alice", t0, 1, limits) // a failure for UnlockUser to forget
	first := appendEvent(t, s, mfa.Event{UserID: "alice", Time: t0, Action: mfa.ActionFactorAdded})
	before := getUser(t, s, "alice")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, c := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"User", func(ctx context.Context) error { _, err := s.User(ctx, "alice"); return err }},
		{"StartAttempt", func(ctx context.Context) error { _, err := s.StartAttempt(ctx, "alice", t0, limits); return err }},
		{"AcceptTOTPStep", func(ctx context.Context) error {
			_, err := s.AcceptTOTPStep(ctx, "alice", tf.ID, 101, 0, t0)
			return err
		}},
		{"CreateEnrollment", func(ctx context.Context) error { return s.CreateEnrollment(ctx, session("alice", "new", false)) }},
		{"Enrollment", func(ctx context.Context) error { _, err := s.Enrollment(ctx, "more", t0); return err }},
		{"PutActivationCode", func(ctx context.Context) error { return s.PutActivationCode(ctx, "alice", "other", t0.Add(time.Hour)) }},
		{"ActivateEnrollment", func(ctx context.Context) error { return s.ActivateEnrollment(ctx, "act", "alice", "code", t0) }},
		{"PutPendingFactor", func(ctx context.Context) error {
			return s.PutPendingFactor(ctx, "alice", totpFactor("00000000000000a3"), t0.Add(time.Hour))
		}},
		{"PendingFactor", func(ctx context.Context) error { _, err := s.PendingFactor(ctx, "alice", pending.ID, t0); return err }},
		{"ConfirmFactor", func(ctx context.Context) error {
			return s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: pending.ID, TokenHash: "more", Step: 1, Now: t0})
		}},
		{"ConfirmFactor WebAuthn", func(ctx context.Context) error {
			f := webauthnFactor("00000000000000c2", "cred-2", 0)
			return s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: f.ID, Factor: &f, TokenHash: "more", Now: t0})
		}},
		{"PutChallenge", func(ctx context.Context) error { return s.PutChallenge(ctx, "new", ch, t0.Add(time.Hour)) }},
		{"TakeChallenge", func(ctx context.Context) error { _, err := s.TakeChallenge(ctx, "ch", t0); return err }},
		{"AcceptAssertion", func(ctx context.Context) error {
			_, err := s.AcceptAssertion(ctx, "alice", wf.ID, mfa.AssertionUse{SignCount: 2}, 0, t0)
			return err
		}},
		{"ConsumeRecoveryCode", func(ctx context.Context) error {
			_, _, err := s.ConsumeRecoveryCode(ctx, "alice", "r1", t0)
			return err
		}},
		{"ReplaceRecoveryCodes", func(ctx context.Context) error {
			return s.ReplaceRecoveryCodes(ctx, "more", "alice", []string{"n1"}, t0)
		}},
		{"ResetUser", func(ctx context.Context) error { _, err := s.ResetUser(ctx, "alice", t0); return err }},
		{"DeleteFactor", func(ctx context.Context) error { return s.DeleteFactor(ctx, "alice", tf.ID, t0) }},
		{"UnlockUser", func(ctx context.Context) error { return s.UnlockUser(ctx, "alice") }},
		{"SuspendFactor", func(ctx context.Context) error { return s.SuspendFactor(ctx, "alice", wf.ID, t0) }},
		{"AppendEvent", func(ctx context.Context) error {
			_, err := s.AppendEvent(ctx, mfa.Event{UserID: "alice", Time: t0, Action: mfa.ActionUserReset})
			return err
		}},
		{"Events", func(ctx context.Context) error { _, _, err := s.Events(ctx, mfa.EventQuery{Limit: 10}); return err }},
		{"Chain", func(ctx context.Context) error { _, err := s.Chain(ctx, "alice", 1, 10); return err }},
		{"ChainUsers", func(ctx context.Context) error { _, err := s.ChainUsers(ctx, "", 10); return err }},
		{"PruneEvents", func(ctx context.Context) error { _, err := s.PruneEvents(ctx, t0.Add(time.Hour), 10); return err }},
	} {
		wantErr(t, c.name+" with a cancelled context", c.call(cancelled), context.Canceled)
	}

	// Nothing changed.
	if diff := cmp.Diff(before, getUser(t, s, "alice"), equateEmpty); diff != "" {
		t.Fatalf("user after cancelled calls (-before +after):\n%s", diff)
	}
	wantChain(t, s, "alice", first)
	wantEvaluated(t, s, "alice", t0, limits.MaxFailures-1, limits)
	wantLocked(t, s, "alice", t0, t0.Add(limits.BaseLockout), limits)
	ok, err := s.AcceptTOTPStep(ctx, "alice", tf.ID, 101, 0, t0)
	must(t, err)
	if !ok {
		t.Fatal("step 101 refused: a cancelled AcceptTOTPStep took it")
	}
	outcome, err := s.AcceptAssertion(ctx, "alice", wf.ID, mfa.AssertionUse{SignCount: 2}, 0, t0)
	must(t, err)
	if outcome != mfa.AssertionAccepted {
		t.Fatalf("sign count 2: got %v, want accepted: a cancelled AcceptAssertion took it", outcome)
	}
	ok, remaining, err := s.ConsumeRecoveryCode(ctx, "alice", "r1", t0)
	must(t, err)
	if !ok || remaining != 2 {
		t.Fatalf("recovery code r1: got %v, %d left; want true, 2", ok, remaining)
	}
	_, err = s.Enrollment(ctx, "new", t0)
	wantErr(t, "a session created with a cancelled context", err, mfa.ErrNotFound)
	_, err = s.PendingFactor(ctx, "alice", "00000000000000a3", t0)
	wantErr(t, "a pending factor put with a cancelled context", err, mfa.ErrNotFound)
	_, err = s.TakeChallenge(ctx, "new", t0)
	wantErr(t, "a challenge put with a cancelled context", err, mfa.ErrNotFound)
	got, err := s.TakeChallenge(ctx, "ch", t0)
	must(t, err)
	if diff := cmp.Diff(ch, got); diff != "" {
		t.Fatalf("the challenge after a cancelled TakeChallenge (-want +got):\n%s", diff)
	}
	wantErr(t, "the code put with a cancelled context", s.ActivateEnrollment(ctx, "act", "alice", "other", t0), mfa.ErrWrongCode)
	must(t, s.ActivateEnrollment(ctx, "act", "alice", "code", t0))
	must(t, s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: pending.ID, TokenHash: "more", Step: 1, Now: t0}))
	must(t, addWebAuthn(t, s, "bob", webauthnFactor("00000000000000c2", "cred-2", 0)))
}

func testEnrollment(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	e := session("alice", "hash1", true)
	e.NeedsActivation = true
	e.ReturnURL = "https://portal.example/back"
	must(t, s.CreateEnrollment(ctx, e))
	got, err := s.Enrollment(ctx, "hash1", t0.Add(time.Minute))
	must(t, err)
	if diff := cmp.Diff(e, got); diff != "" {
		t.Fatalf("Enrollment round trip (-want +got):\n%s", diff)
	}
	_, err = s.Enrollment(ctx, "hash2", t0)
	wantErr(t, "unknown session", err, mfa.ErrNotFound)
}

// testEnrollmentExpiry pins the end of an enrolment session for every method
// that uses one: live until the millisecond before ExpiresAt, gone from
// ExpiresAt on.
func testEnrollmentExpiry(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	expires := t0.Add(15 * time.Minute) // of session()
	for i, c := range []struct {
		name string
		at   time.Time
		live bool
	}{
		{"a millisecond before", expires.Add(-ms), true},
		{"exactly at", expires, false},
		{"after", expires.Add(time.Hour), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := error(nil)
			if !c.live {
				want = mfa.ErrNotFound
			}
			check := func(what string, err error) {
				t.Helper()
				if c.live && err != nil || !c.live && !errors.Is(err, mfa.ErrNotFound) {
					t.Fatalf("%s at %v: got %v, want %v", what, c.at, err, want)
				}
			}
			u := fmt.Sprintf("user%d", i)

			read := session(u, u+"-read", true)
			must(t, s.CreateEnrollment(ctx, read))
			got, err := s.Enrollment(ctx, u+"-read", c.at)
			check("Enrollment", err)
			if c.live {
				if diff := cmp.Diff(read, got); diff != "" {
					t.Fatalf("Enrollment at %v (-want +got):\n%s", c.at, diff)
				}
			}

			e := session(u, u+"-act", true)
			e.NeedsActivation = true
			must(t, s.CreateEnrollment(ctx, e))
			must(t, s.PutActivationCode(ctx, u, "code", expires.Add(2*time.Hour)))
			check("ActivateEnrollment", s.ActivateEnrollment(ctx, u+"-act", u, "code", c.at))

			must(t, s.CreateEnrollment(ctx, session(u, u+"-confirm", true)))
			f := totpFactor("00000000000000a1")
			must(t, s.PutPendingFactor(ctx, u, f, expires.Add(2*time.Hour)))
			check("ConfirmFactor", s.ConfirmFactor(ctx, mfa.Confirmation{UserID: u, FactorID: f.ID, TokenHash: u + "-confirm", FirstFactor: true, Step: 1, Now: c.at}))

			v := u + "-codes"
			enroll(t, s, v, "00000000000000a2", 1)
			must(t, s.CreateEnrollment(ctx, session(v, v, false)))
			check("ReplaceRecoveryCodes", s.ReplaceRecoveryCodes(ctx, v, v, []string{"n1"}, c.at))
		})
	}
}

func testPendingFactor(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	f := totpFactor("00000000000000a1")
	must(t, s.PutPendingFactor(ctx, "alice", f, t0.Add(10*time.Minute)))
	got, err := s.PendingFactor(ctx, "alice", f.ID, t0.Add(time.Minute))
	must(t, err)
	if diff := cmp.Diff(f, got); diff != "" {
		t.Fatalf("PendingFactor round trip (-want +got):\n%s", diff)
	}
	_, err = s.PendingFactor(ctx, "bob", f.ID, t0)
	wantErr(t, "another user's pending factor", err, mfa.ErrNotFound)
	if u := getUser(t, s, "alice"); len(u.Factors) != 0 {
		t.Fatalf("a pending factor counts as confirmed: %+v", u.Factors)
	}
	// Put again, it is replaced.
	g := f
	g.Name = "renamed"
	must(t, s.PutPendingFactor(ctx, "alice", g, t0.Add(20*time.Minute)))
	got, err = s.PendingFactor(ctx, "alice", f.ID, t0.Add(15*time.Minute))
	must(t, err)
	if diff := cmp.Diff(g, got); diff != "" {
		t.Fatalf("PendingFactor after a second put (-want +got):\n%s", diff)
	}
}

// testPendingFactorExpiry pins the end of a pending factor, for
// PendingFactor and ConfirmFactor.
func testPendingFactorExpiry(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	expires := t0.Add(10 * time.Minute) // before the session's end
	for i, c := range []struct {
		name string
		at   time.Time
		live bool
	}{
		{"a millisecond before", expires.Add(-ms), true},
		{"exactly at", expires, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := fmt.Sprintf("user%d", i)
			f := totpFactor("00000000000000a1")
			must(t, s.PutPendingFactor(ctx, u, f, expires))
			if c.live {
				wantPending(t, s, u, f, c.at)
			} else {
				_, err := s.PendingFactor(ctx, u, f.ID, c.at)
				wantErr(t, fmt.Sprintf("PendingFactor at %v", c.at), err, mfa.ErrNotFound)
			}
			e := session(u, u, true)
			must(t, s.CreateEnrollment(ctx, e))
			err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: u, FactorID: f.ID, TokenHash: u, FirstFactor: true, Step: 1, Now: c.at})
			if c.live {
				must(t, err)
				return
			}
			wantErr(t, "ConfirmFactor of an expired pending factor", err, mfa.ErrNotFound)
			wantSession(t, s, e, c.at)
		})
	}
}

func testActivateEnrollment(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	e := session("alice", "hash1", true)
	e.NeedsActivation = true
	must(t, s.CreateEnrollment(ctx, e))

	wantErr(t, "activate without a code", s.ActivateEnrollment(ctx, "hash1", "alice", "c1", t0), mfa.ErrWrongCode)
	must(t, s.PutActivationCode(ctx, "alice", "c1", t0.Add(time.Hour)))
	must(t, s.PutActivationCode(ctx, "alice", "c2", t0.Add(10*time.Minute))) // replaces c1
	wantErr(t, "replaced code", s.ActivateEnrollment(ctx, "hash1", "alice", "c1", t0), mfa.ErrWrongCode)
	wantErr(t, "wrong code", s.ActivateEnrollment(ctx, "hash1", "alice", "zz", t0), mfa.ErrWrongCode)
	wantErr(t, "unknown session", s.ActivateEnrollment(ctx, "nope", "alice", "c2", t0), mfa.ErrNotFound)
	wantErr(t, "another user's session", s.ActivateEnrollment(ctx, "hash1", "bob", "c2", t0), mfa.ErrNotFound)
	got, err := s.Enrollment(ctx, "hash1", t0)
	must(t, err)
	if got.Activated {
		t.Fatal("a wrong code activated the session")
	}
	must(t, s.ActivateEnrollment(ctx, "hash1", "alice", "c2", t0))
	got, err = s.Enrollment(ctx, "hash1", t0)
	must(t, err)
	if !got.Activated || !got.Usable() {
		t.Fatalf("session after activation: %+v", got)
	}
	// The code was consumed.
	must(t, s.CreateEnrollment(ctx, session("alice", "hash2", true)))
	wantErr(t, "reused code", s.ActivateEnrollment(ctx, "hash2", "alice", "c2", t0), mfa.ErrWrongCode)
	// Another user's code does not activate alice's session.
	must(t, s.PutActivationCode(ctx, "bob", "cb", t0.Add(time.Hour)))
	wantErr(t, "another user's code", s.ActivateEnrollment(ctx, "hash2", "alice", "cb", t0), mfa.ErrWrongCode)
}

// testActivationCodeExpiry pins the end of an activation code.
func testActivationCodeExpiry(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	expires := t0.Add(10 * time.Minute) // before the session's end
	for i, c := range []struct {
		name string
		at   time.Time
		want error
	}{
		{"a millisecond before", expires.Add(-ms), nil},
		{"exactly at", expires, mfa.ErrWrongCode},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := fmt.Sprintf("user%d", i)
			e := session(u, u, true)
			e.NeedsActivation = true
			must(t, s.CreateEnrollment(ctx, e))
			must(t, s.PutActivationCode(ctx, u, "code", expires))
			err := s.ActivateEnrollment(ctx, u, u, "code", c.at)
			if !errors.Is(err, c.want) || c.want == nil && err != nil {
				t.Fatalf("ActivateEnrollment at %v: got %v, want %v", c.at, err, c.want)
			}
			got, err := s.Enrollment(ctx, u, c.at)
			must(t, err)
			if got.Activated != (c.want == nil) {
				t.Fatalf("session activated %v, want %v", got.Activated, c.want == nil)
			}
		})
	}
}

func testConfirmFactor(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	f := totpFactor("00000000000000a1")
	must(t, s.CreateEnrollment(ctx, session("alice", "hash1", true)))
	must(t, s.PutPendingFactor(ctx, "alice", f, t0.Add(10*time.Minute)))
	c := mfa.Confirmation{UserID: "alice", FactorID: f.ID, TokenHash: "hash1", FirstFactor: true, Step: 1000, Now: t0}
	must(t, s.ConfirmFactor(ctx, c))

	u := getUser(t, s, "alice")
	if diff := cmp.Diff([]mfa.Factor{f}, u.Factors); diff != "" {
		t.Fatalf("confirmed factors (-want +got):\n%s", diff)
	}
	if !u.LastVerifiedAt.IsZero() || u.RecoveryCodes != 0 {
		t.Fatalf("a confirmation without recovery codes: last verified %v, %d recovery codes; want zero, 0", u.LastVerifiedAt, u.RecoveryCodes)
	}
	_, err := s.Enrollment(ctx, "hash1", t0)
	wantErr(t, "completed session", err, mfa.ErrNotFound)
	_, err = s.PendingFactor(ctx, "alice", f.ID, t0)
	wantErr(t, "confirmed pending factor", err, mfa.ErrNotFound)
	wantErr(t, "second confirmation", s.ConfirmFactor(ctx, c), mfa.ErrNotFound)

	// The confirming step counts as accepted.
	ok, err := s.AcceptTOTPStep(ctx, "alice", f.ID, 1000, 0, t0)
	must(t, err)
	if ok {
		t.Fatal("the step that confirmed the factor was accepted again")
	}
	ok, err = s.AcceptTOTPStep(ctx, "alice", f.ID, 1001, 0, t0)
	must(t, err)
	if !ok {
		t.Fatal("the step after the confirming one was refused")
	}

	// A TOTP factor given whole is confirmed too, and its pending copy goes.
	g := totpFactor("00000000000000a2")
	must(t, s.PutPendingFactor(ctx, "alice", g, t0.Add(10*time.Minute)))
	must(t, s.CreateEnrollment(ctx, session("alice", "hash2", false)))
	must(t, s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", Factor: &g, TokenHash: "hash2", Step: 7, Now: t0}))
	_, err = s.PendingFactor(ctx, "alice", g.ID, t0)
	wantErr(t, "a pending factor confirmed whole", err, mfa.ErrNotFound)
	ok, err = s.AcceptTOTPStep(ctx, "alice", g.ID, 8, 0, t0)
	must(t, err)
	if !ok {
		t.Fatal("the step after the one that confirmed a factor given whole was refused")
	}
	if u := getUser(t, s, "alice"); len(u.Factors) != 2 {
		t.Fatalf("got %d factors, want 2", len(u.Factors))
	}
}

// testConfirmFactorRefused goes through each refusal of ConfirmFactor, and
// pairs of them to pin which comes first. A refusal changes nothing: the
// session stays, the user's factors too, and a credential ID stays free.
func testConfirmFactorRefused(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	// taken is a credential ID that carol registered.
	must(t, addWebAuthn(t, s, "carol", webauthnFactor("00000000000000c9", "taken", 0)))
	type setup struct {
		session     *mfa.Enrollment // nil: none
		pending     *time.Time      // expiry of a pending TOTP factor; nil: none
		hasFactor   bool            // the user has a confirmed factor
		credential  string          // a WebAuthn factor given whole with this credential ID
		firstFactor bool            // Confirmation.FirstFactor
		token       string          // Confirmation.TokenHash, if not the session's
		now         time.Time       // Confirmation.Now, if not t0
	}
	later := t0.Add(time.Hour)
	soon := t0.Add(10 * time.Minute)
	sess := func(first, needsActivation bool, user string) *mfa.Enrollment {
		e := session(user, "", first)
		e.NeedsActivation = needsActivation
		return &e
	}
	for i, c := range []struct {
		name string
		setup
		want error
	}{
		{"no session", setup{pending: &later, token: "missing"}, mfa.ErrNotFound},
		{"expired session", setup{session: sess(false, false, ""), pending: &later, now: t0.Add(15 * time.Minute)}, mfa.ErrNotFound},
		{"another user's session", setup{session: sess(false, false, "someone-else"), pending: &later}, mfa.ErrNotFound},
		{"session not activated", setup{session: sess(false, true, ""), pending: &later}, mfa.ErrConflict},
		{"no pending factor", setup{session: sess(false, false, "")}, mfa.ErrNotFound},
		{"expired pending factor", setup{session: sess(false, false, ""), pending: &soon, now: soon}, mfa.ErrNotFound},
		{"first factor, the user has one", setup{session: sess(false, false, ""), pending: &later, hasFactor: true, firstFactor: true}, mfa.ErrConflict},
		{"first-factor session, the user has one", setup{session: sess(true, false, ""), pending: &later, hasFactor: true}, mfa.ErrConflict},
		{"credential taken", setup{session: sess(false, false, ""), credential: "taken"}, mfa.ErrDuplicate},
		{"WebAuthn, session not activated", setup{session: sess(false, true, ""), credential: "free-1"}, mfa.ErrConflict},
		{"WebAuthn, first factor, the user has one", setup{session: sess(true, false, ""), hasFactor: true, credential: "free-2"}, mfa.ErrConflict},
		{"WebAuthn, no session", setup{credential: "free-3", token: "missing"}, mfa.ErrNotFound},
		// Which refusal comes first.
		{"credential taken before no session", setup{credential: "taken", token: "missing"}, mfa.ErrDuplicate},
		{"credential taken before not activated", setup{session: sess(false, true, ""), credential: "taken"}, mfa.ErrDuplicate},
		{"not activated before no pending factor", setup{session: sess(false, true, "")}, mfa.ErrConflict},
		{"no pending factor before first factor", setup{session: sess(true, false, ""), hasFactor: true}, mfa.ErrNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := fmt.Sprintf("user%d", i)
			if c.hasFactor {
				enroll(t, s, u, "00000000000000b1", 1)
			}
			token := c.token
			if e := c.session; e != nil {
				if e.UserID == "" {
					e.UserID = u
				}
				e.TokenHash = u + "-session"
				must(t, s.CreateEnrollment(ctx, *e))
				if token == "" {
					token = e.TokenHash
				}
			}
			conf := mfa.Confirmation{UserID: u, FactorID: "00000000000000a1", TokenHash: token, FirstFactor: c.firstFactor, Step: 1, Now: t0}
			if !c.now.IsZero() {
				conf.Now = c.now
			}
			if c.pending != nil {
				must(t, s.PutPendingFactor(ctx, u, totpFactor(conf.FactorID), *c.pending))
			}
			if c.credential != "" {
				f := webauthnFactor(conf.FactorID, c.credential, 0)
				conf.Factor = &f
			}
			before := getUser(t, s, u)

			err := s.ConfirmFactor(ctx, conf)
			wantErr(t, "ConfirmFactor", err, c.want)

			if diff := cmp.Diff(before, getUser(t, s, u), equateEmpty); diff != "" {
				t.Fatalf("a refused confirmation changed the user (-before +after):\n%s", diff)
			}
			if e := c.session; e != nil && !c.now.Equal(e.ExpiresAt) {
				wantSession(t, s, *e, t0)
			}
			if c.pending != nil && c.now.Before(*c.pending) {
				wantPending(t, s, u, totpFactor(conf.FactorID), t0)
			}
			if c.credential != "" && c.credential != "taken" {
				// The refused credential ID is still free.
				must(t, addWebAuthn(t, s, u+"-next", webauthnFactor("00000000000000c1", c.credential, 0)))
			}
		})
	}
}

// testConfirmFactorInvalid: confirmations the contract does not allow are
// refused with an error that is no sentinel, and change nothing.
func testConfirmFactorInvalid(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	many := make([]string, maxRecoveryCodes+1)
	for i := range many {
		many[i] = fmt.Sprintf("r%d", i)
	}
	withID := func(f mfa.Factor, id string) *mfa.Factor { f.ID = id; return &f }
	noRecord := webauthnFactor("00000000000000c1", "cred", 0)
	noRecord.WebAuthn = nil
	withRecord := totpFactor("00000000000000a1")
	withRecord.WebAuthn = webauthnFactor("00000000000000a1", "cred", 0).WebAuthn
	emptyID := webauthnFactor("00000000000000c1", "", 0)
	for i, c := range []struct {
		name string
		conf mfa.Confirmation
	}{
		{"factor ID not the factor's", mfa.Confirmation{FactorID: "00000000000000ff", Factor: withID(webauthnFactor("", "cred", 0), "00000000000000c1")}},
		{"factor without ID", mfa.Confirmation{Factor: withID(webauthnFactor("", "cred", 0), "")}},
		{"WebAuthn kind without record", mfa.Confirmation{Factor: &noRecord}},
		{"TOTP kind with a WebAuthn record", mfa.Confirmation{Factor: &withRecord}},
		{"empty credential ID", mfa.Confirmation{Factor: &emptyID}},
		{"negative step", mfa.Confirmation{FactorID: "00000000000000a1", Step: -1}},
		{"step beyond 2^53", mfa.Confirmation{FactorID: "00000000000000a1", Step: maxStep + 1}},
		{"too many recovery codes", mfa.Confirmation{FactorID: "00000000000000a1", RecoveryHashes: many}},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := fmt.Sprintf("user%d", i)
			e := session(u, u, true)
			must(t, s.CreateEnrollment(ctx, e))
			must(t, s.PutPendingFactor(ctx, u, totpFactor("00000000000000a1"), t0.Add(time.Hour)))
			conf := c.conf
			conf.UserID, conf.TokenHash, conf.FirstFactor, conf.Now = u, u, true, t0
			wantMisuse(t, "ConfirmFactor", s.ConfirmFactor(ctx, conf))
			got := getUser(t, s, u)
			if len(got.Factors) != 0 || got.RecoveryCodes != 0 {
				t.Fatalf("a refused confirmation changed the user: %+v", got)
			}
			wantSession(t, s, e, t0)
			wantPending(t, s, u, totpFactor("00000000000000a1"), t0)
		})
	}
	// The credential ID was not kept by any of them.
	must(t, addWebAuthn(t, s, "next", webauthnFactor("00000000000000c1", "cred", 0)))
}

// testConfirmPendingWebAuthn: a WebAuthn credential is confirmed only given
// whole (Confirmation.Factor). A pending one would escape the check that
// its credential ID is free, so it is refused, and nothing changes.
func testConfirmPendingWebAuthn(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	f := webauthnFactor("00000000000000c1", "cred", 0)
	e := session("alice", "h", false)
	must(t, s.CreateEnrollment(ctx, e))
	must(t, s.PutPendingFactor(ctx, "alice", f, t0.Add(time.Minute)))
	wantMisuse(t, "confirming a pending WebAuthn factor",
		s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: f.ID, TokenHash: "h", Now: t0}))
	wantSession(t, s, e, t0)
	wantPending(t, s, "alice", f, t0)
	if u := getUser(t, s, "alice"); len(u.Factors) != 0 {
		t.Fatalf("after the refusal: factors %+v", u.Factors)
	}
	// Its credential ID is free, and given whole it is confirmed.
	must(t, s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: f.ID, Factor: &f, TokenHash: "h", Now: t0}))
	if u := getUser(t, s, "alice"); len(u.Factors) != 1 {
		t.Fatalf("after confirming the factor whole: factors %+v", u.Factors)
	}
}

func testConfirmNeedsActivation(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	e := session("alice", "hash1", true)
	e.NeedsActivation = true
	e.Proof = mfa.ProofPasswordOnly
	must(t, s.CreateEnrollment(ctx, e))
	f := totpFactor("00000000000000a1")
	must(t, s.PutPendingFactor(ctx, "alice", f, t0.Add(10*time.Minute)))
	c := mfa.Confirmation{UserID: "alice", FactorID: f.ID, TokenHash: "hash1", FirstFactor: true, Step: 1, Now: t0}
	wantErr(t, "confirm in a session not activated", s.ConfirmFactor(ctx, c), mfa.ErrConflict)
	if u := getUser(t, s, "alice"); len(u.Factors) != 0 {
		t.Fatalf("a session without activation enrolled %+v", u.Factors)
	}
	must(t, s.PutActivationCode(ctx, "alice", "codehash", t0.Add(time.Hour)))
	must(t, s.ActivateEnrollment(ctx, "hash1", "alice", "codehash", t0))
	must(t, s.ConfirmFactor(ctx, c))
	if u := getUser(t, s, "alice"); len(u.Factors) != 1 {
		t.Fatalf("after activation: factors %+v", u.Factors)
	}
}

// testConfirmFirstFactorOnly: a first-factor session or confirmation enrols
// only a user without a factor.
func testConfirmFirstFactorOnly(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	must(t, s.CreateEnrollment(ctx, session("alice", "first1", true)))
	must(t, s.CreateEnrollment(ctx, session("alice", "first2", true)))
	must(t, s.CreateEnrollment(ctx, session("alice", "more", false)))
	f, g, h := totpFactor("00000000000000a1"), totpFactor("00000000000000a2"), totpFactor("00000000000000a3")
	for _, p := range []mfa.Factor{f, g, h} {
		must(t, s.PutPendingFactor(ctx, "alice", p, t0.Add(10*time.Minute)))
	}
	must(t, s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: f.ID, TokenHash: "first1", FirstFactor: true, Now: t0}))
	for _, c := range []struct {
		name        string
		token       string
		firstFactor bool
	}{
		{"first-factor session and confirmation", "first2", true},
		{"first-factor session", "first2", false},
		{"first-factor confirmation", "more", true},
	} {
		err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: g.ID, TokenHash: c.token, FirstFactor: c.firstFactor, Now: t0})
		wantErr(t, c.name+", once the user has a factor", err, mfa.ErrConflict)
	}
	if u := getUser(t, s, "alice"); len(u.Factors) != 1 {
		t.Fatalf("got %d factors, want 1", len(u.Factors))
	}
	must(t, s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: h.ID, TokenHash: "more", Now: t0}))
	if u := getUser(t, s, "alice"); len(u.Factors) != 2 {
		t.Fatalf("got %d factors, want 2", len(u.Factors))
	}
}

// testFactorsOrder: factors come oldest first by CreatedAt, then by ID,
// whatever the order they were confirmed in.
func testFactorsOrder(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	a := totpFactor("00000000000000a1")
	a.CreatedAt = t0.Add(2 * time.Second)
	b := totpFactor("00000000000000a2")
	b.CreatedAt = t0.Add(time.Second)
	c := webauthnFactor("00000000000000a0", "cred", 0)
	c.CreatedAt = t0.Add(time.Second)
	for i, f := range []mfa.Factor{a, b} {
		hash := fmt.Sprintf("h%d", i)
		must(t, s.CreateEnrollment(ctx, session("alice", hash, false)))
		must(t, s.PutPendingFactor(ctx, "alice", f, t0.Add(time.Hour)))
		must(t, s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: f.ID, TokenHash: hash, Now: t0}))
	}
	must(t, addWebAuthn(t, s, "alice", c))
	want := []mfa.Factor{c, b, a}
	if diff := cmp.Diff(want, getUser(t, s, "alice").Factors); diff != "" {
		t.Fatalf("User factors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, attempt(t, s, "alice", t0).Factors); diff != "" {
		t.Fatalf("StartAttempt factors (-want +got):\n%s", diff)
	}
}

// testAcceptTOTPStep pins the step rule: a step is accepted once, only if
// it is later than the last accepted one of that factor, and only for a
// confirmed TOTP factor. A refused step changes nothing.
func testAcceptTOTPStep(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	a1, a2, c1 := "00000000000000a1", "00000000000000a2", "00000000000000c1"
	enroll(t, s, "alice", a1, 100)
	enroll(t, s, "alice", a2, 0)
	must(t, addWebAuthn(t, s, "alice", webauthnFactor(c1, "cred-1", 0)))
	var lastVerified time.Time
	lastUsed := map[string]time.Time{}
	for i, c := range []struct {
		factor string
		step   int64
		want   bool
	}{
		{a1, 99, false},
		{a1, 100, false}, // the confirming step
		{a1, 101, true},
		{a1, 101, false},
		{a1, 100, false},
		{a1, 105, true},
		{a1, 103, false},
		{a2, 0, false}, // steps are per factor
		{a2, 1, true},
		{a2, maxStep, true},
		{a2, maxStep, false},
		{a1, 106, true},
		{c1, 1, false}, // not a TOTP factor
		{"00000000000000ff", 200, false},
	} {
		now := t0.Add(time.Duration(i+1) * time.Minute)
		got, err := s.AcceptTOTPStep(ctx, "alice", c.factor, c.step, 0, now)
		must(t, err)
		if got != c.want {
			t.Fatalf("AcceptTOTPStep(%s, step %d): got %v, want %v", c.factor, c.step, got, c.want)
		}
		if got {
			lastVerified, lastUsed[c.factor] = now, now
		}
		u := getUser(t, s, "alice")
		if !u.LastVerifiedAt.Equal(lastVerified) {
			t.Fatalf("after AcceptTOTPStep(%s, step %d): last verified %v, want %v", c.factor, c.step, u.LastVerifiedAt, lastVerified)
		}
		for _, f := range u.Factors {
			if !f.LastUsedAt.Equal(lastUsed[f.ID]) {
				t.Fatalf("after AcceptTOTPStep(%s, step %d): factor %s last used %v, want %v", c.factor, c.step, f.ID, f.LastUsedAt, lastUsed[f.ID])
			}
		}
	}
}

// testStepRange: steps out of 0..2^53 are refused with an error.
func testStepRange(t *testing.T, s mfa.Store) {
	id := "00000000000000a1"
	enroll(t, s, "alice", id, 0)
	for _, step := range []int64{-1, maxStep + 1, math.MaxInt64} {
		_, err := s.AcceptTOTPStep(t.Context(), "alice", id, step, 0, t0)
		wantMisuse(t, fmt.Sprintf("AcceptTOTPStep(step %d)", step), err)
	}
	ok, err := s.AcceptTOTPStep(t.Context(), "alice", id, 1, 0, t0)
	must(t, err)
	if !ok {
		t.Fatal("step 1 refused after the refused steps")
	}
}

// testLockBoundary pins the start and end of a lock: the MaxFailures-th
// attempt is evaluated and locks the next; the lock holds until the
// millisecond before LockedUntil and ends at LockedUntil.
func testLockBoundary(t *testing.T, s mfa.Store) {
	id := "00000000000000a1"
	enroll(t, s, "alice", id, 100)
	for i := 1; i <= limits.MaxFailures; i++ {
		a := attempt(t, s, "alice", t0)
		if a.Locked {
			t.Fatalf("attempt %d: locked before %d failures", i, limits.MaxFailures)
		}
		if len(a.Factors) != 1 || a.Factors[0].ID != id {
			t.Fatalf("attempt %d: factors %+v, want the user's one factor", i, a.Factors)
		}
		// The attempt that reaches the limit reports the lock it set; the
		// ones before it none.
		wantSet := time.Time{}
		if i == limits.MaxFailures {
			wantSet = t0.Add(limits.BaseLockout)
		}
		if !a.LockedUntil.Equal(wantSet) {
			t.Fatalf("attempt %d: Attempt.LockedUntil %v, want %v", i, a.LockedUntil, wantSet)
		}
		if u := getUser(t, s, "alice"); i < limits.MaxFailures && !u.LockedUntil.IsZero() {
			t.Fatalf("after attempt %d: LockedUntil %v, want zero", i, u.LockedUntil)
		}
	}
	end := t0.Add(limits.BaseLockout)
	u := getUser(t, s, "alice")
	if !u.LockedUntil.Equal(end) || !u.Locked(end.Add(-ms)) || u.Locked(end) {
		t.Fatalf("User after the lock: LockedUntil %v, want %v", u.LockedUntil, end)
	}
	wantLocked(t, s, "alice", t0, end, limits)
	wantLocked(t, s, "alice", end.Add(-ms), end, limits)
	// At the end of the lock one attempt is evaluated, and it locks again
	// at once, for the next back-off: the failures are still there.
	wantEvaluated(t, s, "alice", end, 1, limits)
	wantLocked(t, s, "alice", end, end.Add(2*limits.BaseLockout), limits)
	if u := getUser(t, s, "alice"); !u.LockedUntil.Equal(end.Add(2 * limits.BaseLockout)) {
		t.Fatalf("User after the second lock: LockedUntil %v, want %v", u.LockedUntil, end.Add(2*limits.BaseLockout))
	}
}

// testBackoff pins the length of each consecutive lock.
func testBackoff(t *testing.T, s mfa.Store) {
	day := 24 * time.Hour
	for i, c := range []struct {
		name string
		lim  mfa.Limits
		want []time.Duration
	}{
		{"doubling up to the maximum", mfa.Limits{MaxFailures: 3, BaseLockout: 30 * time.Second, MaxLockout: time.Hour, FailureTTL: day},
			[]time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}},
		{"a maximum that is no doubling", mfa.Limits{MaxFailures: 1, BaseLockout: 30 * time.Second, MaxLockout: 100 * time.Second, FailureTTL: day},
			[]time.Duration{30 * time.Second, time.Minute, 100 * time.Second, 100 * time.Second}},
		{"base is the maximum", mfa.Limits{MaxFailures: 2, BaseLockout: time.Minute, MaxLockout: time.Minute, FailureTTL: day},
			[]time.Duration{time.Minute, time.Minute, time.Minute}},
		{"milliseconds", mfa.Limits{MaxFailures: 2, BaseLockout: 3 * ms, MaxLockout: 10 * ms, FailureTTL: time.Hour},
			[]time.Duration{3 * ms, 6 * ms, 10 * ms, 10 * ms}},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := fmt.Sprintf("user%d", i)
			now := t0
			wantEvaluated(t, s, u, now, c.lim.MaxFailures-1, c.lim)
			for k, d := range c.want {
				// One attempt evaluated, which locks for d.
				wantEvaluated(t, s, u, now, 1, c.lim)
				wantLocked(t, s, u, now, now.Add(d), c.lim)
				if got := getUser(t, s, u).LockedUntil; !got.Equal(now.Add(d)) {
					t.Fatalf("lock %d: User LockedUntil %v, want %v", k+1, got, now.Add(d))
				}
				now = now.Add(d)
			}
		})
	}
}

// testFailureTTL pins when failures are forgotten: FailureTTL after the last
// counted attempt, exactly.
func testFailureTTL(t *testing.T, s mfa.Store) {
	ttl := limits.FailureTTL
	for i, c := range []struct {
		name string
		// last is when the last of the first MaxFailures-1 attempts is
		// made (the others are made at t0); at is when the next is made.
		last, at time.Duration
		// remembered: the failures still count at at, so the attempt there
		// is the MaxFailures-th and locks the next.
		remembered bool
	}{
		{"a millisecond before", 0, ttl - ms, true},
		{"exactly at", 0, ttl, false},
		{"after", 0, ttl + time.Second, false},
		{"from the last attempt, a millisecond before", ttl / 2, ttl/2 + ttl - ms, true},
		{"from the last attempt, exactly at", ttl / 2, ttl/2 + ttl, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := fmt.Sprintf("user%d", i)
			wantEvaluated(t, s, u, t0, limits.MaxFailures-2, limits)
			wantEvaluated(t, s, u, t0.Add(c.last), 1, limits)
			at := t0.Add(c.at)
			wantEvaluated(t, s, u, at, 1, limits)
			if c.remembered {
				wantLocked(t, s, u, at, at.Add(limits.BaseLockout), limits)
				return
			}
			// Forgotten: the count starts again from that attempt.
			wantEvaluated(t, s, u, at, limits.MaxFailures-1, limits)
			wantLocked(t, s, u, at, at.Add(limits.BaseLockout), limits)
		})
	}
}

// testBackoffForgotten: when failures are forgotten, so is the back-off; and
// attempts refused by a lock are not counted, so they do not delay it.
func testBackoffForgotten(t *testing.T, s mfa.Store) {
	wantEvaluated(t, s, "alice", t0, limits.MaxFailures, limits)
	wantLocked(t, s, "alice", t0.Add(time.Second), t0.Add(limits.BaseLockout), limits)
	wantLocked(t, s, "alice", t0.Add(limits.BaseLockout-ms), t0.Add(limits.BaseLockout), limits)
	// The last counted attempt was at t0.
	now := t0.Add(limits.FailureTTL)
	wantEvaluated(t, s, "alice", now, 1, limits)
	if u := getUser(t, s, "alice"); !u.LockedUntil.IsZero() {
		t.Fatalf("after an attempt that did not lock: LockedUntil %v, want zero", u.LockedUntil)
	}
	wantEvaluated(t, s, "alice", now, limits.MaxFailures-1, limits)
	wantLocked(t, s, "alice", now, now.Add(limits.BaseLockout), limits)
}

// testInvalidLimits: StartAttempt refuses limits that are not valid with an
// error, and counts nothing.
func testInvalidLimits(t *testing.T, s mfa.Store) {
	for _, c := range []struct {
		name string
		edit func(*mfa.Limits)
	}{
		{"no failure allowed", func(l *mfa.Limits) { l.MaxFailures = 0 }},
		{"negative failures", func(l *mfa.Limits) { l.MaxFailures = -1 }},
		{"zero failure TTL", func(l *mfa.Limits) { l.FailureTTL = 0 }},
		{"zero base lockout", func(l *mfa.Limits) { l.BaseLockout = 0 }},
		{"maximum below base", func(l *mfa.Limits) { l.MaxLockout = l.BaseLockout - ms }},
	} {
		lim := limits
		c.edit(&lim)
		_, err := s.StartAttempt(t.Context(), "alice", t0, lim)
		wantMisuse(t, "StartAttempt with "+c.name, err)
	}
	wantEvaluated(t, s, "alice", t0, limits.MaxFailures, limits)
	wantLocked(t, s, "alice", t0, t0.Add(limits.BaseLockout), limits)
}

// testSuccessResets: each kind of success resets the failures, the lock and
// the back-off, and records the verification; a refused one changes none of
// it.
func testSuccessResets(t *testing.T, s mfa.Store) {
	const totpID, keyID = "00000000000000a1", "00000000000000c1"
	for i, c := range []struct {
		name    string
		success func(t *testing.T, user string, now time.Time)
		resets  bool
	}{
		{"TOTP step", func(t *testing.T, user string, now time.Time) {
			ok, err := s.AcceptTOTPStep(t.Context(), user, totpID, 101, 0, now)
			must(t, err)
			if !ok {
				t.Fatal("AcceptTOTPStep: got false")
			}
		}, true},
		{"replayed TOTP step", func(t *testing.T, user string, now time.Time) {
			ok, err := s.AcceptTOTPStep(t.Context(), user, totpID, 100, 0, now)
			must(t, err)
			if ok {
				t.Fatal("AcceptTOTPStep: got true")
			}
		}, false},
		{"assertion", func(t *testing.T, user string, now time.Time) {
			outcome, err := s.AcceptAssertion(t.Context(), user, keyID, mfa.AssertionUse{SignCount: 6}, 0, now)
			must(t, err)
			if outcome != mfa.AssertionAccepted {
				t.Fatalf("AcceptAssertion: got %v, want accepted", outcome)
			}
		}, true},
		{"assertion whose count did not grow", func(t *testing.T, user string, now time.Time) {
			outcome, err := s.AcceptAssertion(t.Context(), user, keyID, mfa.AssertionUse{SignCount: 5}, 0, now)
			must(t, err)
			if outcome != mfa.AssertionCloned {
				t.Fatalf("AcceptAssertion: got %v, want cloned", outcome)
			}
		}, false},
		{"recovery code", func(t *testing.T, user string, now time.Time) {
			ok, remaining, err := s.ConsumeRecoveryCode(t.Context(), user, "r1", now)
			must(t, err)
			if !ok || remaining != 1 {
				t.Fatalf("ConsumeRecoveryCode: got %v, %d left; want true, 1", ok, remaining)
			}
		}, true},
		{"wrong recovery code", func(t *testing.T, user string, now time.Time) {
			ok, remaining, err := s.ConsumeRecoveryCode(t.Context(), user, "zz", now)
			must(t, err)
			if ok || remaining != 2 {
				t.Fatalf("ConsumeRecoveryCode: got %v, %d left; want false, 2", ok, remaining)
			}
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := fmt.Sprintf("user%d", i)
			enroll(t, s, u, totpID, 100)
			must(t, addWebAuthn(t, s, u, webauthnFactor(keyID, "cred-"+u, 5), "r1", "r2"))
			// Locked twice: the next lock would be the third back-off.
			wantEvaluated(t, s, u, t0, limits.MaxFailures, limits)
			lockEnd := t0.Add(limits.BaseLockout)
			wantEvaluated(t, s, u, lockEnd, 1, limits)
			lockEnd = lockEnd.Add(2 * limits.BaseLockout)
			now := lockEnd.Add(-time.Second)

			c.success(t, u, now)

			got := getUser(t, s, u)
			if !c.resets {
				if !got.LockedUntil.Equal(lockEnd) || !got.LastVerifiedAt.IsZero() {
					t.Fatalf("after a refusal: LockedUntil %v, last verified %v; want %v and zero", got.LockedUntil, got.LastVerifiedAt, lockEnd)
				}
				wantLocked(t, s, u, now, lockEnd, limits)
				return
			}
			if !got.LockedUntil.IsZero() || !got.LastVerifiedAt.Equal(now) {
				t.Fatalf("after a success: LockedUntil %v, last verified %v; want zero and %v", got.LockedUntil, got.LastVerifiedAt, now)
			}
			wantEvaluated(t, s, u, now, limits.MaxFailures, limits)
			wantLocked(t, s, u, now, now.Add(limits.BaseLockout), limits)
		})
	}
}

func testUsersApart(t *testing.T, s mfa.Store) {
	users := []string{"a}b:{c", "a", "a}", "{u:a}", "user@example.org"}
	for i, u := range users {
		enroll(t, s, u, fmt.Sprintf("00000000000000b%d", i), 10)
	}
	wantEvaluated(t, s, "a", t0, limits.MaxFailures, limits)
	for i, u := range users {
		got := getUser(t, s, u)
		if len(got.Factors) != 1 || got.Factors[0].ID != fmt.Sprintf("00000000000000b%d", i) {
			t.Fatalf("user %q: factors %+v", u, got.Factors)
		}
		if locked := got.Locked(t0); locked != (u == "a") {
			t.Fatalf("user %q: locked %v", u, locked)
		}
	}
}

func testWebAuthnFactor(t *testing.T, s mfa.Store) {
	f := webauthnFactor("00000000000000c1", "cred-1", 7)
	must(t, addWebAuthn(t, s, "alice", f))
	if diff := cmp.Diff([]mfa.Factor{f}, getUser(t, s, "alice").Factors); diff != "" {
		t.Fatalf("WebAuthn factor round trip (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]mfa.Factor{f}, attempt(t, s, "alice", t0).Factors); diff != "" {
		t.Fatalf("StartAttempt factors (-want +got):\n%s", diff)
	}
}

func testDuplicateCredential(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	must(t, addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c1", "cred-1", 0)))
	hb := session("bob", "hb", true)
	must(t, s.CreateEnrollment(ctx, hb))
	g := webauthnFactor("00000000000000c2", "cred-1", 0)
	err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "bob", FactorID: g.ID, Factor: &g, TokenHash: "hb", FirstFactor: true, Now: t0})
	wantErr(t, "another user's credential ID", err, mfa.ErrDuplicate)
	wantSession(t, s, hb, t0)
	if u := getUser(t, s, "bob"); len(u.Factors) != 0 {
		t.Fatalf("a duplicate credential was stored: %+v", u.Factors)
	}
	err = addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c3", "cred-1", 0))
	wantErr(t, "the same user's credential ID again", err, mfa.ErrDuplicate)
	if u := getUser(t, s, "alice"); len(u.Factors) != 1 {
		t.Fatalf("alice's factors after her duplicate: %+v", u.Factors)
	}
}

// testAcceptAssertion pins the sign-count rule: an assertion is accepted if
// its count is greater than the stored one, or both are zero (an
// authenticator without a counter); only then are the count and flags
// stored. Any other count is a clone: the factor is suspended at now, its
// count and flags unchanged, and every later assertion is refused, whatever
// its count, until SuspendFactor lifts the suspension.
func testAcceptAssertion(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	type row struct {
		count uint32
		want  mfa.AssertionOutcome
	}
	accepted, cloned := mfa.AssertionAccepted, mfa.AssertionCloned
	for _, user := range []struct {
		name  string
		start uint32
		rows  []row
	}{
		{"counter", 3, []row{{3, cloned}, {2, cloned}, {0, cloned}, {4, accepted}, {4, cloned}, {9, accepted},
			{math.MaxUint32, accepted}, {math.MaxUint32, cloned}, {0, cloned}}},
		{"no counter", 0, []row{{0, accepted}, {0, accepted}, {5, accepted}, {0, cloned}, {5, cloned}, {6, accepted}}},
	} {
		t.Run(user.name, func(t *testing.T) {
			f := webauthnFactor("00000000000000c1", "cred-"+user.name, user.start)
			must(t, addWebAuthn(t, s, user.name, f))
			want := *f.WebAuthn
			var lastUsed time.Time
			// check fails unless the credential is as want, last used at
			// lastUsed and suspended at suspended.
			check := func(when string, suspended time.Time) {
				t.Helper()
				u := getUser(t, s, user.name)
				if diff := cmp.Diff(&want, u.Factors[0].WebAuthn); diff != "" {
					t.Fatalf("%s: credential (-want +got):\n%s", when, diff)
				}
				if !u.Factors[0].LastUsedAt.Equal(lastUsed) || !u.LastVerifiedAt.Equal(lastUsed) {
					t.Fatalf("%s: last used %v, last verified %v; want %v", when, u.Factors[0].LastUsedAt, u.LastVerifiedAt, lastUsed)
				}
				if got := u.Factors[0].SuspendedAt; !got.Equal(suspended) {
					t.Fatalf("%s: suspended at %v, want %v", when, got, suspended)
				}
			}
			for i, c := range user.rows {
				now := t0.Add(time.Duration(i+1) * time.Minute)
				// Flags change with each row, to see whether they are stored.
				use := mfa.AssertionUse{SignCount: c.count, BackupState: i%2 == 0, UserVerified: i%3 == 0}
				got, err := s.AcceptAssertion(ctx, user.name, f.ID, use, 0, now)
				must(t, err)
				if got != c.want {
					t.Fatalf("row %d: AcceptAssertion(sign count %d) after %d: got %v, want %v", i, c.count, want.SignCount, got, c.want)
				}
				when := fmt.Sprintf("row %d: after AcceptAssertion(sign count %d)", i, c.count)
				if got == accepted {
					want.SignCount, want.BackupState, want.UserVerified = use.SignCount, use.BackupState, use.UserVerified
					lastUsed = now
					check(when, time.Time{})
					continue
				}
				check(when, now)
				// Suspended: refused whatever the count, and nothing changes.
				for _, count := range []uint32{want.SignCount + 1, math.MaxUint32, 0} {
					got, err := s.AcceptAssertion(ctx, user.name, f.ID, mfa.AssertionUse{SignCount: count}, 0, now.Add(time.Second))
					must(t, err)
					if got != mfa.AssertionRefused {
						t.Fatalf("row %d: suspended, AcceptAssertion(sign count %d): got %v, want refused", i, count, got)
					}
				}
				check(when+" and assertions while suspended", now)
				must(t, s.SuspendFactor(ctx, user.name, f.ID, time.Time{}))
				check(when+" and the suspension lifted", time.Time{})
			}
		})
	}
	for _, c := range []struct {
		name, user, factor string
	}{
		{"a factor that does not exist", "counter", "00000000000000ff"},
		{"a TOTP factor", "bob", "00000000000000a1"},
		{"an unknown user's factor", "nobody", "00000000000000c1"},
	} {
		if c.user == "bob" {
			enroll(t, s, "bob", c.factor, 1)
		}
		got, err := s.AcceptAssertion(ctx, c.user, c.factor, mfa.AssertionUse{SignCount: math.MaxUint32}, 0, t0)
		must(t, err)
		if got != mfa.AssertionRefused {
			t.Fatalf("AcceptAssertion of %s: got %v, want refused", c.name, got)
		}
	}
	if u := getUser(t, s, "bob"); !u.Factors[0].SuspendedAt.IsZero() {
		t.Fatalf("a TOTP factor suspended by an assertion: %+v", u.Factors[0])
	}
}

func testChallenge(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	c := mfa.Challenge{UserID: "alice", Name: "key", Session: []byte(`{"challenge":"abc"}`)}
	must(t, s.PutChallenge(ctx, "ch1", c, t0.Add(5*time.Minute)))
	got, err := s.TakeChallenge(ctx, "ch1", t0)
	must(t, err)
	if diff := cmp.Diff(c, got); diff != "" {
		t.Fatalf("challenge round trip (-want +got):\n%s", diff)
	}
	_, err = s.TakeChallenge(ctx, "ch1", t0)
	wantErr(t, "a challenge taken twice", err, mfa.ErrNotFound)
	_, err = s.TakeChallenge(ctx, "nope", t0)
	wantErr(t, "an unknown challenge", err, mfa.ErrNotFound)
}

// testChallengeExpiry pins the end of a challenge; an expired challenge is
// deleted when taken.
func testChallengeExpiry(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	expires := t0.Add(5 * time.Minute)
	c := mfa.Challenge{UserID: "alice", Session: []byte("{}")}
	must(t, s.PutChallenge(ctx, "before", c, expires))
	must(t, s.PutChallenge(ctx, "at", c, expires))
	got, err := s.TakeChallenge(ctx, "before", expires.Add(-ms))
	must(t, err)
	if diff := cmp.Diff(c, got); diff != "" {
		t.Fatalf("a challenge a millisecond before its end (-want +got):\n%s", diff)
	}
	_, err = s.TakeChallenge(ctx, "at", expires)
	wantErr(t, "a challenge at its end", err, mfa.ErrNotFound)
	_, err = s.TakeChallenge(ctx, "at", t0)
	wantErr(t, "an expired challenge, taken earlier", err, mfa.ErrNotFound)
}

func testRecoveryCodes(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	must(t, addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c1", "cred-1", 0), "r1", "r2", "r3"))
	if u := getUser(t, s, "alice"); u.RecoveryCodes != 3 {
		t.Fatalf("recovery codes after confirmation: %d, want 3", u.RecoveryCodes)
	}
	for i, c := range []struct {
		hash      string
		ok        bool
		remaining int
	}{{"r2", true, 2}, {"r2", false, 2}, {"zz", false, 2}, {"R1", false, 2}, {"r1", true, 1}} {
		now := t0.Add(time.Duration(i) * time.Minute)
		ok, remaining, err := s.ConsumeRecoveryCode(ctx, "alice", c.hash, now)
		must(t, err)
		if ok != c.ok || remaining != c.remaining {
			t.Fatalf("ConsumeRecoveryCode(%s): %v, %d left; want %v, %d", c.hash, ok, remaining, c.ok, c.remaining)
		}
		if u := getUser(t, s, "alice"); u.RecoveryCodes != c.remaining {
			t.Fatalf("after ConsumeRecoveryCode(%s): User has %d codes, want %d", c.hash, u.RecoveryCodes, c.remaining)
		}
	}
	if u := getUser(t, s, "alice"); !u.LastVerifiedAt.Equal(t0.Add(4 * time.Minute)) {
		t.Fatalf("last verified %v, want the last code's time %v", u.LastVerifiedAt, t0.Add(4*time.Minute))
	}
	ok, remaining, err := s.ConsumeRecoveryCode(ctx, "bob", "r3", t0)
	must(t, err)
	if ok || remaining != 0 {
		t.Fatalf("bob with alice's recovery code: %v, %d left; want false, 0", ok, remaining)
	}
	// A later confirmation without recovery hashes keeps the codes...
	enroll(t, s, "alice", "00000000000000a1", 1)
	if u := getUser(t, s, "alice"); u.RecoveryCodes != 1 {
		t.Fatalf("after adding a factor without codes: %d recovery codes, want 1", u.RecoveryCodes)
	}
	// ...and one with recovery hashes replaces them.
	must(t, addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c2", "cred-2", 0), "n1", "n2"))
	for _, c := range []struct {
		hash      string
		ok        bool
		remaining int
	}{{"r3", false, 2}, {"n1", true, 1}} {
		ok, remaining, err := s.ConsumeRecoveryCode(ctx, "alice", c.hash, t0)
		must(t, err)
		if ok != c.ok || remaining != c.remaining {
			t.Fatalf("after replacing, ConsumeRecoveryCode(%s): %v, %d left; want %v, %d", c.hash, ok, remaining, c.ok, c.remaining)
		}
	}
}

// testRecoveryCodesAreASet: a hash given twice is one code.
func testRecoveryCodesAreASet(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	must(t, addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c1", "cred-1", 0), "r1", "r1", "r2"))
	if u := getUser(t, s, "alice"); u.RecoveryCodes != 2 {
		t.Fatalf("codes r1, r1, r2: %d recovery codes, want 2", u.RecoveryCodes)
	}
	for _, c := range []struct {
		hash      string
		ok        bool
		remaining int
	}{{"r1", true, 1}, {"r1", false, 1}} {
		ok, remaining, err := s.ConsumeRecoveryCode(ctx, "alice", c.hash, t0)
		must(t, err)
		if ok != c.ok || remaining != c.remaining {
			t.Fatalf("ConsumeRecoveryCode(%s): %v, %d left; want %v, %d", c.hash, ok, remaining, c.ok, c.remaining)
		}
	}
	must(t, s.CreateEnrollment(ctx, session("alice", "more", false)))
	must(t, s.ReplaceRecoveryCodes(ctx, "more", "alice", []string{"n1", "n1"}, t0))
	if u := getUser(t, s, "alice"); u.RecoveryCodes != 1 {
		t.Fatalf("codes replaced by n1, n1: %d recovery codes, want 1", u.RecoveryCodes)
	}
}

func testReplaceRecoveryCodes(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	must(t, s.CreateEnrollment(ctx, session("alice", "first", true)))
	err := s.ReplaceRecoveryCodes(ctx, "first", "alice", []string{"n1"}, t0)
	wantErr(t, "replace without a factor", err, mfa.ErrConflict)

	must(t, addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c1", "cred-1", 0), "o1", "o2"))
	err = s.ReplaceRecoveryCodes(ctx, "first", "alice", []string{"n1"}, t0)
	wantErr(t, "replace with a first-factor session", err, mfa.ErrConflict)
	err = s.ReplaceRecoveryCodes(ctx, "nope", "alice", []string{"n1"}, t0)
	wantErr(t, "replace with no session", err, mfa.ErrNotFound)
	unactivated := session("alice", "unactivated", false)
	unactivated.NeedsActivation = true
	must(t, s.CreateEnrollment(ctx, unactivated))
	err = s.ReplaceRecoveryCodes(ctx, "unactivated", "alice", []string{"n1"}, t0)
	wantErr(t, "replace with a session not activated", err, mfa.ErrConflict)
	must(t, s.CreateEnrollment(ctx, session("alice", "more", false)))
	err = s.ReplaceRecoveryCodes(ctx, "more", "bob", []string{"n1"}, t0)
	wantErr(t, "replace with another user's session", err, mfa.ErrNotFound)
	if u := getUser(t, s, "alice"); u.RecoveryCodes != 2 {
		t.Fatalf("refused replacements: %d recovery codes, want 2", u.RecoveryCodes)
	}

	must(t, s.ReplaceRecoveryCodes(ctx, "more", "alice", []string{"n1", "n2", "n3"}, t0))
	_, err = s.Enrollment(ctx, "more", t0)
	wantErr(t, "the session after replacing", err, mfa.ErrNotFound)
	for _, c := range []struct {
		hash      string
		ok        bool
		remaining int
	}{{"o1", false, 3}, {"n2", true, 2}} {
		ok, remaining, err := s.ConsumeRecoveryCode(ctx, "alice", c.hash, t0)
		must(t, err)
		if ok != c.ok || remaining != c.remaining {
			t.Fatalf("after replacing, ConsumeRecoveryCode(%s): %v, %d left; want %v, %d", c.hash, ok, remaining, c.ok, c.remaining)
		}
	}

	// Replaced by none, there are none.
	must(t, s.CreateEnrollment(ctx, session("alice", "none", false)))
	must(t, s.ReplaceRecoveryCodes(ctx, "none", "alice", nil, t0))
	ok, remaining, err := s.ConsumeRecoveryCode(ctx, "alice", "n1", t0)
	must(t, err)
	if ok || remaining != 0 {
		t.Fatalf("after replacing by none: %v, %d left; want false, 0", ok, remaining)
	}
}

// race runs fn n times at once and returns how many returned true.
func race(t *testing.T, n int, fn func(i int) (bool, error)) int {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		wins  int
		errs  []error
		start = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			ok, err := fn(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				wins++
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d calls failed, first: %v", len(errs), n, errs[0])
	}
	return wins
}

func testConcurrentAccept(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	id := "00000000000000a1"
	enroll(t, s, "alice", id, 100)
	wins := race(t, 50, func(int) (bool, error) { return s.AcceptTOTPStep(ctx, "alice", id, 101, 0, t0) })
	if wins != 1 {
		t.Fatalf("one step sent 50 times at once: accepted %d times, want 1", wins)
	}
}

func testConcurrentStartAttempt(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	enroll(t, s, "alice", "00000000000000a1", 100)
	var setLock atomic.Int64
	evaluated := race(t, 50, func(int) (bool, error) {
		a, err := s.StartAttempt(ctx, "alice", t0, limits)
		if err == nil && !a.Locked && !a.LockedUntil.IsZero() {
			setLock.Add(1)
		}
		return err == nil && !a.Locked, err
	})
	if evaluated != limits.MaxFailures {
		t.Fatalf("50 attempts at once: %d evaluated, want exactly %d", evaluated, limits.MaxFailures)
	}
	if n := setLock.Load(); n != 1 {
		t.Fatalf("50 attempts at once: %d report setting the lock, want exactly 1", n)
	}
}

func testConcurrentConfirm(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	must(t, s.CreateEnrollment(ctx, session("alice", "hash1", true)))
	f := totpFactor("00000000000000a1")
	must(t, s.PutPendingFactor(ctx, "alice", f, t0.Add(10*time.Minute)))
	wins := race(t, 20, func(int) (bool, error) {
		err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: f.ID, TokenHash: "hash1", FirstFactor: true, Step: 1, Now: t0})
		if errors.Is(err, mfa.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	})
	if wins != 1 {
		t.Fatalf("one session confirmed %d times at once, want 1", wins)
	}
	if u := getUser(t, s, "alice"); len(u.Factors) != 1 {
		t.Fatalf("after the race: %d factors, want 1", len(u.Factors))
	}
}

func testConcurrentActivate(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	for i := range 20 {
		e := session("alice", fmt.Sprintf("hash%d", i), true)
		e.NeedsActivation = true
		must(t, s.CreateEnrollment(ctx, e))
	}
	must(t, s.PutActivationCode(ctx, "alice", "code", t0.Add(time.Hour)))
	wins := race(t, 20, func(i int) (bool, error) {
		err := s.ActivateEnrollment(ctx, fmt.Sprintf("hash%d", i), "alice", "code", t0)
		if errors.Is(err, mfa.ErrWrongCode) {
			return false, nil
		}
		return err == nil, err
	})
	if wins != 1 {
		t.Fatalf("one activation code activated %d sessions, want 1", wins)
	}
}

func testConcurrentTakeChallenge(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	must(t, s.PutChallenge(ctx, "ch", mfa.Challenge{UserID: "alice", Session: []byte("{}")}, t0.Add(time.Minute)))
	wins := race(t, 50, func(int) (bool, error) {
		_, err := s.TakeChallenge(ctx, "ch", t0)
		if errors.Is(err, mfa.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	})
	if wins != 1 {
		t.Fatalf("one challenge taken %d times at once, want 1", wins)
	}
}

func testConcurrentAcceptAssertion(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	f := webauthnFactor("00000000000000c1", "cred-1", 1)
	must(t, addWebAuthn(t, s, "alice", f))
	var mu sync.Mutex
	outcomes := map[mfa.AssertionOutcome]int{}
	race(t, 50, func(int) (bool, error) {
		outcome, err := s.AcceptAssertion(ctx, "alice", f.ID, mfa.AssertionUse{SignCount: 2}, 0, t0)
		mu.Lock()
		defer mu.Unlock()
		outcomes[outcome]++
		return false, err
	})
	// The first accepted it, the second found the count used and suspended
	// the key, and the key refused the others.
	want := map[mfa.AssertionOutcome]int{mfa.AssertionAccepted: 1, mfa.AssertionCloned: 1, mfa.AssertionRefused: 48}
	if diff := cmp.Diff(want, outcomes); diff != "" {
		t.Fatalf("one sign count sent 50 times at once: outcomes (-want +got):\n%s", diff)
	}
}

func testConcurrentConsumeRecovery(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	must(t, addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c1", "cred-1", 0), "r1", "r2"))
	var mu sync.Mutex
	var remainders []int
	wins := race(t, 30, func(int) (bool, error) {
		ok, remaining, err := s.ConsumeRecoveryCode(ctx, "alice", "r1", t0)
		mu.Lock()
		remainders = append(remainders, remaining)
		mu.Unlock()
		return ok, err
	})
	if wins != 1 {
		t.Fatalf("one recovery code accepted %d times at once, want 1", wins)
	}
	for _, r := range remainders {
		if r != 1 {
			t.Fatalf("remaining codes during the race: %v, want all 1", remainders)
		}
	}
}

// testConcurrentDuplicateCredential races users to register one credential
// ID: exactly one has it, the others are refused with ErrDuplicate and keep
// their sessions.
func testConcurrentDuplicateCredential(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	const n = 20
	for i := range n {
		u := fmt.Sprintf("user%d", i)
		must(t, s.CreateEnrollment(ctx, session(u, "h"+u, true)))
	}
	var mu sync.Mutex
	dups := 0
	wins := race(t, n, func(i int) (bool, error) {
		u := fmt.Sprintf("user%d", i)
		f := webauthnFactor(fmt.Sprintf("%016x", i), "the-one-credential", 0)
		err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: u, FactorID: f.ID, Factor: &f, TokenHash: "h" + u, FirstFactor: true, Now: t0})
		if errors.Is(err, mfa.ErrDuplicate) {
			mu.Lock()
			dups++
			mu.Unlock()
			_, err := s.Enrollment(ctx, "h"+u, t0)
			return false, err
		}
		return err == nil, err
	})
	if wins != 1 || dups != n-1 {
		t.Fatalf("one credential ID raced by %d users: %d registered, %d duplicates; want 1 and %d", n, wins, dups, n-1)
	}
	owners := 0
	for i := range n {
		owners += len(getUser(t, s, fmt.Sprintf("user%d", i)).Factors)
	}
	if owners != 1 {
		t.Fatalf("%d users have the credential, want 1", owners)
	}
}
