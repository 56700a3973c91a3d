package grpcapi_test

import (
	"context"
	"encoding/base32"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/totp"
)

func forEachStore(t *testing.T, fn func(t *testing.T, kind string)) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) { fn(t, kind) })
	}
}

func TestEnrollAndVerifyTOTP(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		ctx := context.Background()
		u := e.enrollTOTP(t, "dr-martin")

		gu, err := e.portal.GetUser(ctx, &sfv1.GetUserRequest{UserId: "dr-martin"}, asPortal)
		if err != nil {
			t.Fatal(err)
		}
		if !gu.GetEnrolled() || len(gu.GetFactors()) != 1 || gu.GetFactors()[0].GetKind() != sfv1.FactorKind_FACTOR_KIND_TOTP || gu.GetFactors()[0].GetName() != "phone" {
			t.Fatalf("GetUser after enrolment: %v", gu)
		}

		code := e.code(t, u)
		if v := e.verify(t, u.userID, code).GetVerdict(); v != sfv1.Verdict_VERDICT_ACCEPTED {
			t.Fatalf("a valid code: %v", v)
		}
		if v := e.verify(t, u.userID, code).GetVerdict(); v != sfv1.Verdict_VERDICT_REJECTED {
			t.Fatalf("the same code twice: %v, want REJECTED", v)
		}
		// The previous step's code is inside the skew window but older than
		// the accepted step: refused.
		if v := e.verify(t, u.userID, e.codeAt(t, u, -1)).GetVerdict(); v != sfv1.Verdict_VERDICT_REJECTED {
			t.Fatalf("an older step after a newer one: %v, want REJECTED", v)
		}
		// One step later the next code is accepted.
		e.clock.Advance(30 * time.Second)
		if v := e.verify(t, u.userID, e.code(t, u)).GetVerdict(); v != sfv1.Verdict_VERDICT_ACCEPTED {
			t.Fatalf("the next step's code: %v", v)
		}
		// Skew: the code of the next step is accepted now, once.
		if v := e.verify(t, u.userID, e.codeAt(t, u, +1)).GetVerdict(); v != sfv1.Verdict_VERDICT_ACCEPTED {
			t.Fatalf("a code one step ahead: %v", v)
		}
		// Two steps off: refused.
		e.clock.Advance(5 * time.Minute)
		if v := e.verify(t, u.userID, e.codeAt(t, u, +2)).GetVerdict(); v != sfv1.Verdict_VERDICT_REJECTED {
			t.Fatalf("a code two steps ahead: %v, want REJECTED", v)
		}
	})
}

func TestAlgorithmsAndDigits(t *testing.T) {
	for _, p := range []totp.Params{
		{Algorithm: totp.SHA256, Digits: 8, Period: 30 * time.Second},
		{Algorithm: totp.SHA512, Digits: 8, Period: 30 * time.Second},
		{Algorithm: totp.SHA1, Digits: 8, Period: 30 * time.Second},
	} {
		t.Run(fmt.Sprintf("%s-%d", p.Algorithm, p.Digits), func(t *testing.T) {
			e := newEnv(t, "bolt", envOptions{params: p})
			u := e.enrollTOTP(t, "dr-martin")
			if u.params != p {
				t.Fatalf("enrolled with %+v, want %+v", u.params, p)
			}
			if v := e.verify(t, u.userID, e.code(t, u)).GetVerdict(); v != sfv1.Verdict_VERDICT_ACCEPTED {
				t.Fatalf("valid code: %v", v)
			}
		})
	}
}

