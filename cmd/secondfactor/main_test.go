package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
)

// result is what one run of the CLI printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// cliNow is the CLI's clock in tests.
var cliNow = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// runCLI runs the CLI with args, env as its whole environment and stdin as
// its (non-terminal) standard input.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	return runApp(env, stdin, false, args...)
}

// runTTY runs the CLI as runCLI does, but with stdin a terminal.
func runTTY(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	return runApp(env, stdin, true, args...)
}

func runApp(env map[string]string, stdin string, tty bool, args ...string) result {
	var stdout, stderr strings.Builder
	a := &app{
		stdin:    bufio.NewReader(strings.NewReader(stdin)),
		stdout:   &stdout,
		stderr:   &stderr,
		getenv:   func(k string) string { return env[k] },
		stdinTTY: tty,
		clock:    func() time.Time { return cliNow },
	}
	code := a.run(context.Background(), args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		names    []string
		wantPos  []string
		wantFlag map[string]string
		wantErr  error // errFlagParse, flag.ErrHelp, or any *usageError when usageErr
		usageErr bool
	}{
		{name: "flags after positional", args: []string{"alice", "-proof", "strong", "-json"},
			names: []string{"USER_ID"}, wantPos: []string{"alice"}, wantFlag: map[string]string{"proof": "strong", "json": "true"}},
		{name: "flags before positional", args: []string{"-proof=strong", "alice"},
			names: []string{"USER_ID"}, wantPos: []string{"alice"}, wantFlag: map[string]string{"proof": "strong", "json": "false"}},
		{name: "interleaved, two positionals", args: []string{"alice", "-json", "123456", "-proof", "x"},
			names: []string{"USER_ID", "CODE"}, wantPos: []string{"alice", "123456"}, wantFlag: map[string]string{"proof": "x", "json": "true"}},
		{name: "flag value that looks like a flag", args: []string{"-proof", "-json", "alice"},
			names: []string{"USER_ID"}, wantPos: []string{"alice"}, wantFlag: map[string]string{"proof": "-json", "json": "false"}},
		{name: "double dash ends flags", args: []string{"-json", "--", "-alice"},
			names: []string{"USER_ID"}, wantPos: []string{"-alice"}, wantFlag: map[string]string{"json": "true"}},
		{name: "double-dash flag spelling", args: []string{"--proof", "strong", "alice"},
			names: []string{"USER_ID"}, wantPos: []string{"alice"}, wantFlag: map[string]string{"proof": "strong"}},
		{name: "missing positional", args: []string{"-json"}, names: []string{"USER_ID"}, usageErr: true},
		{name: "extra positional", args: []string{"alice", "bob"}, names: []string{"USER_ID"}, usageErr: true},
		{name: "unexpected positional", args: []string{"alice"}, usageErr: true},
		{name: "empty positional", args: []string{" "}, names: []string{"USER_ID"}, usageErr: true},
		{name: "unknown flag", args: []string{"alice", "-nope"}, names: []string{"USER_ID"}, wantErr: errFlagParse},
		{name: "flag without its value", args: []string{"alice", "-proof"}, names: []string{"USER_ID"}, wantErr: errFlagParse},
		{name: "help", args: []string{"-h"}, names: []string{"USER_ID"}, wantErr: flag.ErrHelp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.String("proof", "", "")
			fs.Bool("json", false, "")
			pos, err := parse(fs, tt.args, tt.names...)
			var ue *usageError
			switch {
			case tt.usageErr:
				if !errors.As(err, &ue) {
					t.Fatalf("parse(%q) error = %v, want a usage error", tt.args, err)
				}
				return
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("parse(%q) error = %v, want %v", tt.args, err, tt.wantErr)
				}
				return
			case err != nil:
				t.Fatalf("parse(%q): %v", tt.args, err)
			}
			if diff := cmp.Diff(tt.wantPos, pos); diff != "" {
				t.Errorf("positional (-want +got):\n%s", diff)
			}
			for name, want := range tt.wantFlag {
				if got := fs.Lookup(name).Value.String(); got != want {
					t.Errorf("-%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestTokenNew(t *testing.T) {
	r := runCLI(t, nil, "", "token", "new", "-name", "portal-prod", "-role", "portal+admin")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("stdout has %d lines, want 2:\n%s", len(lines), r.stdout)
	}
	token, line := lines[0], lines[1]
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != 32 {
		t.Fatalf("token %q: %d bytes of base64url (err %v), want 32", token, len(raw), err)
	}
	sum := sha256.Sum256([]byte(token))
	if want := "portal-prod:portal+admin:" + hex.EncodeToString(sum[:]); line != want {
		t.Errorf("config line %q, want %q", line, want)
	}
	again := runCLI(t, nil, "", "token", "new", "-name", "portal-prod", "-role", "portal")
	if strings.HasPrefix(again.stdout, token) {
		t.Error("two runs printed the same token")
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args       []string
		wantCode   int
		wantStderr string
	}{
		{nil, 2, "usage: secondfactor"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"-addr", "127.0.0.1:1", "user", "show", "alice"}, 2, "flags go after the command"},
		{[]string{"totp"}, 2, "totp wants one of: enroll, finish"},
		{[]string{"user", "show"}, 2, "want USER_ID"},
		{[]string{"user", "show", "alice", "-nope"}, 2, "flag provided but not defined: -nope"},
		{[]string{"user", "show", "-h"}, 0, "usage: secondfactor user show USER_ID"},
		{[]string{"token", "new", "-name", "x"}, 2, "-role is required"},
		{[]string{"token", "new", "-name", "x", "-role", "portal+portal"}, 2, "portal twice"},
		{[]string{"token", "new", "-name", "a:b", "-role", "admin"}, 2, "only letters"},
		{[]string{"token", "new", "-name", "x", "-role", "root"}, 2, "roles are portal, admin"},
		{[]string{"enroll", "create", "alice"}, 2, "-proof is required"},
		{[]string{"enroll", "create", "alice", "-proof", "sms"}, 2, "want password-only, strong or existing-factor"},
		{[]string{"activation", "issue", "alice"}, 2, "-reason is required"},
		{[]string{"totp", "enroll", "-token", "t", "-code", "123456"}, 2, "-code needs -factor-id"},
		{[]string{"totp", "enroll", "-token", "t"}, 2, "-name is required"},
		{[]string{"totp", "finish", "-token", "t"}, 2, "-factor-id is required"},
		{[]string{"verify", "totp", "alice"}, 2, "want USER_ID CODE"},
		{[]string{"verify", "totp", "alice", "123456", "-ip", "10.0.0.300"}, 2, "not an IP address"},
		{[]string{"verify", "totp", "alice", "123456", "-addr", "sf.example.com"}, 2, "want host:port"},
		{[]string{"factors", "list"}, 2, "want USER_ID"},
		{[]string{"factor"}, 2, "factor wants one of: delete, enable"},
		{[]string{"factor", "delete", "alice"}, 2, "want USER_ID FACTOR_ID"},
		{[]string{"factor", "delete", "alice", "f1"}, 2, "-reason is required"},
		{[]string{"factor", "delete", "alice", "f1", "-reason", " "}, 2, "-reason is required"},
		{[]string{"factor", "delete", "alice", "f1", "-reason", "stolen"}, 2, "refusing to delete factor f1 of user alice without confirmation: stdin is not a terminal; pass -yes"},
		{[]string{"factor", "enable", "alice", "f1"}, 2, "-reason is required"},
		{[]string{"user", "reset", "alice"}, 2, "-reason is required"},
		{[]string{"user", "reset", "alice", "-yes"}, 2, "-reason is required"},
		{[]string{"user", "reset", "alice", "-reason", "lost phone"}, 2, "refusing to reset user alice without confirmation"},
		{[]string{"user", "reset", "-h"}, 0, "usage: secondfactor user reset USER_ID -reason TEXT [-yes]"},
		{[]string{"user", "unlock", "alice"}, 2, "-reason is required"},
		{[]string{"audit", "list", "alice", "bob"}, 2, "want at most USER_ID, got 2 arguments"},
		{[]string{"audit", "list", "-since", "yesterday"}, 2, `-since "yesterday": want an RFC 3339 time`},
		{[]string{"audit", "list", "-until", "-1h"}, 2, `-until "-1h": want`},
		{[]string{"audit", "list", "-limit", "0"}, 2, "-limit 0: want 1 to 1000"},
		{[]string{"audit", "list", "-limit", "1001"}, 2, "-limit 1001: want 1 to 1000"},
		{[]string{"audit", "verify", "alice", "bob"}, 2, "want at most USER_ID"},
		{[]string{"audit", "verify", " "}, 2, "USER_ID is empty"},
		{[]string{"bypass"}, 2, "bypass wants one of: issue, review"},
		{[]string{"bypass", "issue", "alice"}, 2, "-reason is required"},
		{[]string{"bypass", "issue", "alice", "-reason", "lost phone", "-ttl", "61m"}, 2, "-ttl 1h1m0s: want 1m0s to 1h0m0s"},
		{[]string{"bypass", "issue", "alice", "-reason", "lost phone", "-ttl", "30s"}, 2, "-ttl 30s: want 1m0s to 1h0m0s"},
		{[]string{"bypass", "review", "b1"}, 2, "-note is required"},
		{[]string{"bypass", "review", "-note", "ok"}, 2, "want BYPASS_ID"},
		{[]string{"audit", "review", "alice"}, 2, `unexpected argument "alice"`},
		{[]string{"audit", "review", "-since", "last week"}, 2, `-since "last week": want an RFC 3339 time`},
	}
	for _, tt := range tests {
		r := runCLI(t, nil, "", tt.args...)
		if r.code != tt.wantCode || !strings.Contains(r.stderr, tt.wantStderr) {
			t.Errorf("secondfactor %q: exit %d, stderr:\n%s\nwant exit %d, stderr containing %q",
				tt.args, r.code, r.stderr, tt.wantCode, tt.wantStderr)
		}
	}
	if r := runCLI(t, nil, "", "-h"); r.code != 0 || !strings.Contains(r.stdout, "verify totp") {
		t.Errorf("secondfactor -h: exit %d, stdout:\n%s", r.code, r.stdout)
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"phone", "phone"},
		{"Téléphone pro", "Téléphone pro"},
		{"a\x1b[31mred", `a\x1b[31mred`},
		{"tab\there", `tab\there`},
	}
	for _, tt := range tests {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// fakeServer answers the CLI's calls over a real loopback listener, and
// records the authorization metadata it received.
type fakeServer struct {
	sfv1.UnimplementedSecondFactorServiceServer
	sfv1.UnimplementedAdminServiceServer

	mu    sync.Mutex
	auth  []string
	token string
	calls []proto.Message // the Admin requests received, in order (admin_test.go)
}

func (f *fakeServer) check(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.auth = append(f.auth, md.Get("authorization")...)
	f.mu.Unlock()
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+f.token {
		return status.Error(codes.Unauthenticated, "unknown caller")
	}
	return nil
}

var created = timestamppb.New(time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC))

func (f *fakeServer) GetUser(ctx context.Context, r *sfv1.GetUserRequest) (*sfv1.GetUserResponse, error) {
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	return &sfv1.GetUserResponse{UserId: r.GetUserId(), Enrolled: true, Locked: true, Factors: []*sfv1.Factor{
		{Id: "f1", Kind: sfv1.FactorKind_FACTOR_KIND_TOTP, Name: "phone\x1b[2J", CreatedAt: created},
		{Id: "f2", Kind: sfv1.FactorKind_FACTOR_KIND_WEBAUTHN, Name: "YubiKey 5", CreatedAt: created, LastUsedAt: created},
	}}, nil
}

func (f *fakeServer) VerifyTOTP(ctx context.Context, r *sfv1.VerifyTOTPRequest) (*sfv1.VerifyTOTPResponse, error) {
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	switch r.GetCode() {
	case "111111":
		return &sfv1.VerifyTOTPResponse{Verdict: sfv1.Verdict_VERDICT_ACCEPTED}, nil
	case "333333":
		return &sfv1.VerifyTOTPResponse{Verdict: sfv1.Verdict_VERDICT_LOCKED, RetryAfter: durationpb.New(90 * time.Second)}, nil
	}
	return &sfv1.VerifyTOTPResponse{Verdict: sfv1.Verdict_VERDICT_REJECTED}, nil
}

func (f *fakeServer) BeginTOTPEnrollment(ctx context.Context, r *sfv1.BeginTOTPEnrollmentRequest) (*sfv1.BeginTOTPEnrollmentResponse, error) {
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	if r.GetEnrollmentToken() != "enrol-tok" {
		return nil, status.Error(codes.NotFound, "enrolment session: not found")
	}
	return &sfv1.BeginTOTPEnrollmentResponse{
		FactorId: "f9", Uri: testURI, Secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
		Algorithm: sfv1.TOTPAlgorithm_TOTP_ALGORITHM_SHA1, Digits: 6, Period: durationpb.New(30 * time.Second),
		ExpiresAt: created,
	}, nil
}

func (f *fakeServer) FinishTOTPEnrollment(ctx context.Context, r *sfv1.FinishTOTPEnrollmentRequest) (*sfv1.FinishTOTPEnrollmentResponse, error) {
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	if r.GetFactorId() != "f9" || r.GetCode() != "123456" {
		return nil, status.Error(codes.InvalidArgument, "code: does not match the pending factor")
	}
	return &sfv1.FinishTOTPEnrollmentResponse{
		Factor:        &sfv1.Factor{Id: "f9", Kind: sfv1.FactorKind_FACTOR_KIND_TOTP, Name: "phone", CreatedAt: created},
		RecoveryCodes: []string{"aaaa-bbbb", "cccc-dddd"},
	}, nil
}

func (f *fakeServer) IssueActivationCode(ctx context.Context, r *sfv1.IssueActivationCodeRequest) (*sfv1.IssueActivationCodeResponse, error) {
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	return &sfv1.IssueActivationCodeResponse{Code: "ACT-1234", ExpiresAt: created}, nil
}

// startFake serves f on a 127.0.0.1 port and returns the CLI's environment
// to reach it with token.
func startFake(t *testing.T, f *fakeServer) map[string]string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	sfv1.RegisterSecondFactorServiceServer(s, f)
	sfv1.RegisterAdminServiceServer(s, f)
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-served; err != nil {
			t.Errorf("fake server: %v", err)
		}
	})
	return map[string]string{"SECONDFACTOR_ADDR": lis.Addr().String(), "SECONDFACTOR_TOKEN": f.token}
}

