package main

import (
	"context"
	"encoding/base32"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secondfactor/secondfactor/internal/boltstore"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/redisstore"
	"github.com/secondfactor/secondfactor/internal/redistest"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/server"
	"github.com/secondfactor/secondfactor/internal/server/servertest"
	"github.com/secondfactor/secondfactor/internal/totp"
)

// startReal runs the real server (as secondfactord builds it) on the
// embedded store on a loopback listener, at a clock the test moves, with
// opts, and returns the CLI's environment.
func startReal(t *testing.T, now func() time.Time, opts ...server.Option) map[string]string {
	t.Helper()
	const token = "cli-e2e-token-0123456789"
	cfg := servertest.Config(t)
	cfg.Callers = []string{"ops:portal+admin:" + secret.Hash(token)}
	addrs := servertest.Start(t, cfg, nil, append(opts, server.WithClock(now))...)
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

// forger is a store open beside the server's, and a way to edit or remove
// one of its stored audit events behind the service's back.
type forger struct {
	store  mfa.Store
	edit   func(ctx context.Context, userID string, seq uint64, edit func(*mfa.Event)) error
	remove func(ctx context.Context, userID string, seq uint64) error
}

// forgers open each kind of store for TestAdminAgainstRealServer.
var forgers = map[string]func(t *testing.T) forger{
	"bolt": func(t *testing.T) forger {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "sf.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { // after the server's shutdown, registered later
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		})
		return forger{
			store: s,
			edit: func(ctx context.Context, u string, seq uint64, e func(*mfa.Event)) error {
				return boltstore.TamperEvent(ctx, s, u, seq, e)
			},
			remove: func(ctx context.Context, u string, seq uint64) error { return boltstore.RemoveEvent(ctx, s, u, seq) },
		}
	},
	"redis": func(t *testing.T) forger {
		s := redisstore.New(redistest.Client(t, redistest.Start(t)))
		return forger{
			store: s,
			edit: func(ctx context.Context, u string, seq uint64, e func(*mfa.Event)) error {
				return redisstore.TamperEvent(ctx, s, u, seq, e)
			},
			remove: func(ctx context.Context, u string, seq uint64) error { return redisstore.RemoveEvent(ctx, s, u, seq) },
		}
	},
}

// TestAdminAgainstRealServer walks the administrator's guide with the CLI
// against the real server, on each store: a professional is locked out,
// then reset; the trail shows it all, and audit verify passes until an
// event is edited or removed in the store, when it fails and names it.
func TestAdminAgainstRealServer(t *testing.T) {
	for _, kind := range []string{"bolt", "redis"} {
		t.Run(kind, func(t *testing.T) { testAdmin(t, forgers[kind](t)) })
	}
}

func testAdmin(t *testing.T, f forger) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	env := startReal(t, func() time.Time { return now }, server.WithStore(f.store))
	run := func(wantCode int, args ...string) string {
		t.Helper()
		r := runCLI(t, env, "", args...)
		if r.code != wantCode {
			t.Fatalf("secondfactor %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, r.code, wantCode, r.stdout, r.stderr)
		}
		return r.stdout
	}

	tok := field(t, run(0, "enroll", "create", "dr-martin", "-proof", "strong"), "token")
	out := runCLI(t, env, "", "totp", "enroll", "-token", tok, "-name", "phone").stdout // no code on stdin: finished below
	factorID := field(t, out, "factor id")
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(field(t, out, "key"))
	if err != nil {
		t.Fatal(err)
	}
	code, err := totp.Code(key, totp.DefaultParams(), totp.DefaultParams().Step(now))
	if err != nil {
		t.Fatal(err)
	}
	run(0, "totp", "finish", "-token", tok, "-factor-id", factorID, "-code", code)
	now = now.Add(time.Minute)

	// Ten wrong codes lock the user; the admin sees it and where they came from.
	for range 10 {
		run(1, "verify", "totp", "dr-martin", "000000", "-ip", "203.0.113.9")
	}
	out = run(0, "factors", "list", "dr-martin")
	if !strings.Contains(out, "locked          until 2026-11-29T10:01:30Z") || !strings.Contains(out, factorID+"  totp") {
		t.Fatalf("factors list of a locked user:\n%s", out)
	}
	out = run(0, "audit", "list", "dr-martin", "-action", "verify.totp,user.locked", "-limit", "3")
	wantRow(t, out, "dr-martin/13", "user.locked", "-", "-", "ops", "203.0.113.9")
	wantRow(t, out, "dr-martin/12", "verify.totp", "rejected", "-", "ops", "203.0.113.9", "-")

	// The phone is lost: reset.
	run(2, "user", "reset", "dr-martin", "-reason", "lost phone") // no terminal, no -yes
	out = run(0, "user", "reset", "dr-martin", "-reason", "lost phone, ticket 4711", "-yes")
	if out != "reset user dr-martin: 1 factor(s) removed\n" {
		t.Errorf("user reset: %q", out)
	}
	if out = run(0, "factors", "list", "dr-martin"); !strings.Contains(out, "no factors") || !strings.Contains(out, "locked          no") {
		t.Errorf("factors list after reset:\n%s", out)
	}
	out = run(0, "audit", "list", "dr-martin", "-limit", "1")
	wantRow(t, out, "dr-martin/14", "user.reset", "-", "-", "ops", "-", "lost", "phone,", "ticket", "4711")
	out = run(0, "audit", "list", "-all", "-limit", "5", "-json")
	if n := strings.Count(out, `"hash"`); n != 14 {
		t.Errorf("audit list -all -json: %d events, want 14:\n%s", n, out)
	}

	if out = run(0, "audit", "verify"); out != "OK: every chain intact, 14 event(s) checked\n" {
		t.Errorf("audit verify: %q", out)
	}
	// Someone with the store's file turns a rejected code into an accepted one.
	err = f.edit(context.Background(), "dr-martin", 5, func(e *mfa.Event) { e.Result = "accepted" })
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"audit", "verify"}, {"audit", "verify", "dr-martin"}} {
		out = run(1, args...)
		if !strings.HasPrefix(out, "BROKEN: event dr-martin/5: ") {
			t.Errorf("%q after an edit: %q, want it to name dr-martin/5", args, out)
		}
	}
	// Or removes an event: the next one names the gap.
	for range 3 {
		run(0, "activation", "issue", "dr-b", "-reason", "identity checked by phone")
	}
	if err := f.remove(context.Background(), "dr-b", 2); err != nil {
		t.Fatal(err)
	}
	if out = run(1, "audit", "verify", "dr-b"); !strings.HasPrefix(out, "BROKEN: event dr-b/3: ") {
		t.Errorf("audit verify after a removal: %q, want it to name dr-b/3", out)
	}
}

// wantRow checks the row of event id in an audit list table: the words
// after its time and id, as far as want goes.
func wantRow(t *testing.T, out, id string, want ...string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != id {
			continue
		}
		if got := f[2:min(len(f), 2+len(want))]; !slices.Equal(got, want) {
			t.Errorf("event %s: %q, want %q", id, got, want)
		}
		return
	}
	t.Errorf("no event %s in:\n%s", id, out)
}
