package mfa_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/webauthntest"
)

// twoFactors is a user with a TOTP factor and a security key, verified a
// moment ago, so that PROOF_EXISTING_FACTOR sessions may be opened.
type twoFactors struct {
	totp  enrolled
	key   *webauthntest.Authenticator
	keyID string
}

func (e *env) twoFactors(t *testing.T, userID string) twoFactors {
	t.Helper()
	u := e.enrollTOTP(t, userID)
	if r := e.verify(t, userID, e.code(t, u, 0)); r != accepted {
		t.Fatalf("verification: %+v", r)
	}
	key, kf, _ := e.registerKey(t, e.createSession(t, userID, mfa.ProofExistingFactor).Token.Reveal())
	e.clock.Advance(period) // a step no code was accepted for
	return twoFactors{totp: u, key: key, keyID: kf.ID}
}

// result renders what a finishing call came to: "added", a verdict, or the
// refusal's reason; never failing the test, so that goroutines may call it.
func result(v any, err error) string {
	var me *mfa.Error
	switch {
	case errors.As(err, &me):
		return string(me.Reason)
	case err != nil:
		return "error: " + err.Error()
	}
	switch v := v.(type) {
	case mfa.Result:
		return map[mfa.Verdict]string{mfa.Accepted: "accepted", mfa.Rejected: "rejected", mfa.Locked: "locked"}[v.Verdict]
	case mfa.Factor:
		return "added"
	}
	return fmt.Sprintf("%v", v)
}

// begun is something a user began: finish completes it, running change at
// the point where it would race (before the completing call, or for a TOTP
// verification between its two halves).
type begun func(t *testing.T, e *env, hs *hookedStore, u twoFactors) (finish func(change func()) string)

func beginTOTPEnrollment(t *testing.T, e *env, _ *hookedStore, u twoFactors) func(func()) string {
	t.Helper()
	token := e.createSession(t, u.totp.userID, mfa.ProofExistingFactor).Token.Reveal()
	p, err := e.svc.BeginTOTPEnrollment(t.Context(), token, "tablet", "")
	if err != nil {
		t.Fatal(err)
	}
	code := e.code(t, enrolled{secret: p.Key.Secret, params: p.Params}, 0)
	return func(change func()) string {
		change()
		f, _, err := e.svc.FinishTOTPEnrollment(t.Context(), token, p.FactorID, code)
		return result(f, err)
	}
}

func beginWebAuthnRegistration(t *testing.T, e *env, _ *hookedStore, u twoFactors) func(func()) string {
	t.Helper()
	token := e.createSession(t, u.totp.userID, mfa.ProofExistingFactor).Token.Reveal()
	options, err := e.svc.BeginWebAuthnRegistration(t.Context(), token, "second key", "")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := webauthntest.New().Create(options, origin)
	if err != nil {
		t.Fatal(err)
	}
	return func(change func()) string {
		change()
		f, _, err := e.svc.FinishWebAuthnRegistration(t.Context(), token, cred)
		return result(f, err)
	}
}

func beginWebAuthnLogin(t *testing.T, e *env, _ *hookedStore, u twoFactors) func(func()) string {
	t.Helper()
	id, assertion := e.signedLogin(t, u.totp.userID, u.key)
	return func(change func()) string {
		change()
		r, _, err := e.svc.FinishWebAuthnLogin(asPortal(t), id, assertion, browser)
		return result(r, err)
	}
}

func beginTOTPVerification(t *testing.T, e *env, hs *hookedStore, u twoFactors) func(func()) string {
	t.Helper()
	code := e.code(t, u.totp, 0)
	return func(change func()) string {
		hs.mu.Lock()
		hs.afterStartAttempt = change
		hs.mu.Unlock()
		return result(e.svc.VerifyTOTP(asPortal(t), u.totp.userID, code, browser))
	}
}

