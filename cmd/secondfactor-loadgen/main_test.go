package main

import (
	"context"
	"strings"
	"testing"

	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/server/servertest"
)

// startServer runs the real server (as secondfactord builds it) on the
// embedded store on a loopback listener and returns the environment that
// points the load generator at it.
func startServer(t *testing.T) map[string]string {
	t.Helper()
	const token = "loadgen-test-token-0123456789"
	cfg := servertest.Config(t)
	cfg.Callers = []string{"bench:portal:" + secret.Hash(token)}
	addrs := servertest.Start(t, cfg, nil)
	return map[string]string{"SECONDFACTOR_ADDR": addrs.GRPC, "SECONDFACTOR_TOKEN": token}
}

type result struct {
	code           int
	stdout, stderr string
}

func runLoadgen(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr strings.Builder
	code := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// TestWebAuthnAgainstRealServer runs a short load: every login accepted;
// with a wrong origin every login is refused and the run fails.
func TestWebAuthnAgainstRealServer(t *testing.T) {
	env := startServer(t)
	r := runLoadgen(t, env, "webauthn", "-users", "3", "-concurrency", "2", "-requests", "20")
	if r.code != 0 || !strings.Contains(r.stdout, "accepted    20, rejected 0, errors 0") {
		t.Fatalf("loadgen: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	r = runLoadgen(t, env, "webauthn", "-users", "1", "-requests", "3", "-origin", "http://localhost:9999")
	if r.code != 1 {
		t.Fatalf("loadgen with a wrong origin: exit %d, want 1\n%s", r.code, r.stdout)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{nil, 2, "usage: secondfactor-loadgen"},
		{[]string{"totp"}, 2, `unknown load "totp"`},
		{[]string{"webauthn", "-users", "0"}, 2, "-users 0: want 1 to 100000"},
		{[]string{"webauthn", "-concurrency", "2000"}, 2, "-concurrency 2000"},
		{[]string{"webauthn", "-duration", "2h"}, 2, "-duration 2h0m0s"},
		{[]string{"webauthn", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"webauthn", "-addr", "nohost"}, 2, `-addr "nohost": want host:port`},
		{[]string{"webauthn", "-nope"}, 2, "flag provided but not defined: -nope"},
	}
	for _, tt := range tests {
		r := runLoadgen(t, nil, tt.args...)
		if r.code != tt.wantCode || !strings.Contains(r.stderr, tt.wantErr) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tt.args, r.code, r.stderr, tt.wantCode, tt.wantErr)
		}
	}
}