// TestOathtoolCodes checks codes from an independent TOTP client.
func TestOathtoolCodes(t *testing.T) {
	if _, err := exec.LookPath("oathtool"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("oathtool is not installed (Debian package oathtool); make deps installs it")
		}
		t.Skip("oathtool is not installed")
	}
	forEachStore(t, func(t *testing.T, kind string) {
		for _, p := range []totp.Params{totp.DefaultParams(), {Algorithm: totp.SHA256, Digits: 8, Period: 30 * time.Second}} {
			e := newEnv(t, kind, envOptions{params: p})
			u := e.enrollTOTP(t, "dr-"+string(p.Algorithm))
			b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(u.secret)
			for range 3 {
				now := e.clock.Now().UTC().Format("2006-01-02 15:04:05 UTC")
				out, err := exec.Command("oathtool", "--totp="+string(p.Algorithm), fmt.Sprintf("--digits=%d", p.Digits), "--now", now, "-b", b32).Output()
				if err != nil {
					t.Fatalf("oathtool: %v", err)
				}
				code := strings.TrimSpace(string(out))
				if v := e.verify(t, u.userID, code).GetVerdict(); v != sfv1.Verdict_VERDICT_ACCEPTED {
					t.Fatalf("oathtool's code %s at %s: %v", code, now, v)
				}
				e.clock.Advance(30 * time.Second)
			}
		}
	})
}

// verifyAtOnce sends n VerifyTOTP calls at once and counts the verdicts.
func verifyAtOnce(t *testing.T, e *env, n int, userID string, code func(i int) string) map[sfv1.Verdict]int {
	return verdictsAtOnce(t, n, func(i int) (sfv1.Verdict, error) {
		r, err := e.portal.VerifyTOTP(context.Background(), &sfv1.VerifyTOTPRequest{UserId: userID, Code: code(i)}, asPortal)
		return r.GetVerdict(), err
	})
}

func TestSameCodeFiftyTimesAtOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{limits: mfa.Limits{MaxFailures: 100, BaseLockout: time.Second, MaxLockout: time.Second, FailureTTL: time.Hour}})
		u := e.enrollTOTP(t, "dr-martin")
		code := e.code(t, u)
		got := verifyAtOnce(t, e, 50, u.userID, func(int) string { return code })
		if got[sfv1.Verdict_VERDICT_ACCEPTED] != 1 || got[sfv1.Verdict_VERDICT_REJECTED] != 49 {
			t.Fatalf("one valid code sent 50 times at once: %v, want 1 ACCEPTED and 49 REJECTED", got)
		}
	})
}

func TestParallelWrongCodesLock(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		u := e.enrollTOTP(t, "dr-martin")
		right := e.code(t, u)
		wrong := e.wrongCodes(t, u, 50)
		got := verifyAtOnce(t, e, 50, u.userID, func(i int) string { return wrong[i] })
		if got[sfv1.Verdict_VERDICT_REJECTED] != 10 || got[sfv1.Verdict_VERDICT_LOCKED] != 40 {
			t.Fatalf("50 wrong codes at once: %v, want 10 REJECTED (evaluated) and 40 LOCKED", got)
		}
		for _, c := range []string{right, wrong[0]} {
			r := e.verify(t, u.userID, c)
			if r.GetVerdict() != sfv1.Verdict_VERDICT_LOCKED || r.GetRetryAfter().AsDuration() != 30*time.Second {
				t.Fatalf("while locked, code %s: %v, want LOCKED with retry after 30s", c, r)
			}
		}
		gu, err := e.portal.GetUser(context.Background(), &sfv1.GetUserRequest{UserId: u.userID}, asPortal)
		if err != nil || !gu.GetLocked() {
			t.Fatalf("GetUser while locked: %v, %v", gu, err)
		}
		// After the lock the right code is accepted and clears it.
		e.clock.Advance(31 * time.Second)
		if v := e.verify(t, u.userID, e.code(t, u)).GetVerdict(); v != sfv1.Verdict_VERDICT_ACCEPTED {
			t.Fatalf("right code after the lock: %v", v)
		}
	})
}

// TestUnknownUserLooksLikeWrongCode: an unknown user, a user without TOTP
// and a wrong code get the same answers, locks included.
func TestUnknownUserLooksLikeWrongCode(t *testing.T) {
	e := newEnv(t, "bolt", envOptions{})
	u := e.enrollTOTP(t, "dr-martin")
	wrong := e.wrongCode(t, u)
	for i := 1; i <= 11; i++ {
		a := e.verify(t, "dr-martin", wrong)
		b := e.verify(t, "nobody-by-this-name", wrong)
		if a.GetVerdict() != b.GetVerdict() || a.GetRetryAfter().AsDuration() != b.GetRetryAfter().AsDuration() {
			t.Fatalf("attempt %d: enrolled user %v, unknown user %v", i, a, b)
		}
	}
}