// TestNothingBegunBeforeAResetFinishesAfterIt: an enrolment (TOTP or
// WebAuthn), a WebAuthn login and a TOTP verification begun before a reset,
// or before the delete of another of the user's factors, are refused when
// they finish after it.
func TestNothingBegunBeforeAResetFinishesAfterIt(t *testing.T) {
	hs := &hookedStore{}
	e := newEnv(t, envOptions{webauthn: true, wrap: hs.wrap})
	things := []struct {
		name  string
		begin begun
		// keep is the factor the thing needs, which a delete leaves.
		keep func(u twoFactors) string
		// done is what it comes to when nothing happens meanwhile.
		done string
	}{
		{"TOTP enrolment", beginTOTPEnrollment, func(u twoFactors) string { return u.totp.factorID }, "added"},
		{"WebAuthn registration", beginWebAuthnRegistration, func(u twoFactors) string { return u.totp.factorID }, "added"},
		{"WebAuthn login", beginWebAuthnLogin, func(u twoFactors) string { return u.keyID }, "accepted"},
		{"TOTP verification", beginTOTPVerification, func(u twoFactors) string { return u.totp.factorID }, "accepted"},
	}
	ended := map[string]string{
		"TOTP enrolment":        string(mfa.ReasonSessionNotFound),
		"WebAuthn registration": string(mfa.ReasonSessionNotFound),
		"WebAuthn login":        "rejected",
		"TOTP verification":     "rejected",
	}
	changes := []struct {
		name string
		// change is made by an administrator; it returns the factors the
		// user must have left.
		change func(t *testing.T, u twoFactors, keep string) []string
	}{
		{"nothing", nil},
		{"a reset", func(t *testing.T, u twoFactors, _ string) []string {
			if _, err := e.svc.ResetUser(asAdmin(t), u.totp.userID, "stolen phone"); err != nil {
				t.Error(err)
			}
			return []string{}
		}},
		{"a delete of another factor", func(t *testing.T, u twoFactors, keep string) []string {
			other := u.keyID
			if keep == u.keyID {
				other = u.totp.factorID
			}
			if err := e.svc.DeleteFactor(asAdmin(t), u.totp.userID, other, "lost"); err != nil {
				t.Error(err)
			}
			return []string{keep}
		}},
	}
	for i, th := range things {
		for j, ch := range changes {
			t.Run(th.name+" then "+ch.name, func(t *testing.T) {
				u := e.twoFactors(t, fmt.Sprintf("dr-%d-%d", i, j))
				finish := th.begin(t, e, hs, u)
				var left []string
				change := func() {
					if ch.change != nil {
						left = ch.change(t, u, th.keep(u))
					}
				}
				got := finish(change)
				want := th.done
				if ch.change != nil {
					want = ended[th.name]
				}
				if got != want {
					t.Errorf("finished after %s: %s, want %s", ch.name, got, want)
				}
				if ch.change == nil {
					return
				}
				if diff := cmp.Diff(left, factorIDs(e.user(t, u.totp.userID))); diff != "" {
					t.Errorf("factors left (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestResetRacesFinishes: N enrolments, logins and verifications of a user
// finish while an administrator resets the user. Each either completed
// before the reset, which then removed what it added, or is refused: after
// the reset the user has no factor, and the reset removed the two factors
// the user had plus one for each enrolment that completed. Of the
// verifications of one code, at most one is accepted.
func TestResetRacesFinishes(t *testing.T) {
	e := newEnv(t, envOptions{webauthn: true})
	u := e.twoFactors(t, "dr-race")
	var finishes []func(func()) string
	kinds := []string{}
	for range 5 {
		finishes = append(finishes, beginTOTPEnrollment(t, e, nil, u), beginWebAuthnRegistration(t, e, nil, u))
		kinds = append(kinds, "enrolment", "enrolment")
	}
	finishes = append(finishes, beginWebAuthnLogin(t, e, nil, u))
	kinds = append(kinds, "login")
	code := e.code(t, u.totp, 0)
	for range 3 {
		finishes = append(finishes, func(func()) string {
			return result(e.svc.VerifyTOTP(asPortal(t), u.totp.userID, code, browser))
		})
		kinds = append(kinds, "verification")
	}

	// The reset starts once a few have finished, and races the others.
	const before = 1
	start := make(chan struct{})
	finished := make(chan struct{}, len(finishes))
	results := make([]string, len(finishes))
	var (
		wg       sync.WaitGroup
		removed  int
		resetErr error
	)
	for i, finish := range finishes {
		wg.Go(func() {
			<-start
			results[i] = finish(func() {})
			finished <- struct{}{}
		})
	}
	wg.Go(func() {
		<-start
		for range before {
			<-finished
		}
		removed, resetErr = e.svc.ResetUser(asAdmin(t), u.totp.userID, "stolen phone")
	})
	close(start)
	wg.Wait()
	if resetErr != nil {
		t.Fatal(resetErr)
	}

	allowed := map[string][]string{
		"enrolment":    {"added", string(mfa.ReasonSessionNotFound)},
		"login":        {"accepted", "rejected"},
		"verification": {"accepted", "rejected", "locked"},
	}
	added, acceptedCodes := 0, 0
	for i, r := range results {
		if !slices.Contains(allowed[kinds[i]], r) {
			t.Errorf("%s %d: %s, want one of %v", kinds[i], i, r, allowed[kinds[i]])
		}
		switch {
		case r == "added":
			added++
		case kinds[i] == "verification" && r == "accepted":
			acceptedCodes++
		}
	}
	if got := e.user(t, u.totp.userID); len(got.Factors) != 0 {
		t.Errorf("after the reset the user has %d factors: %v", len(got.Factors), factorIDs(got))
	}
	if removed != 2+added {
		t.Errorf("the reset removed %d factors; %d enrolments completed, so want %d", removed, added, 2+added)
	}
	if acceptedCodes > 1 {
		t.Errorf("one code accepted %d times", acceptedCodes)
	}
	t.Logf("outcomes: %v; removed %d", results, removed)
}

// TestVerificationBeforeARemovalBacksNothing: a verification made before a
// reset, or before the delete of a factor (maybe the one it was made
// with), does not back a PROOF_EXISTING_FACTOR session after it; a new
// verification does.
func TestVerificationBeforeARemovalBacksNothing(t *testing.T) {
	e := newEnv(t, envOptions{webauthn: true})
	tests := []struct {
		name string
		// remove removes factors and returns the TOTP factor the user has
		// after it.
		remove func(t *testing.T, u twoFactors) enrolled
	}{
		{"a delete", func(t *testing.T, u twoFactors) enrolled {
			if err := e.svc.DeleteFactor(asAdmin(t), u.totp.userID, u.keyID, "key stolen"); err != nil {
				t.Fatal(err)
			}
			return u.totp
		}},
		{"a reset, then a new first factor", func(t *testing.T, u twoFactors) enrolled {
			if _, err := e.svc.ResetUser(asAdmin(t), u.totp.userID, "phone stolen"); err != nil {
				t.Fatal(err)
			}
			return e.finishTOTP(t, u.totp.userID, e.createSession(t, u.totp.userID, mfa.ProofStrong).Token.Reveal(), "")
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := e.twoFactors(t, fmt.Sprintf("dr-%d", i))
			if r := e.login(t, u.totp.userID, u.key); r != accepted {
				t.Fatalf("login: %+v", r)
			}
			e.clock.Advance(time.Second)
			left := tt.remove(t, u)
			create := func() outcome {
				_, err := e.svc.CreateEnrollment(t.Context(), mfa.EnrollmentRequest{UserID: u.totp.userID, Proof: mfa.ProofExistingFactor})
				return outcomeOf(t, err)
			}
			if diff := cmp.Diff(refused(mfa.ReasonNoFreshVerification), create()); diff != "" {
				t.Errorf("backed by the verification before (-want +got):\n%s", diff)
			}
			e.clock.Advance(time.Second)
			if r := e.verify(t, u.totp.userID, e.code(t, left, 0)); r != accepted {
				t.Fatalf("verification after: %+v", r)
			}
			if diff := cmp.Diff(outcome{}, create()); diff != "" {
				t.Errorf("backed by a verification after (-want +got):\n%s", diff)
			}
		})
	}
}
