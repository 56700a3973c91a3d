package mfa_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// TestSuspendedKey: a key whose sign count goes backwards is suspended at
// once; from then every assertion is REJECTED, even with a higher count,
// until an administrator enables it. GetUser shows the suspension, and the
// trail and the log say what happened.
func TestSuspendedKey(t *testing.T) {
	e := newEnv(t, envOptions{webauthn: true})
	ne := e.createSession(t, "dr-clone", mfa.ProofStrong)
	key, kf, _ := e.registerKey(t, ne.Token.Reveal())
	cred := key.Credentials()[0]
	setCount := func(n uint32) {
		t.Helper()
		if err := key.SetSignCount(cred, n); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name   string
		before func()
		want   mfa.Verdict
	}{
		{"first login (count 1)", func() {}, mfa.Accepted},
		{"second login (count 2)", func() {}, mfa.Accepted},
		{"a clone's login (count 1 again)", func() { setCount(0) }, mfa.Rejected},
		{"a higher count (11)", func() { setCount(10) }, mfa.Rejected},
		{"higher still (12)", func() {}, mfa.Rejected},
		{"after EnableFactor (13)", func() {
			if err := e.svc.EnableFactor(asAdmin(t), "dr-clone", kf.ID, "key checked: user's only key"); err != nil {
				t.Fatal(err)
			}
		}, mfa.Accepted},
	}
	suspendedAt := e.clock.Now()
	for _, s := range steps {
		s.before()
		if got := e.login(t, "dr-clone", key); got.Verdict != s.want {
			t.Errorf("%s: %v, want %v", s.name, got.Verdict, s.want)
		}
		if s.name == "a clone's login (count 1 again)" {
			u := e.user(t, "dr-clone")
			if len(u.Factors) != 1 || !u.Factors[0].SuspendedAt.Equal(suspendedAt) {
				t.Errorf("GetUser after the clone's login: %+v, want the key suspended at %s", u.Factors, suspendedAt)
			}
		}
	}
	if u := e.user(t, "dr-clone"); !u.Factors[0].SuspendedAt.IsZero() || u.Factors[0].WebAuthn.SignCount != 13 {
		t.Errorf("after EnableFactor and a login: suspended at %s, count %d; want not suspended, 13", u.Factors[0].SuspendedAt, u.Factors[0].WebAuthn.SignCount)
	}
	err := e.svc.EnableFactor(asAdmin(t), "dr-clone", kf.ID, "again")
	if diff := cmp.Diff(refused(mfa.ReasonFactorNotSuspended), outcomeOf(t, err)); diff != "" {
		t.Errorf("EnableFactor of an enabled key (-want +got):\n%s", diff)
	}

	suspended := fromBrowser(mfa.ActionFactorSuspended, mfa.ResultSuspended, kf.ID)
	suspended.Reason = "sign count went backwards (stored 2, asserted 1): possible cloned authenticator"
	want := []audited{
		fromBrowser(mfa.ActionVerifyWebAuthn, mfa.ResultAccepted, kf.ID),
		fromBrowser(mfa.ActionVerifyWebAuthn, mfa.ResultAccepted, kf.ID),
		suspended,
		fromBrowser(mfa.ActionVerifyWebAuthn, mfa.ResultReplay, kf.ID),
		fromBrowser(mfa.ActionVerifyWebAuthn, mfa.ResultSuspended, kf.ID),
		fromBrowser(mfa.ActionVerifyWebAuthn, mfa.ResultSuspended, kf.ID),
		byAdmin(mfa.ActionFactorEnabled, kf.ID, "key checked: user's only key"),
		fromBrowser(mfa.ActionVerifyWebAuthn, mfa.ResultAccepted, kf.ID),
	}
	evs := e.events(t, "dr-clone")[2:] // after enrollment.created and factor.added
	if diff := cmp.Diff(want, auditedOf(evs)); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
	var lines []string
	for _, l := range e.logs.lines(t) {
		if l["factor_id"] == kf.ID && l["level"] == "WARN" {
			lines = append(lines, l["msg"].(string)+" "+l["request_id"].(string))
		}
	}
	wantLines := []string{
		"webauthn credential suspended: " + suspended.Reason + " req-portal",
		"webauthn assertion refused: credential suspended req-portal",
		"webauthn assertion refused: credential suspended req-portal",
		"factor enabled: suspension lifted req-admin",
	}
	if diff := cmp.Diff(wantLines, lines); diff != "" {
		t.Errorf("log lines mismatch (-want +got):\n%s", diff)
	}
}
