package main

import (
	"encoding/base32"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/secondfactor/secondfactor/internal/redistest"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/server"
	"github.com/secondfactor/secondfactor/internal/server/servertest"
	"github.com/secondfactor/secondfactor/internal/totp"
)

// TestBypassAgainstRealServer walks the break-glass procedure with the CLI
// against the real server, on each store, with two administrators: ops
// issues a bypass code to a professional who lost every factor; it lets
// her in once, enrols nothing; it appears in the review list with its
// reason, and the second administrator, not ops, signs it off.
func TestBypassAgainstRealServer(t *testing.T) {
	for _, kind := range []string{"bolt", "redis"} {
		t.Run(kind, func(t *testing.T) { testBypass(t, kind) })
	}
}

// cli runs the CLI as one caller and checks its exit status.
type cli struct {
	t   *testing.T
	env map[string]string
}

func (c cli) run(wantCode int, args ...string) result {
	c.t.Helper()
	r := runCLI(c.t, c.env, "", args...)
	if r.code != wantCode {
		c.t.Fatalf("secondfactor %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, r.code, wantCode, r.stdout, r.stderr)
	}
	return r
}

func testBypass(t *testing.T, kind string) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	const opsToken, revToken = "cli-bypass-ops-token-0123456789", "cli-bypass-rev-token-0123456789"
	cfg := servertest.Config(t)
	cfg.Callers = []string{"ops:portal+admin:" + secret.Hash(opsToken), "rev:admin:" + secret.Hash(revToken)}
	if kind == "redis" {
		cfg.Store, cfg.RedisAddrs = "redis", []string{redistest.Start(t)}
	}
	addrs := servertest.Start(t, cfg, nil, server.WithClock(func() time.Time { return now }))
	ops := cli{t, map[string]string{"SECONDFACTOR_ADDR": addrs.GRPC, "SECONDFACTOR_TOKEN": opsToken}}
	rev := cli{t, map[string]string{"SECONDFACTOR_ADDR": addrs.GRPC, "SECONDFACTOR_TOKEN": revToken}}

	// Dr Martin has a phone, and then loses it.
	tok := field(t, ops.run(0, "enroll", "create", "dr-martin", "-proof", "strong").stdout, "token")
	out := runCLI(t, ops.env, "", "totp", "enroll", "-token", tok, "-name", "phone").stdout // no code on stdin: finished below
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(field(t, out, "key"))
	if err != nil {
		t.Fatal(err)
	}
	code, err := totp.Code(key, totp.DefaultParams(), totp.DefaultParams().Step(now))
	if err != nil {
		t.Fatal(err)
	}
	ops.run(0, "totp", "finish", "-token", tok, "-factor-id", field(t, out, "factor id"), "-code", code)
	now = now.Add(time.Hour)

	const reason = "lost every factor mid-shift, identity checked by video call, ticket 4714"
	ops.run(2, "bypass", "issue", "dr-martin")                                  // no reason
	ops.run(2, "bypass", "issue", "dr-martin", "-reason", reason, "-ttl", "2h") // too long
	r := ops.run(0, "bypass", "issue", "dr-martin", "-reason", reason, "-ttl", "30m")
	bypassCode, id := field(t, r.stdout, "code"), field(t, r.stdout, "bypass id")
	if got := field(t, r.stdout, "expires"); got != "2026-11-29T11:30:00Z" {
		t.Errorf("bypass issue: expires %s, want in 30 minutes", got)
	}
	if !strings.Contains(r.stderr, "secondfactor bypass review "+id) {
		t.Errorf("bypass issue: stderr %q, want the review command", r.stderr)
	}

	// It lets her in once.
	now = now.Add(5 * time.Minute)
	r = ops.run(0, "verify", "recovery", "dr-martin", bypassCode, "-ip", "203.0.113.9")
	if r.stdout != "ACCEPTED (a bypass code, now used up: no factor was verified)\n" {
		t.Errorf("verify recovery with the bypass code: %q", r.stdout)
	}
	if r = ops.run(1, "verify", "recovery", "dr-martin", bypassCode); r.stdout != "REJECTED\n" {
		t.Errorf("verify recovery with the bypass code again: %q", r.stdout)
	}
	// It enrols nothing: no session may add a factor.
	for proof, want := range map[string]string{
		"existing-factor": "FailedPrecondition: PROOF_EXISTING_FACTOR: no verification of the user's factor",
		"strong":          "FailedPrecondition: the user already has a factor",
		"password-only":   "FailedPrecondition: the user already has a factor",
	} {
		if r = ops.run(1, "enroll", "create", "dr-martin", "-proof", proof); !strings.Contains(r.stderr, want) {
			t.Errorf("enroll create -proof %s after the bypass login: stderr %q, want %q", proof, r.stderr, want)
		}
	}

	// The review list shows it, used, not reviewed, with its reason.
	r = ops.run(0, "audit", "review", "-since", "24h")
	wantBypassRow(t, r.stdout, id, "dr-martin", "ops", "2026-11-29T11:30:00Z", "2026-11-29T11:05:00Z", "NOT", "REVIEWED", "lost", "every")
	if !strings.Contains(r.stdout, reason) || r.stderr != "# 1 bypass(es), 1 not reviewed\n" {
		t.Errorf("audit review: stdout\n%s\nstderr %q; want the reason and 1 not reviewed", r.stdout, r.stderr)
	}

	// Ops cannot sign off their own bypass; rev can, once.
	rev.run(2, "bypass", "review", id) // no note
	if r = ops.run(1, "bypass", "review", id, "-note", "all fine"); !strings.Contains(r.stderr, "FailedPrecondition: a bypass is reviewed by a second administrator") {
		t.Errorf("bypass review by the issuer: stderr %q", r.stderr)
	}
	now = now.Add(time.Hour)
	const note = "called the ward back: she was on shift; the login came from the hospital"
	r = rev.run(0, "bypass", "review", id, "-note", note)
	if r.stdout != "reviewed bypass "+id+" of user dr-martin, issued by ops (used 2026-11-29T11:05:00Z)\n" {
		t.Errorf("bypass review: %q", r.stdout)
	}
	if r = rev.run(1, "bypass", "review", id, "-note", "again"); !strings.Contains(r.stderr, "FailedPrecondition: the bypass was reviewed already") {
		t.Errorf("a second review: stderr %q", r.stderr)
	}
	if r = rev.run(1, "bypass", "review", "00000000000000ff", "-note", "x"); !strings.Contains(r.stderr, "NotFound: no bypass has this id") {
		t.Errorf("review of an unknown bypass: stderr %q", r.stderr)
	}

	// Both administrators, the reason and the note are in the list.
	r = rev.run(0, "audit", "review", "-since", "2026-11-29", "-until", "2026-11-30")
	wantBypassRow(t, r.stdout, id, "dr-martin", "ops", "2026-11-29T11:30:00Z", "2026-11-29T11:05:00Z", "rev", "lost", "every")
	if !strings.Contains(r.stdout, reason) || !strings.Contains(r.stdout, note) || r.stderr != "# 1 bypass(es), 0 not reviewed\n" {
		t.Errorf("audit review after the review: stdout\n%s\nstderr %q", r.stdout, r.stderr)
	}
	r = rev.run(0, "audit", "review", "-json")
	var listed struct {
		Bypasses []map[string]any `json:"bypasses"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil {
		t.Fatalf("audit review -json: %v\n%s", err, r.stdout)
	}
	if len(listed.Bypasses) != 1 {
		t.Fatalf("audit review -json: %d bypasses, want 1", len(listed.Bypasses))
	}
	b := listed.Bypasses[0]
	got := [6]any{b["bypassId"], b["issuedBy"], b["reason"], b["reviewedBy"], b["reviewNote"], b["usedAt"]}
	if want := [6]any{id, "ops", reason, "rev", note, "2026-11-29T11:05:00Z"}; got != want {
		t.Errorf("audit review -json: %v, want %v", got, want)
	}
	if r = rev.run(0, "audit", "review", "-until", "2026-11-29"); r.stdout != "" || r.stderr != "no bypasses\n" {
		t.Errorf("audit review of a day before: %q %q", r.stdout, r.stderr)
	}

	// The trail has the issue, the use and the review, and is intact.
	out = rev.run(0, "audit", "list", "dr-martin", "-action", "bypass.issued,verify.bypass,bypass.reviewed").stdout
	wantRow(t, out, "dr-martin/6", "bypass.reviewed", "-", id, "rev", "-", "called", "the", "ward")
	wantRow(t, out, "dr-martin/4", "verify.bypass", "accepted", id, "ops", "203.0.113.9", "-")
	wantRow(t, out, "dr-martin/3", "bypass.issued", "-", id, "ops", "-", "lost", "every")
	if out = rev.run(0, "audit", "verify").stdout; !strings.HasPrefix(out, "OK: every chain intact") {
		t.Errorf("audit verify: %q", out)
	}
}

// wantBypassRow checks the row of bypass id in an audit review table: the
// words after its time of issue and id, as far as want goes.
func wantBypassRow(t *testing.T, out, id string, want ...string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != id {
			continue
		}
		if got := f[2:min(len(f), 2+len(want))]; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("bypass %s: %q, want %q", id, got, want)
		}
		return
	}
	t.Errorf("no bypass %s in:\n%s", id, out)
}
