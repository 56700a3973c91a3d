package grpcapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/config"
	"github.com/secondfactor/secondfactor/internal/webauthntest"
)

// createEnrollment opens a session for user with proof.
func (e *env) createEnrollment(t testing.TB, user string, proof sfv1.Proof) string {
	t.Helper()
	ce, err := e.portal.CreateEnrollment(context.Background(), &sfv1.CreateEnrollmentRequest{UserId: user, DisplayName: "Dr " + user, Proof: proof}, asPortal)
	if err != nil {
		t.Fatalf("CreateEnrollment: %v", err)
	}
	return ce.GetToken()
}

// registerWith runs a registration in the session token with the
// authenticator and tamper, and returns the server's answer.
func (e *env) registerWith(t testing.TB, token string, a *webauthntest.Authenticator, origin string, tamper webauthntest.Tamper) (*sfv1.FinishWebAuthnRegistrationResponse, error) {
	t.Helper()
	ctx := context.Background()
	b, err := e.portal.BeginWebAuthnRegistration(ctx, &sfv1.BeginWebAuthnRegistrationRequest{EnrollmentToken: token, Name: "YubiKey"}, asPortal)
	if err != nil {
		t.Fatalf("BeginWebAuthnRegistration: %v", err)
	}
	cred, err := a.CreateWith([]byte(b.GetOptionsJson()), origin, tamper)
	if err != nil {
		t.Fatalf("authenticator create: %v", err)
	}
	return e.portal.FinishWebAuthnRegistration(ctx, &sfv1.FinishWebAuthnRegistrationRequest{EnrollmentToken: token, CredentialJson: string(cred)}, asPortal)
}

// registerKey enrols a new authenticator for user (PROOF_STRONG) and returns
// it with the recovery codes.
func (e *env) registerKey(t testing.TB, user string) (*webauthntest.Authenticator, []string) {
	t.Helper()
	a := webauthntest.New()
	r, err := e.registerWith(t, e.createEnrollment(t, user, sfv1.Proof_PROOF_STRONG), a, origin, webauthntest.Tamper{})
	if err != nil {
		t.Fatalf("FinishWebAuthnRegistration: %v", err)
	}
	if r.GetFactor().GetKind() != sfv1.FactorKind_FACTOR_KIND_WEBAUTHN || r.GetFactor().GetName() != "YubiKey" {
		t.Fatalf("registered factor: %v", r.GetFactor())
	}
	return a, r.GetRecoveryCodes()
}

// beginLogin starts a login for user.
func (e *env) beginLogin(t testing.TB, user string) (challengeID string, options []byte) {
	t.Helper()
	b, err := e.portal.BeginWebAuthnLogin(context.Background(), &sfv1.BeginWebAuthnLoginRequest{UserId: user}, asPortal)
	if err != nil {
		t.Fatalf("BeginWebAuthnLogin: %v", err)
	}
	return b.GetChallengeId(), []byte(b.GetOptionsJson())
}

func (e *env) finishLogin(t testing.TB, challengeID string, assertion []byte) (*sfv1.FinishWebAuthnLoginResponse, error) {
	t.Helper()
	return e.portal.FinishWebAuthnLogin(context.Background(), &sfv1.FinishWebAuthnLoginRequest{ChallengeId: challengeID, AssertionJson: string(assertion)}, asPortal)
}

// loginWith runs a whole login and returns the verdict.
func (e *env) loginWith(t testing.TB, user string, a *webauthntest.Authenticator, origin string, tamper webauthntest.Tamper) sfv1.Verdict {
	t.Helper()
	id, options := e.beginLogin(t, user)
	assertion, err := a.GetWith(options, origin, tamper)
	if err != nil {
		t.Fatalf("authenticator get: %v", err)
	}
	r, err := e.finishLogin(t, id, assertion)
	if err != nil {
		t.Fatalf("FinishWebAuthnLogin: %v", err)
	}
	return r.GetVerdict()
}

func wantVerdict(t testing.TB, what string, got, want sfv1.Verdict) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