func TestEnrollmentRules(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		ctx := context.Background()
		create := func(user string, p sfv1.Proof) (*sfv1.CreateEnrollmentResponse, error) {
			return e.portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: user, Proof: p}, asPortal)
		}
		begin := func(tok, activation string) error {
			_, err := e.portal.BeginTOTPEnrollment(ctx, &sfv1.BeginTOTPEnrollmentRequest{EnrollmentToken: tok, Name: "phone", ActivationCode: activation}, asPortal)
			return err
		}
		enrolledNow := func(user string) bool {
			gu, err := e.portal.GetUser(ctx, &sfv1.GetUserRequest{UserId: user}, asPortal)
			if err != nil {
				t.Fatal(err)
			}
			return gu.GetEnrolled()
		}

		// Password only: the session enrols nothing without an activation code.
		ce, err := create("dr-durand", sfv1.Proof_PROOF_PASSWORD_ONLY)
		if err != nil {
			t.Fatal(err)
		}
		if !ce.GetActivationRequired() {
			t.Fatal("a password-only session does not require activation")
		}
		wantCode(t, "BeginTOTPEnrollment without activation code", begin(ce.GetToken(), ""), codes.FailedPrecondition)
		wantCode(t, "BeginTOTPEnrollment with a made-up activation code", begin(ce.GetToken(), "ABCD-EFGH-JKMN"), codes.FailedPrecondition)
		_, err = e.portal.FinishTOTPEnrollment(ctx, &sfv1.FinishTOTPEnrollmentRequest{EnrollmentToken: ce.GetToken(), FactorId: "0123456789abcdef", Code: "123456"}, asPortal)
		wantCode(t, "FinishTOTPEnrollment without activation", err, codes.FailedPrecondition)
		if enrolledNow("dr-durand") {
			t.Fatal("a password-only session enrolled a factor without activation")
		}
		// Another user's activation code does not help.
		other, err := e.admin.IssueActivationCode(ctx, &sfv1.IssueActivationCodeRequest{UserId: "dr-other", Reason: "test"}, asAdmin)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, "another user's activation code", begin(ce.GetToken(), other.GetCode()), codes.FailedPrecondition)

		// With the code the administrator issued, it does.
		ac, err := e.admin.IssueActivationCode(ctx, &sfv1.IssueActivationCodeRequest{UserId: "dr-durand", Reason: "identity checked by phone, ticket 42"}, asAdmin)
		if err != nil {
			t.Fatal(err)
		}
		u := e.finishTOTP(t, "dr-durand", ce.GetToken(), strings.ToLower(ac.GetCode()))
		if !enrolledNow("dr-durand") {
			t.Fatal("activated session did not enrol")
		}
		// The token is single use; the activation code too.
		wantCode(t, "reused enrolment token", begin(ce.GetToken(), ""), codes.NotFound)
		ce2, err := create("dr-nouveau", sfv1.Proof_PROOF_PASSWORD_ONLY)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, "reused activation code", begin(ce2.GetToken(), ac.GetCode()), codes.FailedPrecondition)

		// An enrolled user adds a factor only with a fresh verification.
		_, err = create("dr-durand", sfv1.Proof_PROOF_PASSWORD_ONLY)
		wantCode(t, "password-only for an enrolled user", err, codes.FailedPrecondition)
		_, err = create("dr-durand", sfv1.Proof_PROOF_STRONG)
		wantCode(t, "strong proof for an enrolled user", err, codes.FailedPrecondition)
		e.clock.Advance(10 * time.Minute)
		_, err = create("dr-durand", sfv1.Proof_PROOF_EXISTING_FACTOR)
		wantCode(t, "existing factor without a fresh verification", err, codes.FailedPrecondition)
		if v := e.verify(t, "dr-durand", e.code(t, u)).GetVerdict(); v != sfv1.Verdict_VERDICT_ACCEPTED {
			t.Fatal(v)
		}
		ce3, err := create("dr-durand", sfv1.Proof_PROOF_EXISTING_FACTOR)
		if err != nil {
			t.Fatalf("existing factor after a verification: %v", err)
		}
		e.finishTOTP(t, "dr-durand", ce3.GetToken(), "")
		if gu := e.getUser(t, "dr-durand"); len(gu.GetFactors()) != 2 {
			t.Fatalf("after adding a factor: %v", gu)
		}
		_, err = create("dr-nobody", sfv1.Proof_PROOF_EXISTING_FACTOR)
		wantCode(t, "existing factor for a user without one", err, codes.FailedPrecondition)

		// An expired session enrols nothing.
		ce4, err := create("dr-late", sfv1.Proof_PROOF_STRONG)
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(16 * time.Minute)
		wantCode(t, "expired enrolment session", begin(ce4.GetToken(), ""), codes.NotFound)
	})
}