func TestAgainstFakeServer(t *testing.T) {
	f := &fakeServer{token: "s3cr3t-bearer"}
	env := startFake(t, f)

	t.Run("verify", func(t *testing.T) {
		for _, tt := range []struct {
			code, want string
			exit       int
		}{
			{"111111", "ACCEPTED\n", 0},
			{"222222", "REJECTED\n", 1},
			{"333333", "LOCKED (retry after 1m30s)\n", 1},
		} {
			r := runCLI(t, env, "", "verify", "totp", "alice", tt.code, "-ip", "192.0.2.7")
			if r.code != tt.exit || r.stdout != tt.want {
				t.Errorf("verify %s: exit %d, stdout %q, stderr %q; want exit %d, stdout %q",
					tt.code, r.code, r.stdout, r.stderr, tt.exit, tt.want)
			}
		}
	})

	t.Run("user show", func(t *testing.T) {
		r := runCLI(t, env, "", "user", "show", "alice")
		if r.code != 0 {
			t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
		}
		for _, want := range []string{
			"enrolled  yes", "locked    yes",
			`f1  totp      phone\x1b[2J  2026-03-01T09:30:00Z  never`,
			"f2  webauthn  YubiKey 5",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "\x1b") {
			t.Error("stdout holds a raw escape character from a factor name")
		}
		j := runCLI(t, env, "", "user", "show", "-json", "alice")
		if j.code != 0 || !strings.Contains(j.stdout, `"userId"`) {
			t.Errorf("user show -json: exit %d, stdout:\n%s", j.code, j.stdout)
		}
	})

	t.Run("activation issue", func(t *testing.T) {
		r := runCLI(t, env, "", "activation", "issue", "alice", "-reason", "called back")
		if r.code != 0 || !strings.Contains(r.stdout, "ACT-1234") || !strings.Contains(r.stdout, "2026-03-01T09:30:00Z") {
			t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("totp enroll", func(t *testing.T) {
		r := runCLI(t, env, "123 456\n", "totp", "enroll", "-token", "enrol-tok", "-name", "phone")
		if r.code != 0 {
			t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
		}
		for _, want := range []string{"█", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "f9", "SHA1, 6 digits, every 30s",
			`confirmed    totp factor f9 "phone"`, "  aaaa-bbbb\n  cccc-dddd\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
			}
		}
		if strings.Contains(r.stderr, "code: ") {
			t.Errorf("prompted on a non-terminal stdin: %q", r.stderr)
		}
	})

	t.Run("totp enroll wrong code", func(t *testing.T) {
		r := runCLI(t, env, "654321\n", "totp", "enroll", "-token", "enrol-tok", "-name", "phone")
		if r.code != 1 || !strings.Contains(r.stderr, "secondfactor: InvalidArgument: code: does not match") ||
			!strings.Contains(r.stderr, "-factor-id f9") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})

	t.Run("totp enroll no code", func(t *testing.T) {
		r := runCLI(t, env, "", "totp", "enroll", "-token", "enrol-tok", "-name", "phone")
		if r.code != 1 || !strings.Contains(r.stderr, "no code on stdin") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})

	t.Run("totp finish", func(t *testing.T) {
		for _, args := range [][]string{
			{"totp", "finish", "-token", "enrol-tok", "-factor-id", "f9", "-code", "123456"},
			{"totp", "enroll", "-token", "enrol-tok", "-factor-id", "f9", "-code", "123456"},
		} {
			r := runCLI(t, env, "", args...)
			if r.code != 0 || !strings.Contains(r.stdout, "confirmed") || strings.Contains(r.stdout, "█") {
				t.Errorf("%q: exit %d, stdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
			}
		}
	})

	t.Run("unauthenticated", func(t *testing.T) {
		bad := map[string]string{"SECONDFACTOR_ADDR": env["SECONDFACTOR_ADDR"], "SECONDFACTOR_TOKEN": "wrong-bearer"}
		r := runCLI(t, bad, "", "user", "show", "alice")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "secondfactor: Unauthenticated: unknown caller\n") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		if strings.Contains(r.stderr+r.stdout, "wrong-bearer") {
			t.Error("output shows the bearer token")
		}
	})

	f.mu.Lock()
	defer f.mu.Unlock()
	for _, got := range f.auth {
		if got != "Bearer s3cr3t-bearer" && got != "Bearer wrong-bearer" {
			t.Errorf("authorization metadata %q, want \"Bearer <token>\"", got)
		}
	}
	if len(f.auth) == 0 {
		t.Error("the server saw no authorization metadata")
	}
}
