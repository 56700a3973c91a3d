package main

import (
	"encoding/base32"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/server"
	"github.com/secondfactor/secondfactor/internal/server/servertest"
	"github.com/secondfactor/secondfactor/internal/totp"
)

// startReal runs the real server (as secondfactord builds it) on the
// embedded store on a loopback listener, at a clock the test moves, and
// returns the CLI's environment.
func startReal(t *testing.T, now func() time.Time) map[string]string {
	t.Helper()
	const token = "cli-e2e-token-0123456789"
	cfg := servertest.Config(t)
	cfg.Callers = []string{"ops:portal+admin:" + secret.Hash(token)}
	addrs := servertest.Start(t, cfg, nil, server.WithClock(now))
	return map[string]string{"SECONDFACTOR_ADDR": addrs.GRPC, "SECONDFACTOR_TOKEN": token}
}

// field returns the value printed after label at the start of a line.
func field(t *testing.T, out, label string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(label) + `:?\s+(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q in output:\n%s", label, out)
	}
	return m[1]
}

// TestQuickstartAgainstRealServer walks the README's quickstart with the
// CLI against the real server: password-only enrolment, activation code,
// TOTP enrolment, verification, recovery code, user show.
func TestQuickstartAgainstRealServer(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	env := startReal(t, func() time.Time { return now })

	r := runCLI(t, env, "", "enroll", "create", "dr-martin", "-proof", "password-only", "-name", "Dr Claire Martin")
	if r.code != 0 {
		t.Fatalf("enroll create: exit %d, %s", r.code, r.stderr)
	}
	tok := field(t, r.stdout, "token")

	// Without the activation code, nothing is enrolled.
	r = runCLI(t, env, "", "totp", "enroll", "-token", tok, "-name", "phone")
	if r.code == 0 || !strings.Contains(r.stderr, "FailedPrecondition") {
		t.Fatalf("totp enroll without activation code: exit %d, stderr %s", r.code, r.stderr)
	}

	r = runCLI(t, env, "", "activation", "issue", "dr-martin", "-reason", "identity checked by phone")
	if r.code != 0 {
		t.Fatalf("activation issue: exit %d, %s", r.code, r.stderr)
	}
	code := field(t, r.stdout, "code")

	// Begin (stdin is empty, so the confirmation is left for totp finish).
	r = runCLI(t, env, "", "totp", "enroll", "-token", tok, "-name", "phone", "-activation-code", code)
	key, factorID := field(t, r.stdout, "key"), field(t, r.stdout, "factor id")
	secretBytes, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(key)
	if err != nil {
		t.Fatalf("key %q: %v", key, err)
	}
	otp := func() string {
		c, err := totp.Code(secretBytes, totp.DefaultParams(), totp.DefaultParams().Step(now))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	r = runCLI(t, env, "", "totp", "finish", "-token", tok, "-factor-id", factorID, "-code", otp())
	if r.code != 0 || !strings.Contains(r.stdout, "recovery codes") {
		t.Fatalf("totp finish: exit %d, stdout %s, stderr %s", r.code, r.stdout, r.stderr)
	}
	recovery := regexp.MustCompile(`(?m)^\s+([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})$`).FindAllStringSubmatch(r.stdout, -1)
	if len(recovery) != 10 {
		t.Fatalf("recovery codes printed: %d, want 10:\n%s", len(recovery), r.stdout)
	}

	now = now.Add(30 * time.Second)
	if r = runCLI(t, env, "", "verify", "totp", "dr-martin", otp()); r.code != 0 || r.stdout != "ACCEPTED\n" {
		t.Fatalf("verify totp: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	if r = runCLI(t, env, "", "verify", "totp", "dr-martin", otp()); r.code != 1 || r.stdout != "REJECTED\n" {
		t.Fatalf("verify totp, same code again: exit %d, %q", r.code, r.stdout)
	}
	if r = runCLI(t, env, "", "verify", "recovery", "dr-martin", recovery[0][1]); r.code != 0 || r.stdout != "ACCEPTED (9 recovery codes left)\n" {
		t.Fatalf("verify recovery: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	if r = runCLI(t, env, "", "verify", "recovery", "dr-martin", recovery[0][1]); r.code != 1 || r.stdout != "REJECTED\n" {
		t.Fatalf("verify recovery, same code again: exit %d, %q", r.code, r.stdout)
	}
	r = runCLI(t, env, "", "user", "show", "dr-martin")
	if r.code != 0 || !strings.Contains(r.stdout, "enrolled  yes") || !strings.Contains(r.stdout, factorID) {
		t.Fatalf("user show: exit %d:\n%s", r.code, r.stdout)
	}
}