func TestEnrollmentPolicies(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "bolt", envOptions{policy: mfa.PolicyStrongOnly})
	_, err := e.portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: "u1", Proof: sfv1.Proof_PROOF_PASSWORD_ONLY}, asPortal)
	wantCode(t, "password-only under strong-only", err, codes.FailedPrecondition)
	e.enrollTOTP(t, "u1") // strong proof works

	e = newEnv(t, "bolt", envOptions{policy: mfa.PolicyOpen})
	ce, err := e.portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: "u1", Proof: sfv1.Proof_PROOF_PASSWORD_ONLY}, asPortal)
	if err != nil || ce.GetActivationRequired() {
		t.Fatalf("password-only under open: %v, %v", ce, err)
	}
	e.finishTOTP(t, "u1", ce.GetToken(), "")
}

func TestPendingFactorVerifiesNothing(t *testing.T) {
	e := newEnv(t, "bolt", envOptions{})
	ctx := context.Background()
	tok := e.createEnrollment(t, "u1", sfv1.Proof_PROOF_STRONG)
	b := e.beginTOTP(t, tok)
	u := enrolledFrom(t, "u1", b)
	code := e.code(t, u)
	if v := e.verify(t, "u1", code).GetVerdict(); v != sfv1.Verdict_VERDICT_REJECTED {
		t.Fatalf("a pending factor's code at login: %v, want REJECTED", v)
	}
	// A wrong confirming code is refused, and the right one still works.
	_, err := e.portal.FinishTOTPEnrollment(ctx, &sfv1.FinishTOTPEnrollmentRequest{EnrollmentToken: tok, FactorId: b.GetFactorId(), Code: e.wrongCode(t, u)}, asPortal)
	wantCode(t, "wrong confirming code", err, codes.InvalidArgument)
	if _, err = e.portal.FinishTOTPEnrollment(ctx, &sfv1.FinishTOTPEnrollmentRequest{EnrollmentToken: tok, FactorId: b.GetFactorId(), Code: code}, asPortal); err != nil {
		t.Fatal(err)
	}
	// The confirming code counts as used.
	if v := e.verify(t, "u1", code).GetVerdict(); v != sfv1.Verdict_VERDICT_REJECTED {
		t.Fatalf("the confirming code at login: %v, want REJECTED", v)
	}
	// The pending factor expires after 10 minutes.
	tok = e.createEnrollment(t, "u2", sfv1.Proof_PROOF_STRONG)
	b = e.beginTOTP(t, tok)
	e.clock.Advance(11 * time.Minute)
	u = enrolledFrom(t, "u2", b)
	_, err = e.portal.FinishTOTPEnrollment(ctx, &sfv1.FinishTOTPEnrollmentRequest{EnrollmentToken: tok, FactorId: b.GetFactorId(), Code: e.code(t, u)}, asPortal)
	wantCode(t, "expired pending factor", err, codes.NotFound)
}