// sign is the authenticator's assertion for the request options.
func sign(t testing.TB, a *webauthntest.Authenticator, options []byte) []byte {
	t.Helper()
	assertion, err := a.Get(options, origin)
	if err != nil {
		t.Fatalf("authenticator get: %v", err)
	}
	return assertion
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWebAuthnRegisterAndLogin(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		ctx := context.Background()
		a, codes := e.registerKey(t, "dr-key")
		if len(codes) != 10 {
			t.Fatalf("first factor: %d recovery codes, want 10", len(codes))
		}
		gu, err := e.portal.GetUser(ctx, &sfv1.GetUserRequest{UserId: "dr-key"}, asPortal)
		if err != nil || !gu.GetEnrolled() || gu.GetFactors()[0].GetKind() != sfv1.FactorKind_FACTOR_KIND_WEBAUTHN {
			t.Fatalf("GetUser: %v %v", gu, err)
		}
		id, options := e.beginLogin(t, "dr-key")
		assertion, err := a.Get(options, origin)
		if err != nil {
			t.Fatal(err)
		}
		r, err := e.finishLogin(t, id, assertion)
		if err != nil || r.GetVerdict() != sfv1.Verdict_VERDICT_ACCEPTED || r.GetUserId() != "dr-key" {
			t.Fatalf("login: %v %v", r, err)
		}
		// Replayed: the challenge is spent.
		r, err = e.finishLogin(t, id, assertion)
		if err != nil || r.GetVerdict() != sfv1.Verdict_VERDICT_REJECTED {
			t.Fatalf("the same assertion again: %v %v, want REJECTED", r, err)
		}
		// Replayed against a fresh challenge: it signs the old one.
		id2, _ := e.beginLogin(t, "dr-key")
		r, err = e.finishLogin(t, id2, assertion)
		if err != nil || r.GetVerdict() != sfv1.Verdict_VERDICT_REJECTED {
			t.Fatalf("an old assertion on a new challenge: %v %v, want REJECTED", r, err)
		}
		wantVerdict(t, "a second login", e.loginWith(t, "dr-key", a, origin, webauthntest.Tamper{}), sfv1.Verdict_VERDICT_ACCEPTED)
		if gu := e.getUser(t, "dr-key"); gu.GetFactors()[0].GetLastUsedAt() == nil {
			t.Fatal("last use not recorded")
		}

		// A second key through an EXISTING_FACTOR session (the login above
		// is the fresh verification); the first key is excluded.
		tok := e.createEnrollment(t, "dr-key", sfv1.Proof_PROOF_EXISTING_FACTOR)
		b, err := e.portal.BeginWebAuthnRegistration(ctx, &sfv1.BeginWebAuthnRegistrationRequest{EnrollmentToken: tok, Name: "spare"}, asPortal)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Create([]byte(b.GetOptionsJson()), origin); err != webauthntest.ErrExcluded {
			t.Fatalf("the registered key was not excluded: %v", err)
		}
		second := webauthntest.New()
		cred, err := second.Create([]byte(b.GetOptionsJson()), origin)
		if err != nil {
			t.Fatal(err)
		}
		fr, err := e.portal.FinishWebAuthnRegistration(ctx, &sfv1.FinishWebAuthnRegistrationRequest{EnrollmentToken: tok, CredentialJson: string(cred)}, asPortal)
		if err != nil || len(fr.GetRecoveryCodes()) != 0 {
			t.Fatalf("second key: %v %v (no new recovery codes expected)", fr, err)
		}
		wantVerdict(t, "login with the second key", e.loginWith(t, "dr-key", second, origin, webauthntest.Tamper{}), sfv1.Verdict_VERDICT_ACCEPTED)
	})
}

