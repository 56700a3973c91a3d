package mfa_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/secret"
)

var (
	accepted = mfa.Result{Verdict: mfa.Accepted}
	rejected = mfa.Result{Verdict: mfa.Rejected}
)

func lockedFor(d time.Duration) mfa.Result { return mfa.Result{Verdict: mfa.Locked, RetryAfter: d} }

// TestVerifyTOTPWindow: a code of the current step or one step either side
// is accepted; two steps away, or a wrong code, is not.
func TestVerifyTOTPWindow(t *testing.T) {
	e := newEnv(t, envOptions{})
	tests := []struct {
		name   string
		offset int64 // steps from now; wrong if 99
		want   mfa.Result
	}{
		{"current step", 0, accepted},
		{"previous step", -1, accepted},
		{"next step", 1, accepted},
		{"two steps back", -2, rejected},
		{"two steps ahead", 2, rejected},
		{"wrong code", 99, rejected},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := e.enrollTOTP(t, fmt.Sprintf("dr-%d", i))
			// Well past the confirming step, so no step of the window has
			// been used.
			e.clock.Advance(5 * period)
			code := e.wrongCode(t, u)
			if tt.offset != 99 {
				code = e.code(t, u, tt.offset)
			}
			if tt.want.Verdict == mfa.Rejected && e.inWindow(t, u, code) {
				t.Fatalf("precondition: %s is also the code of a step in the window", code)
			}
			if diff := cmp.Diff(tt.want, e.verify(t, u.userID, code)); diff != "" {
				t.Errorf("VerifyTOTP mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestVerifyTOTPReplay: a step is accepted at most once, and never a step
// before the last accepted one, the confirming step included.
func TestVerifyTOTPReplay(t *testing.T) {
	e := newEnv(t, envOptions{})
	ne := e.createSession(t, "dr-replay", mfa.ProofStrong)
	p, err := e.svc.BeginTOTPEnrollment(t.Context(), ne.Token.Reveal(), "phone", "")
	if err != nil {
		t.Fatal(err)
	}
	u := enrolled{userID: "dr-replay", secret: p.Key.Secret, params: p.Params}
	confirming := e.code(t, u, 0)
	if _, _, err := e.svc.FinishTOTPEnrollment(t.Context(), ne.Token.Reveal(), p.FactorID, confirming); err != nil {
		t.Fatal(err)
	}
	if prev := e.code(t, u, -1); prev == confirming || prev == e.code(t, u, 1) {
		t.Fatalf("precondition: the previous step's code %s is also another step's", prev)
	}
	steps := []struct {
		name string
		code string
		want mfa.Result
	}{
		{"the confirming code", confirming, rejected},
		{"the previous step", e.code(t, u, -1), rejected},
		{"the next step", e.code(t, u, 1), accepted},
		{"the next step again", e.code(t, u, 1), rejected},
		{"the confirming code after a later step", confirming, rejected},
	}
	var got, want []string
	for _, s := range steps {
		got = append(got, fmt.Sprintf("%s: %+v", s.name, e.verify(t, u.userID, s.code)))
		want = append(want, fmt.Sprintf("%s: %+v", s.name, s.want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdicts mismatch (-want +got):\n%s", diff)
	}
}

// TestVerifyTOTPLock: MaxFailures failures lock the user, even against the
// right code, until the lock ends; an unknown user gets the same answers as
// a wrong code, lock included.
func TestVerifyTOTPLock(t *testing.T) {
	e := newEnv(t, envOptions{})
	u := e.enrollTOTP(t, "dr-locked")
	sequence := func(userID string, code func() string) []mfa.Result {
		var out []mfa.Result
		for range limits.MaxFailures {
			out = append(out, e.verify(t, userID, e.wrongCode(t, u)))
		}
		return append(out, e.verify(t, userID, code()))
	}
	want := []mfa.Result{rejected, rejected, rejected, lockedFor(limits.BaseLockout)}
	gotKnown := sequence(u.userID, func() string { return e.code(t, u, 0) })
	gotUnknown := sequence("nobody-by-this-name", func() string { return e.code(t, u, 0) })
	if diff := cmp.Diff(want, gotKnown); diff != "" {
		t.Errorf("enrolled user, wrong codes then the right one (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(gotKnown, gotUnknown); diff != "" {
		t.Errorf("an unknown user is told apart from a wrong code (-enrolled +unknown):\n%s", diff)
	}
	// Still locked one second before the end; the right code passes after.
	e.clock.Advance(limits.BaseLockout - time.Second)
	if diff := cmp.Diff(lockedFor(time.Second), e.verify(t, u.userID, e.code(t, u, 0))); diff != "" {
		t.Errorf("1 s before the lock ends (-want +got):\n%s", diff)
	}
	e.clock.Advance(2 * time.Second)
	if diff := cmp.Diff(accepted, e.verify(t, u.userID, e.code(t, u, 0))); diff != "" {
		t.Errorf("after the lock (-want +got):\n%s", diff)
	}
	// The success reset the count: MaxFailures-1 failures lock nothing.
	e.clock.Advance(period)
	for i := range limits.MaxFailures - 1 {
		if r := e.verify(t, u.userID, e.wrongCode(t, u)); r != rejected {
			t.Fatalf("failure %d: %+v, want rejected", i+1, r)
		}
	}
	if diff := cmp.Diff(accepted, e.verify(t, u.userID, e.code(t, u, 0))); diff != "" {
		t.Errorf("after %d failures (-want +got):\n%s", limits.MaxFailures-1, diff)
	}
}

// TestVerifyRecoveryCode: each code works once, however it is typed; a
// wrong code is rejected like an unknown user's, and failures count
// towards the same lock as TOTP.
func TestVerifyRecoveryCode(t *testing.T) {
	e := newEnv(t, envOptions{})
	u := e.enrollTOTP(t, "dr-recovery")
	if len(u.recovery) != mfa.RecoveryCodeCount {
		t.Fatalf("%d recovery codes, want %d", len(u.recovery), mfa.RecoveryCodeCount)
	}
	unknown := "0000-0000-0000-0000"
	if slices.Contains(u.recovery, secret.String(unknown)) {
		t.Fatalf("the user's codes include %s", unknown)
	}
	typed := strings.ToLower(strings.ReplaceAll(u.recovery[1].Reveal(), "-", ""))
	steps := []struct {
		name   string
		userID string
		code   string
		want   mfa.RecoveryResult
	}{
		{"a code", u.userID, u.recovery[0].Reveal(), mfa.RecoveryResult{Result: accepted, Remaining: 9}},
		{"the same code again", u.userID, u.recovery[0].Reveal(), mfa.RecoveryResult{Result: rejected}},
		{"another, lower case without dashes", u.userID, typed, mfa.RecoveryResult{Result: accepted, Remaining: 8}},
		{"a code the user never had", u.userID, unknown, mfa.RecoveryResult{Result: rejected}},
		{"a code of an unknown user", "nobody-by-this-name", u.recovery[2].Reveal(), mfa.RecoveryResult{Result: rejected}},
	}
	for _, s := range steps {
		got, err := e.svc.VerifyRecoveryCode(t.Context(), s.userID, s.code, mfa.Client{})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("%s: mismatch (-want +got):\n%s", s.name, diff)
		}
	}

	_, err := e.svc.VerifyRecoveryCode(t.Context(), u.userID, "ABC", mfa.Client{})
	if diff := cmp.Diff(badField("code"), outcomeOf(t, err)); diff != "" {
		t.Errorf("a malformed code (-want +got):\n%s", diff)
	}

	// Wrong recovery codes lock TOTP too, and the recovery codes.
	for range limits.MaxFailures {
		if _, err := e.svc.VerifyRecoveryCode(t.Context(), u.userID, unknown, mfa.Client{}); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(lockedFor(limits.BaseLockout), e.verify(t, u.userID, e.code(t, u, 0))); diff != "" {
		t.Errorf("TOTP after wrong recovery codes (-want +got):\n%s", diff)
	}
	got, err := e.svc.VerifyRecoveryCode(t.Context(), u.userID, u.recovery[3].Reveal(), mfa.Client{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(mfa.RecoveryResult{Result: lockedFor(limits.BaseLockout)}, got); diff != "" {
		t.Errorf("a good recovery code while locked (-want +got):\n%s", diff)
	}
}

// TestRegenerateRecoveryCodes: only a session backed by an existing factor
// replaces the codes; the old ones stop working.
func TestRegenerateRecoveryCodes(t *testing.T) {
	e := newEnv(t, envOptions{})
	first := e.createSession(t, "dr-regen", mfa.ProofStrong)
	_, err := e.svc.RegenerateRecoveryCodes(t.Context(), first.Token.Reveal())
	if diff := cmp.Diff(refused(mfa.ReasonNeedsExistingFactor), outcomeOf(t, err)); diff != "" {
		t.Errorf("with a first-factor session (-want +got):\n%s", diff)
	}

	u := e.finishTOTP(t, "dr-regen", first.Token.Reveal(), "")
	if r := e.verify(t, u.userID, e.code(t, u, 0)); r.Verdict != mfa.Accepted {
		t.Fatalf("verification: %+v", r)
	}
	ne := e.createSession(t, "dr-regen", mfa.ProofExistingFactor)
	codes, err := e.svc.RegenerateRecoveryCodes(t.Context(), ne.Token.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != mfa.RecoveryCodeCount {
		t.Errorf("%d new codes, want %d", len(codes), mfa.RecoveryCodeCount)
	}
	for _, c := range []struct {
		name string
		code secret.String
		want mfa.Verdict
	}{
		{"an old code", u.recovery[0], mfa.Rejected},
		{"a new code", codes[0], mfa.Accepted},
	} {
		got, err := e.svc.VerifyRecoveryCode(t.Context(), u.userID, c.code.Reveal(), mfa.Client{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Verdict != c.want {
			t.Errorf("%s: %v, want %v", c.name, got.Verdict, c.want)
		}
	}
	// The session was spent by the regeneration.
	_, err = e.svc.RegenerateRecoveryCodes(t.Context(), ne.Token.Reveal())
	if diff := cmp.Diff(refused(mfa.ReasonSessionNotFound), outcomeOf(t, err)); diff != "" {
		t.Errorf("the same session again (-want +got):\n%s", diff)
	}
}

// TestActivationCode: a password-only session under the activation-code
// policy enrols only with the user's unexpired, unused activation code.
func TestActivationCode(t *testing.T) {
	e := newEnv(t, envOptions{policy: mfa.PolicyActivationCode})
	issue := func(t *testing.T, userID string) string {
		t.Helper()
		code, _, err := e.svc.IssueActivationCode(asAdmin(t), userID, "identity checked")
		if err != nil {
			t.Fatal(err)
		}
		return code.Reveal()
	}
	tests := []struct {
		name string
		// code returns the activation code to give for the session of userID,
		// issuing and spending codes as the case needs.
		code func(t *testing.T, userID string) string
		want outcome
	}{
		{"the user's code", func(t *testing.T, userID string) string { return issue(t, userID) }, outcome{}},
		{"the code typed in lower case", func(t *testing.T, userID string) string { return strings.ToLower(issue(t, userID)) }, outcome{}},
		{"no code", func(t *testing.T, userID string) string { return "" }, refused(mfa.ReasonNeedsActivationCode)},
		{"no code issued", func(t *testing.T, userID string) string { return "ABCD-EFGH-JKMN" }, refused(mfa.ReasonWrongActivationCode)},
		{"a wrong code", func(t *testing.T, userID string) string {
			right := issue(t, userID)
			wrong := "ABCD-EFGH-JKMN"
			if right == wrong {
				wrong = "ABCD-EFGH-JKMP"
			}
			return wrong
		}, refused(mfa.ReasonWrongActivationCode)},
		{"another user's code", func(t *testing.T, userID string) string { return issue(t, userID+"-other") }, refused(mfa.ReasonWrongActivationCode)},
		{"a replaced code", func(t *testing.T, userID string) string {
			old := issue(t, userID)
			issue(t, userID)
			return old
		}, refused(mfa.ReasonWrongActivationCode)},
		{"an expired code", func(t *testing.T, userID string) string {
			c := issue(t, userID)
			e.clock.Advance(activationTTL + time.Second)
			return c
		}, refused(mfa.ReasonWrongActivationCode)},
		{"a code just before it expires", func(t *testing.T, userID string) string {
			c := issue(t, userID)
			e.clock.Advance(activationTTL - time.Second)
			return c
		}, outcome{}},
		{"a code already used", func(t *testing.T, userID string) string {
			c := issue(t, userID)
			other := e.createSession(t, userID, mfa.ProofPasswordOnly)
			if _, err := e.svc.BeginTOTPEnrollment(t.Context(), other.Token.Reveal(), "phone", c); err != nil {
				t.Fatalf("first use of the code: %v", err)
			}
			return c
		}, refused(mfa.ReasonWrongActivationCode)},
		{"a malformed code", func(t *testing.T, userID string) string { return "ABCD-!" }, badField("activation_code")},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			userID := fmt.Sprintf("dr-%d", i)
			ne := e.createSession(t, userID, mfa.ProofPasswordOnly)
			if !ne.NeedsActivation {
				t.Fatal("the session does not need an activation code")
			}
			code := tt.code(t, userID)
			p, err := e.svc.BeginTOTPEnrollment(t.Context(), ne.Token.Reveal(), "phone", code)
			if diff := cmp.Diff(tt.want, outcomeOf(t, err)); diff != "" {
				t.Fatalf("BeginTOTPEnrollment mismatch (-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			// Activated, the session needs the code no more.
			u := enrolled{secret: p.Key.Secret, params: p.Params}
			if _, _, err := e.svc.FinishTOTPEnrollment(t.Context(), ne.Token.Reveal(), p.FactorID, e.code(t, u, 0)); err != nil {
				t.Errorf("FinishTOTPEnrollment in the activated session: %v", err)
			}
		})
	}
}

// TestActivationCodeLock: wrong activation codes count as failures; at the
// limit the session answers locked, even to the right code.
func TestActivationCodeLock(t *testing.T) {
	e := newEnv(t, envOptions{policy: mfa.PolicyActivationCode})
	ne := e.createSession(t, "dr-guess", mfa.ProofPasswordOnly)
	code, _, err := e.svc.IssueActivationCode(asAdmin(t), "dr-guess", "identity checked")
	if err != nil {
		t.Fatal(err)
	}
	wrong := "ABCD-EFGH-JKMN"
	if code.Reveal() == wrong {
		wrong = "ABCD-EFGH-JKMP"
	}
	var got []outcome
	for range limits.MaxFailures {
		_, err := e.svc.BeginTOTPEnrollment(t.Context(), ne.Token.Reveal(), "phone", wrong)
		got = append(got, outcomeOf(t, err))
	}
	_, err = e.svc.BeginTOTPEnrollment(t.Context(), ne.Token.Reveal(), "phone", code.Reveal())
	got = append(got, outcomeOf(t, err))
	w := refused(mfa.ReasonWrongActivationCode)
	if diff := cmp.Diff([]outcome{w, w, w, refused(mfa.ReasonLocked)}, got); diff != "" {
		t.Errorf("outcomes mismatch (-want +got):\n%s", diff)
	}
}

// TestSessionAndPendingFactorNotFound: unknown, spent and expired sessions
// and pending factors, each with its reason.
func TestSessionAndPendingFactorNotFound(t *testing.T) {
	e := newEnv(t, envOptions{})
	begin := func(t *testing.T, token string) error {
		t.Helper()
		_, err := e.svc.BeginTOTPEnrollment(t.Context(), token, "phone", "")
		return err
	}
	unknownToken, err := secret.NewToken(strings.NewReader(strings.Repeat("x", 32)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(refused(mfa.ReasonSessionNotFound), outcomeOf(t, begin(t, unknownToken.Reveal()))); diff != "" {
		t.Errorf("an unknown token (-want +got):\n%s", diff)
	}

	spent := e.createSession(t, "dr-spent", mfa.ProofStrong)
	e.finishTOTP(t, "dr-spent", spent.Token.Reveal(), "")
	if diff := cmp.Diff(refused(mfa.ReasonSessionNotFound), outcomeOf(t, begin(t, spent.Token.Reveal()))); diff != "" {
		t.Errorf("a spent session (-want +got):\n%s", diff)
	}

	expired := e.createSession(t, "dr-late", mfa.ProofStrong)
	e.clock.Advance(enrollmentTTL + time.Second)
	if diff := cmp.Diff(refused(mfa.ReasonSessionNotFound), outcomeOf(t, begin(t, expired.Token.Reveal()))); diff != "" {
		t.Errorf("an expired session (-want +got):\n%s", diff)
	}

	ne := e.createSession(t, "dr-pending", mfa.ProofStrong)
	p, err := e.svc.BeginTOTPEnrollment(t.Context(), ne.Token.Reveal(), "phone", "")
	if err != nil {
		t.Fatal(err)
	}
	u := enrolled{secret: p.Key.Secret, params: p.Params}
	finish := func(factorID, code string) error {
		_, _, err := e.svc.FinishTOTPEnrollment(t.Context(), ne.Token.Reveal(), factorID, code)
		return err
	}
	otherID := "0123456789abcdef"
	if otherID == p.FactorID {
		otherID = "fedcba9876543210"
	}
	if diff := cmp.Diff(refused(mfa.ReasonPendingFactorNotFound), outcomeOf(t, finish(otherID, e.code(t, u, 0)))); diff != "" {
		t.Errorf("an unknown pending factor (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(badField("code"), outcomeOf(t, finish(p.FactorID, e.wrongCode(t, u)))); diff != "" {
		t.Errorf("a wrong confirming code (-want +got):\n%s", diff)
	}
	e.clock.Advance(pendingTTL + time.Second)
	if diff := cmp.Diff(refused(mfa.ReasonPendingFactorNotFound), outcomeOf(t, finish(p.FactorID, e.code(t, u, 0)))); diff != "" {
		t.Errorf("an expired pending factor (-want +got):\n%s", diff)
	}
}

// TestWebAuthnRefusals: WebAuthn calls without a relying party, and a
// registration finished without one begun.
func TestWebAuthnRefusals(t *testing.T) {
	off := newEnv(t, envOptions{})
	ne := off.createSession(t, "dr-key", mfa.ProofStrong)
	_, err := off.svc.BeginWebAuthnRegistration(t.Context(), ne.Token.Reveal(), "key", "")
	if diff := cmp.Diff(refused(mfa.ReasonWebAuthnDisabled), outcomeOf(t, err)); diff != "" {
		t.Errorf("registration without WebAuthn (-want +got):\n%s", diff)
	}
	_, err = off.svc.BeginWebAuthnLogin(t.Context(), "dr-key", mfa.Client{})
	if diff := cmp.Diff(refused(mfa.ReasonWebAuthnDisabled), outcomeOf(t, err)); diff != "" {
		t.Errorf("login without WebAuthn (-want +got):\n%s", diff)
	}

	on := newEnv(t, envOptions{webauthn: true})
	ne = on.createSession(t, "dr-key", mfa.ProofStrong)
	_, _, err = on.svc.FinishWebAuthnRegistration(t.Context(), ne.Token.Reveal(), []byte(`{}`))
	if diff := cmp.Diff(refused(mfa.ReasonRegistrationNotFound), outcomeOf(t, err)); diff != "" {
		t.Errorf("a registration never begun (-want +got):\n%s", diff)
	}
}
