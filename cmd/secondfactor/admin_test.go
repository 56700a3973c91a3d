package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
)

// The fake server's Admin methods record each request (calls) and answer
// from fixed data.

func (f *fakeServer) record(ctx context.Context, m proto.Message) error {
	if err := f.check(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, m)
	return nil
}

// takeCalls returns the Admin requests received since the last take.
func (f *fakeServer) takeCalls() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeServer) ListFactors(ctx context.Context, r *sfv1.ListFactorsRequest) (*sfv1.ListFactorsResponse, error) {
	if err := f.record(ctx, r); err != nil {
		return nil, err
	}
	if r.GetUserId() == "nobody" {
		return &sfv1.ListFactorsResponse{}, nil
	}
	return &sfv1.ListFactorsResponse{
		LockedUntil:   timestamppb.New(created.AsTime().Add(time.Hour)),
		RecoveryCodes: 7,
		Factors: []*sfv1.Factor{
			{Id: "f1", Kind: sfv1.FactorKind_FACTOR_KIND_TOTP, Name: "phone", CreatedAt: created},
			{Id: "f2", Kind: sfv1.FactorKind_FACTOR_KIND_WEBAUTHN, Name: "YubiKey\x1b[2J", CreatedAt: created, LastUsedAt: created, SuspendedAt: created},
		},
	}, nil
}

func (f *fakeServer) DeleteFactor(ctx context.Context, r *sfv1.DeleteFactorRequest) (*sfv1.DeleteFactorResponse, error) {
	if err := f.record(ctx, r); err != nil {
		return nil, err
	}
	if r.GetFactorId() != "f1" {
		return nil, status.Error(codes.NotFound, "factor: not found")
	}
	return &sfv1.DeleteFactorResponse{}, nil
}

func (f *fakeServer) EnableFactor(ctx context.Context, r *sfv1.EnableFactorRequest) (*sfv1.EnableFactorResponse, error) {
	return &sfv1.EnableFactorResponse{}, f.record(ctx, r)
}

func (f *fakeServer) ResetUser(ctx context.Context, r *sfv1.ResetUserRequest) (*sfv1.ResetUserResponse, error) {
	return &sfv1.ResetUserResponse{FactorsRemoved: 2}, f.record(ctx, r)
}

func (f *fakeServer) UnlockUser(ctx context.Context, r *sfv1.UnlockUserRequest) (*sfv1.UnlockUserResponse, error) {
	return &sfv1.UnlockUserResponse{}, f.record(ctx, r)
}

// auditEvents are the fake trail, newest first: two pages of two, one.
var auditEvents = []*sfv1.AuditEvent{
	{Id: "alice/3", Time: created, Action: "user.reset", UserId: "alice", Actor: "ops-bob", Reason: "lost phone"},
	{Id: "alice/2", Time: created, Action: "verify.totp", UserId: "alice", Actor: "portal", Result: "rejected", FactorId: "f1", ClientIp: "192.0.2.7"},
	{Id: "alice/1", Time: created, Action: "factor.added", UserId: "alice", Actor: "portal", FactorId: "f1"},
}

func (f *fakeServer) ListAuditEvents(ctx context.Context, r *sfv1.ListAuditEventsRequest) (*sfv1.ListAuditEventsResponse, error) {
	if err := f.record(ctx, r); err != nil {
		return nil, err
	}
	switch r.GetPageToken() {
	case "":
		return &sfv1.ListAuditEventsResponse{Events: auditEvents[:2], NextPageToken: "page 2"}, nil
	case "page 2":
		return &sfv1.ListAuditEventsResponse{Events: auditEvents[2:]}, nil
	case "loop":
		return &sfv1.ListAuditEventsResponse{Events: auditEvents[:1], NextPageToken: "loop"}, nil
	}
	return nil, status.Error(codes.InvalidArgument, "page_token: not a token of this server")
}

func (f *fakeServer) VerifyAuditTrail(ctx context.Context, r *sfv1.VerifyAuditTrailRequest) (*sfv1.VerifyAuditTrailResponse, error) {
	if err := f.record(ctx, r); err != nil {
		return nil, err
	}
	if r.GetUserId() == "mallory" {
		return &sfv1.VerifyAuditTrailResponse{Events: 3, BrokenEventId: "mallory/3", Problem: "hash does not match the event"}, nil
	}
	return &sfv1.VerifyAuditTrailResponse{Ok: true, Events: 42}, nil
}

// fakeCtx is the context of a call to f made by its own test, with f's
// bearer token.
func fakeCtx(f *fakeServer) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+f.token))
}

// wantCalls checks the Admin requests the fake server received.
func wantCalls(t *testing.T, f *fakeServer, want ...proto.Message) {
	t.Helper()
	if diff := cmp.Diff(want, f.takeCalls(), protocmp.Transform()); diff != "" {
		t.Errorf("requests received (-want +got):\n%s", diff)
	}
}

// wantOutput checks a run's exit status and that its stdout holds each of
// want, in order.
func wantOutput(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	rest := r.stdout
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("stdout lacks %q (in order):\n%s", w, r.stdout)
		}
		rest = rest[i+len(w):]
	}
}