func TestWebAuthnLoginRefusals(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		a, _ := e.registerKey(t, "dr-a")
		b, _ := e.registerKey(t, "dr-b")
		none := webauthntest.Tamper{}

		wantVerdict(t, "wrong origin", e.loginWith(t, "dr-a", a, "https://evil.example", none), sfv1.Verdict_VERDICT_REJECTED)
		wantVerdict(t, "wrong RP ID", e.loginWith(t, "dr-a", a, origin, webauthntest.Tamper{RPID: "evil.example"}), sfv1.Verdict_VERDICT_REJECTED)
		wantVerdict(t, "forged signature", e.loginWith(t, "dr-a", a, origin, webauthntest.Tamper{BogusSignature: true}), sfv1.Verdict_VERDICT_REJECTED)
		wantVerdict(t, "no user presence", e.loginWith(t, "dr-a", a, origin, webauthntest.Tamper{DropUserPresence: true}), sfv1.Verdict_VERDICT_REJECTED)
		wantVerdict(t, "registration type in a login", e.loginWith(t, "dr-a", a, origin, webauthntest.Tamper{ClientDataType: "webauthn.create"}), sfv1.Verdict_VERDICT_REJECTED)
		// B's key answering A's challenge.
		wantVerdict(t, "another user's credential", e.loginWith(t, "dr-a", b, origin, webauthntest.Tamper{CredentialID: b.Credentials()[0]}), sfv1.Verdict_VERDICT_REJECTED)
		// An unknown user gets options of the same shape, and REJECTED.
		_, opts := e.beginLogin(t, "dr-nobody")
		_, known := e.beginLogin(t, "dr-a")
		if shape(t, opts) != shape(t, known) {
			t.Fatalf("options differ in shape:\nunknown user %s\nenrolled user %s", shape(t, opts), shape(t, known))
		}
		wantVerdict(t, "after all refusals", e.loginWith(t, "dr-a", a, origin, none), sfv1.Verdict_VERDICT_ACCEPTED)

		// Sign count regression: a cloned authenticator.
		if err := a.SetSignCount(a.Credentials()[0], 0); err != nil {
			t.Fatal(err)
		}
		wantVerdict(t, "sign count went backwards", e.loginWith(t, "dr-a", a, origin, none), sfv1.Verdict_VERDICT_REJECTED)

		// An expired challenge.
		id, options := e.beginLogin(t, "dr-b")
		assertion := sign(t, b, options)
		e.clock.Advance(6 * time.Minute)
		r, err := e.finishLogin(t, id, assertion)
		if err != nil || r.GetVerdict() != sfv1.Verdict_VERDICT_REJECTED {
			t.Fatalf("expired challenge: %v %v", r, err)
		}
	})
}

// shape is the JSON of options with every string value blanked.
func shape(t testing.TB, options []byte) string {
	var v any
	if err := json.Unmarshal(options, &v); err != nil {
		t.Fatal(err)
	}
	var blank func(any) any
	blank = func(v any) any {
		switch v := v.(type) {
		case string:
			return ""
		case []any:
			for i := range v {
				v[i] = blank(v[i])
			}
		case map[string]any:
			for k := range v {
				v[k] = blank(v[k])
			}
		}
		return v
	}
	return string(marshal(t, blank(v)))
}

func TestWebAuthnSameAssertionAtOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		a, _ := e.registerKey(t, "dr-a")
		id, options := e.beginLogin(t, "dr-a")
		assertion := sign(t, a, options)
		got := verdictsAtOnce(t, 50, func(int) (sfv1.Verdict, error) {
			r, err := e.finishLogin(t, id, assertion)
			return r.GetVerdict(), err
		})
		if got[sfv1.Verdict_VERDICT_ACCEPTED] != 1 || got[sfv1.Verdict_VERDICT_REJECTED] != 49 {
			t.Fatalf("one assertion sent 50 times at once: %v, want 1 ACCEPTED, 49 REJECTED", got)
		}
	})
}

func TestWebAuthnRegistrationRefusals(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		ctx := context.Background()
		none := webauthntest.Tamper{}
		refused := func(what string, err error, code codes.Code) {
			t.Helper()
			wantCode(t, what, err, code)
		}
		_, err := e.registerWith(t, e.createEnrollment(t, "u1", sfv1.Proof_PROOF_STRONG), webauthntest.New(), "https://evil.example", none)
		refused("wrong origin", err, codes.InvalidArgument)
		_, err = e.registerWith(t, e.createEnrollment(t, "u2", sfv1.Proof_PROOF_STRONG), webauthntest.New(), origin, webauthntest.Tamper{RPID: "evil.example"})
		refused("wrong RP ID", err, codes.InvalidArgument)

		// A credential ID already registered, to another user or the same.
		a, _ := e.registerKey(t, "dr-a")
		_, err = e.registerWith(t, e.createEnrollment(t, "dr-b", sfv1.Proof_PROOF_STRONG), a, origin, webauthntest.Tamper{CredentialID: a.Credentials()[0]})
		refused("a credential ID registered to another user", err, codes.AlreadyExists)
		if e.getUser(t, "dr-b").GetEnrolled() {
			t.Fatal("the duplicate credential was stored")
		}
		for _, u := range []string{"u1", "u2"} {
			if e.getUser(t, u).GetEnrolled() {
				t.Fatalf("%s enrolled after a refused registration", u)
			}
		}
		// A refused registration spends its challenge: Finish again fails.
		tok := e.createEnrollment(t, "u3", sfv1.Proof_PROOF_STRONG)
		b, err := e.portal.BeginWebAuthnRegistration(ctx, &sfv1.BeginWebAuthnRegistrationRequest{EnrollmentToken: tok, Name: "k"}, asPortal)
		if err != nil {
			t.Fatal(err)
		}
		good, err := webauthntest.New().Create([]byte(b.GetOptionsJson()), origin)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.portal.FinishWebAuthnRegistration(ctx, &sfv1.FinishWebAuthnRegistrationRequest{EnrollmentToken: tok, CredentialJson: "{"}, asPortal)
		refused("malformed credential", err, codes.InvalidArgument)
		_, err = e.portal.FinishWebAuthnRegistration(ctx, &sfv1.FinishWebAuthnRegistrationRequest{EnrollmentToken: tok, CredentialJson: string(good)}, asPortal)
		refused("a good credential after the challenge was spent", err, codes.NotFound)
	})
}

func TestWebAuthnPolicy(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		t.Run("user verification required", func(t *testing.T) {
			e := newEnv(t, kind, envOptions{config: func(c *config.Config) { c.WebAuthnUserVerification = "required" }})
			noUV := webauthntest.New()
			noUV.UserVerified = false
			_, err := e.registerWith(t, e.createEnrollment(t, "u1", sfv1.Proof_PROOF_STRONG), noUV, origin, webauthntest.Tamper{})
			wantCode(t, "registration without UV", err, codes.InvalidArgument)
			a, _ := e.registerKey(t, "u2")
			a.UserVerified = false
			wantVerdict(t, "login without UV", e.loginWith(t, "u2", a, origin, webauthntest.Tamper{}), sfv1.Verdict_VERDICT_REJECTED)
			a.UserVerified = true
			wantVerdict(t, "login with UV", e.loginWith(t, "u2", a, origin, webauthntest.Tamper{}), sfv1.Verdict_VERDICT_ACCEPTED)
		})
		t.Run("AAGUID allow-list", func(t *testing.T) {
			e := newEnv(t, kind, envOptions{config: func(c *config.Config) { c.WebAuthnAAGUIDs = []string{"01020304-0506-0708-0102-030405060708"} }})
			_, err := e.registerWith(t, e.createEnrollment(t, "u1", sfv1.Proof_PROOF_STRONG), webauthntest.New(), origin, webauthntest.Tamper{})
			wantCode(t, "an authenticator model not on the list", err, codes.InvalidArgument)
			allowed := webauthntest.New()
			allowed.AAGUID = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8}
			if _, err := e.registerWith(t, e.createEnrollment(t, "u1", sfv1.Proof_PROOF_STRONG), allowed, origin, webauthntest.Tamper{}); err != nil {
				t.Fatalf("an allowed model: %v", err)
			}
		})
		t.Run("synced passkeys refused", func(t *testing.T) {
			e := newEnv(t, kind, envOptions{config: func(c *config.Config) { c.WebAuthnRefuseSynced = true }})
			synced := webauthntest.New()
			synced.BackupEligible, synced.BackupState = true, true
			_, err := e.registerWith(t, e.createEnrollment(t, "u1", sfv1.Proof_PROOF_STRONG), synced, origin, webauthntest.Tamper{})
			wantCode(t, "a synced passkey", err, codes.InvalidArgument)
		})
	})
}