// wantJSON checks a run's exit status and that its stdout is the protojson
// of want.
func wantJSON(t *testing.T, r result, code int, want proto.Message) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	got := want.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal([]byte(r.stdout), got); err != nil {
		t.Fatalf("stdout is not the JSON of a %T: %v\n%s", want, err, r.stdout)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("JSON output (-want +got):\n%s", diff)
	}
}

func TestAdminAgainstFakeServer(t *testing.T) {
	f := &fakeServer{token: "s3cr3t-bearer"}
	env := startFake(t, f)

	t.Run("factors list", func(t *testing.T) {
		r := runCLI(t, env, "", "factors", "list", "alice")
		wantOutput(t, r, 0, "user            alice\n", "locked          until 2026-03-01T10:30:00Z\n", "recovery codes  7 left\n",
			"ID  KIND      NAME            CREATED               LAST USED             SUSPENDED\n",
			"f1  totp      phone           2026-03-01T09:30:00Z  never                 no\n",
			`f2  webauthn  YubiKey\x1b[2J  2026-03-01T09:30:00Z  2026-03-01T09:30:00Z  2026-03-01T09:30:00Z`)
		if strings.Contains(r.stdout, "\x1b") {
			t.Error("stdout holds a raw escape character from a factor name")
		}
		wantCalls(t, f, &sfv1.ListFactorsRequest{UserId: "alice"})

		r = runCLI(t, env, "", "factors", "list", "nobody")
		wantOutput(t, r, 0, "locked          no\n", "recovery codes  0 left\n", "no factors\n")
		f.takeCalls()

		r = runCLI(t, env, "", "factors", "list", "alice", "-json")
		want, _ := f.ListFactors(fakeCtx(f), &sfv1.ListFactorsRequest{UserId: "alice"})
		wantJSON(t, r, 0, want)
		f.takeCalls()
	})

	t.Run("factor delete", func(t *testing.T) {
		r := runCLI(t, env, "", "factor", "delete", "alice", "f1", "-reason", "stolen key", "-yes")
		wantOutput(t, r, 0, "deleted factor f1 of user alice\n")
		wantCalls(t, f, &sfv1.DeleteFactorRequest{UserId: "alice", FactorId: "f1", Reason: "stolen key"})

		r = runCLI(t, env, "", "factor", "delete", "alice", "f7", "-reason", "stolen key", "-yes")
		if r.code != 1 || r.stderr != "secondfactor: NotFound: factor: not found\n" {
			t.Errorf("unknown factor: exit %d, stderr %q", r.code, r.stderr)
		}
		f.takeCalls()
	})

	t.Run("confirmation on a terminal", func(t *testing.T) {
		r := runTTY(t, env, "yes\n", "factor", "delete", "alice", "f1", "-reason", "stolen key")
		wantOutput(t, r, 0, "deleted factor f1 of user alice\n")
		if want := "delete factor f1 of user alice: it stops working at once"; !strings.HasPrefix(r.stderr, want) || !strings.HasSuffix(r.stderr, "Type yes to go on: ") {
			t.Errorf("prompt %q, want it to start with %q and ask for yes", r.stderr, want)
		}
		wantCalls(t, f, &sfv1.DeleteFactorRequest{UserId: "alice", FactorId: "f1", Reason: "stolen key"})

		for _, answer := range []string{"no\n", "y\n", "", "YES please\n"} {
			r := runTTY(t, env, answer, "user", "reset", "alice", "-reason", "lost phone")
			if r.code != 1 || r.stdout != "" || !strings.HasSuffix(r.stderr, "secondfactor: not confirmed: nothing changed\n") {
				t.Errorf("answer %q: exit %d, stdout %q, stderr %q; want exit 1, nothing changed", answer, r.code, r.stdout, r.stderr)
			}
		}
		wantCalls(t, f) // no call without a yes

		r = runTTY(t, env, "", "user", "reset", "alice", "-reason", "lost phone", "-yes")
		wantOutput(t, r, 0, "reset user alice: 2 factor(s) removed\n")
		if strings.Contains(r.stderr, "Type yes") {
			t.Errorf("-yes asked anyway: %q", r.stderr)
		}
		wantCalls(t, f, &sfv1.ResetUserRequest{UserId: "alice", Reason: "lost phone"})
	})

	t.Run("user reset", func(t *testing.T) {
		r := runCLI(t, env, "", "user", "reset", "alice", "-reason", "lost phone", "-yes", "-json")
		wantJSON(t, r, 0, &sfv1.ResetUserResponse{FactorsRemoved: 2})
		wantCalls(t, f, &sfv1.ResetUserRequest{UserId: "alice", Reason: "lost phone"})
	})

	t.Run("user unlock and factor enable", func(t *testing.T) {
		// Neither asks for confirmation: they take nothing away.
		r := runCLI(t, env, "", "user", "unlock", "alice", "-reason", "called the user")
		wantOutput(t, r, 0, "unlocked user alice\n")
		r = runCLI(t, env, "", "factor", "enable", "alice", "f2", "-reason", "user had restored the key from a backup")
		wantOutput(t, r, 0, "enabled factor f2 of user alice\n")
		wantCalls(t, f,
			&sfv1.UnlockUserRequest{UserId: "alice", Reason: "called the user"},
			&sfv1.EnableFactorRequest{UserId: "alice", FactorId: "f2", Reason: "user had restored the key from a backup"})
	})

	t.Run("audit list, one page", func(t *testing.T) {
		r := runCLI(t, env, "", "audit", "list", "alice", "-since", "24h", "-until", "2026-03-02", "-action", "verify.totp,user.reset", "-action", "factor.added", "-limit", "2")
		wantOutput(t, r, 0,
			"TIME                  ID       ACTION       RESULT    FACTOR  ACTOR    CLIENT IP  REASON\n",
			"2026-03-01T09:30:00Z  alice/3  user.reset   -         -       ops-bob  -          lost phone\n",
			"2026-03-01T09:30:00Z  alice/2  verify.totp  rejected  f1      portal   192.0.2.7  -\n")
		if strings.Contains(r.stdout, "alice/1") {
			t.Errorf("printed the second page without -all:\n%s", r.stdout)
		}
		if want := "# more events: add -page-token 'page 2' (or -all)\n"; r.stderr != want {
			t.Errorf("stderr %q, want %q", r.stderr, want)
		}
		wantCalls(t, f, &sfv1.ListAuditEventsRequest{
			UserId: "alice", Limit: 2, Actions: []string{"verify.totp", "user.reset", "factor.added"},
			Since: timestamppb.New(cliNow.Add(-24 * time.Hour)), Until: timestamppb.New(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)),
		})
	})

	t.Run("audit list, every page", func(t *testing.T) {
		r := runCLI(t, env, "", "audit", "list", "-all", "-since", "2026-03-01T00:00:00+01:00")
		wantOutput(t, r, 0, "alice/3", "alice/2", "alice/1")
		if r.stderr != "" {
			t.Errorf("stderr %q, want none after the last page", r.stderr)
		}
		since := timestamppb.New(time.Date(2026, 2, 28, 23, 0, 0, 0, time.UTC))
		wantCalls(t, f,
			&sfv1.ListAuditEventsRequest{Limit: 100, Since: since},
			&sfv1.ListAuditEventsRequest{Limit: 100, Since: since, PageToken: "page 2"})

		r = runCLI(t, env, "", "audit", "list", "-all", "-json")
		wantJSON(t, r, 0, &sfv1.ListAuditEventsResponse{Events: auditEvents})
		f.takeCalls()

		r = runCLI(t, env, "", "audit", "list", "-page-token", "page 2")
		wantOutput(t, r, 0, "alice/1")
		f.takeCalls()

		r = runCLI(t, env, "", "audit", "list", "-all", "-page-token", "loop")
		if r.code != 1 || !strings.Contains(r.stderr, `returned page token "loop" twice`) {
			t.Errorf("a server that loops: exit %d, stderr %q", r.code, r.stderr)
		}
		f.takeCalls()
	})

	t.Run("audit verify", func(t *testing.T) {
		r := runCLI(t, env, "", "audit", "verify")
		wantOutput(t, r, 0, "OK: every chain intact, 42 event(s) checked\n")
		r = runCLI(t, env, "", "audit", "verify", "mallory")
		wantOutput(t, r, 1, "BROKEN: event mallory/3: hash does not match the event\n", "the chain of user mallory: 3 event(s) checked\n")
		r = runCLI(t, env, "", "audit", "verify", "mallory", "-json")
		wantJSON(t, r, 1, &sfv1.VerifyAuditTrailResponse{Events: 3, BrokenEventId: "mallory/3", Problem: "hash does not match the event"})
		wantCalls(t, f, &sfv1.VerifyAuditTrailRequest{}, &sfv1.VerifyAuditTrailRequest{UserId: "mallory"}, &sfv1.VerifyAuditTrailRequest{UserId: "mallory"})
	})
}

func TestParseWhen(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2026-03-01T09:30:00Z", time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)},
		{"2026-03-01T09:30:00+02:00", time.Date(2026, 3, 1, 7, 30, 0, 0, time.UTC)},
		{"2026-03-01", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"90m", cliNow.Add(-90 * time.Minute)},
		{"0s", cliNow},
	}
	for _, tt := range tests {
		got, err := parseWhen("since", tt.in, cliNow)
		if err != nil || !got.AsTime().Equal(tt.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", tt.in, got.AsTime(), err, tt.want)
		}
	}
	for _, in := range []string{"yesterday", "-1h", "2026-13-01", "1d"} {
		if _, err := parseWhen("since", in, cliNow); err == nil {
			t.Errorf("parseWhen(%q): no error", in)
		}
	}
	if got, err := parseWhen("since", "", cliNow); got != nil || err != nil {
		t.Errorf(`parseWhen("") = %v, %v; want nil, nil`, got, err)
	}
}