func TestWebAuthnMalformedInput(t *testing.T) {
	e := newEnv(t, "bolt", envOptions{})
	ctx := context.Background()
	a, _ := e.registerKey(t, "dr-a")
	_, options := e.beginLogin(t, "dr-a")
	good := sign(t, a, options)
	mutate := func(f func(map[string]any)) string {
		var c map[string]any
		if err := json.Unmarshal(good, &c); err != nil {
			t.Fatal(err)
		}
		f(c)
		return string(marshal(t, c))
	}
	for _, c := range []struct {
		name      string
		assertion string
	}{
		{"not JSON", "{"},
		{"empty object", "{}"},
		{"id not base64url", mutate(func(c map[string]any) { c["id"], c["rawId"] = "***", "***" })},
		{"no response", mutate(func(c map[string]any) { delete(c, "response") })},
		{"signature not base64url", mutate(func(c map[string]any) { c["response"].(map[string]any)["signature"] = "@@" })},
		{"authenticator data truncated", mutate(func(c map[string]any) {
			c["response"].(map[string]any)["authenticatorData"] = base64.RawURLEncoding.EncodeToString([]byte("short"))
		})},
		{"client data not JSON", mutate(func(c map[string]any) {
			c["response"].(map[string]any)["clientDataJSON"] = base64.RawURLEncoding.EncodeToString([]byte("nope"))
		})},
		{"oversized", strings.Repeat(" ", 40<<10) + string(good)},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, _ := e.beginLogin(t, "dr-a")
			r, err := e.finishLogin(t, id, []byte(c.assertion))
			if err == nil && r.GetVerdict() != sfv1.Verdict_VERDICT_REJECTED {
				t.Fatalf("got %v, want InvalidArgument or REJECTED", r)
			}
			if err != nil && status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument or REJECTED", err)
			}
			// The challenge is spent either way.
			r, err = e.finishLogin(t, id, good)
			if err != nil || r.GetVerdict() != sfv1.Verdict_VERDICT_REJECTED {
				t.Fatalf("the challenge survived a malformed assertion: %v %v", r, err)
			}
		})
	}
	for _, c := range []struct {
		name, id, field string
	}{{"empty challenge id", "", "challenge_id"}, {"challenge id not base64url", "a b", "challenge_id"}} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.finishLogin(t, c.id, good)
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), c.field) {
				t.Fatalf("got %v, want InvalidArgument naming %s", err, c.field)
			}
		})
	}
	r, err := e.finishLogin(t, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", good)
	if err != nil || r.GetVerdict() != sfv1.Verdict_VERDICT_REJECTED {
		t.Fatalf("unknown challenge: %v %v, want REJECTED", r, err)
	}
	_, err = e.portal.BeginWebAuthnLogin(ctx, &sfv1.BeginWebAuthnLoginRequest{UserId: ""}, asPortal)
	wantCode(t, "BeginWebAuthnLogin without user", err, codes.InvalidArgument)
	_, err = e.portal.BeginWebAuthnRegistration(ctx, &sfv1.BeginWebAuthnRegistrationRequest{EnrollmentToken: e.createEnrollment(t, "x", sfv1.Proof_PROOF_STRONG)}, asPortal)
	wantCode(t, "BeginWebAuthnRegistration without name", err, codes.InvalidArgument)
	_, err = e.portal.FinishWebAuthnRegistration(ctx, &sfv1.FinishWebAuthnRegistrationRequest{EnrollmentToken: e.createEnrollment(t, "y", sfv1.Proof_PROOF_STRONG)}, asPortal)
	wantCode(t, "FinishWebAuthnRegistration without credential", err, codes.InvalidArgument)
	// Nothing half-written: the user with malformed attempts still has one key.
	if gu := e.getUser(t, "dr-a"); len(gu.GetFactors()) != 1 {
		t.Fatalf("factors after malformed input: %v", gu.GetFactors())
	}
}

// TestTOTPLockSparesWebAuthn: a user locked out of TOTP by guessing still
// logs in with their key.
func TestTOTPLockSparesWebAuthn(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		a, _ := e.registerKey(t, "dr-a")
		for range 11 {
			e.verify(t, "dr-a", "000000")
		}
		if v := e.verify(t, "dr-a", "000000").GetVerdict(); v != sfv1.Verdict_VERDICT_LOCKED {
			t.Fatalf("after 11 wrong codes: %v, want LOCKED", v)
		}
		wantVerdict(t, "WebAuthn while TOTP is locked", e.loginWith(t, "dr-a", a, origin, webauthntest.Tamper{}), sfv1.Verdict_VERDICT_ACCEPTED)
	})
}

func TestRecoveryCodes(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		ctx := context.Background()
		_, rcodes := e.registerKey(t, "dr-a")
		verify := func(code string) *sfv1.VerifyRecoveryCodeResponse {
			t.Helper()
			r, err := e.portal.VerifyRecoveryCode(ctx, &sfv1.VerifyRecoveryCodeRequest{UserId: "dr-a", Code: code}, asPortal)
			if err != nil {
				t.Fatalf("VerifyRecoveryCode: %v", err)
			}
			return r
		}
		r := verify(strings.ToLower(strings.ReplaceAll(rcodes[0], "-", " ")))
		if r.GetVerdict() != sfv1.Verdict_VERDICT_ACCEPTED || r.GetRemaining() != 9 {
			t.Fatalf("a recovery code, typed loosely: %v", r)
		}
		wantVerdict(t, "a used recovery code", verify(rcodes[0]).GetVerdict(), sfv1.Verdict_VERDICT_REJECTED)

		// One code sent 30 times at once is accepted once.
		got := verdictsAtOnce(t, 30, func(int) (sfv1.Verdict, error) {
			r, err := e.portal.VerifyRecoveryCode(ctx, &sfv1.VerifyRecoveryCodeRequest{UserId: "dr-a", Code: rcodes[1]}, asPortal)
			return r.GetVerdict(), err
		})
		// The others are REJECTED, or LOCKED once ten attempts have counted.
		if got[sfv1.Verdict_VERDICT_ACCEPTED] != 1 {
			t.Fatalf("one recovery code sent 30 times at once: %v, want 1 ACCEPTED", got)
		}
		e.clock.Advance(2 * time.Hour) // past any lock

		// Wrong codes lock like wrong TOTP codes, and the lock covers both.
		for range 10 {
			verify("AAAA-AAAA-AAAA-AAAA")
		}
		r = verify(rcodes[2])
		if r.GetVerdict() != sfv1.Verdict_VERDICT_LOCKED || r.GetRetryAfter().AsDuration() <= 0 {
			t.Fatalf("a right code after 10 wrong ones: %v, want LOCKED", r)
		}
		if v := e.verify(t, "dr-a", "123456").GetVerdict(); v != sfv1.Verdict_VERDICT_LOCKED {
			t.Fatalf("TOTP after 10 wrong recovery codes: %v, want LOCKED", v)
		}
		e.clock.Advance(2 * time.Hour) // the back-off may have doubled: see the 30 at once above
		wantVerdict(t, "a right code after the lock", verify(rcodes[2]).GetVerdict(), sfv1.Verdict_VERDICT_ACCEPTED)

		_, err := e.portal.VerifyRecoveryCode(ctx, &sfv1.VerifyRecoveryCodeRequest{UserId: "dr-a", Code: "TOO-SHORT"}, asPortal)
		wantCode(t, "a malformed recovery code", err, codes.InvalidArgument)

		// Regenerating needs a session backed by a fresh verification.
		_, err = e.portal.RegenerateRecoveryCodes(ctx, &sfv1.RegenerateRecoveryCodesRequest{EnrollmentToken: e.createEnrollment(t, "dr-new", sfv1.Proof_PROOF_STRONG)}, asPortal)
		wantCode(t, "regenerate with a first-factor session", err, codes.FailedPrecondition)
		rr, err := e.portal.RegenerateRecoveryCodes(ctx, &sfv1.RegenerateRecoveryCodesRequest{EnrollmentToken: e.createEnrollment(t, "dr-a", sfv1.Proof_PROOF_EXISTING_FACTOR)}, asPortal)
		if err != nil || len(rr.GetRecoveryCodes()) != 10 {
			t.Fatalf("regenerate: %v %v", rr, err)
		}
		wantVerdict(t, "an old code after regenerating", verify(rcodes[3]).GetVerdict(), sfv1.Verdict_VERDICT_REJECTED)
		wantVerdict(t, "a new code", verify(rr.GetRecoveryCodes()[0]).GetVerdict(), sfv1.Verdict_VERDICT_ACCEPTED)

		// A TOTP first factor gets codes too.
		tok := e.createEnrollment(t, "dr-totp", sfv1.Proof_PROOF_STRONG)
		b := e.beginTOTP(t, tok)
		u := enrolledFrom(t, "dr-totp", b)
		fr, err := e.portal.FinishTOTPEnrollment(ctx, &sfv1.FinishTOTPEnrollmentRequest{EnrollmentToken: tok, FactorId: b.GetFactorId(), Code: e.code(t, u)}, asPortal)
		if err != nil || len(fr.GetRecoveryCodes()) != 10 {
			t.Fatalf("TOTP first factor: %v %v", fr, err)
		}

		if kind == "redis" {
			secrets := map[string]string{}
			for i, c := range append(rr.GetRecoveryCodes(), fr.GetRecoveryCodes()...) {
				secrets[fmt.Sprintf("recovery code %d", i)] = c
			}
			assertNotInRedis(t, e.redisAddr, secrets)
		}
	})
}
