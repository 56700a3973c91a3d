package grpcapi

import (
	"context"
	"encoding/base32"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/totp"
)

// rpcFields are the fields of an rpc log line that say who called, about
// whom, from where, and how it went.
type rpcFields struct {
	Method, Code, Caller, User, ClientIP, Verdict string
}

func rpcFieldsOf(m map[string]any) rpcFields {
	s := func(k string) string { v, _ := m[k].(string); return v }
	return rpcFields{Method: s("method"), Code: s("code"), Caller: s("caller"), User: s("user_id"), ClientIP: s("client_ip"), Verdict: s("verdict")}
}

// rpcLines are the rpc lines logged so far, from the from-th on.
func (s *server) rpcLines(t *testing.T, from int) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range s.log.lines(t) {
		if l["msg"] == "rpc" {
			out = append(out, l)
		}
	}
	return out[from:]
}

// TestRPCLogLine: the rpc line of a verification names the caller, the
// user, the end user's IP address and the verdict; that of an admin call
// the admin and the user. The request id of a line is the audit event's.
func TestRPCLogLine(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := startServer(t, func(o *mfa.Options) { o.Now = clock })
	ctx := context.Background()
	portal, admin := sfv1.NewSecondFactorServiceClient(s.conn), sfv1.NewAdminServiceClient(s.conn)
	asPortal, asAdmin := grpc.PerRPCCredentials(bearer(testToken)), grpc.PerRPCCredentials(bearer(adminToken))

	// Enrol dr-martin in TOTP.
	ce, err := portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: "dr-martin", Proof: sfv1.Proof_PROOF_STRONG}, asPortal)
	if err != nil {
		t.Fatal(err)
	}
	b, err := portal.BeginTOTPEnrollment(ctx, &sfv1.BeginTOTPEnrollmentRequest{EnrollmentToken: ce.GetToken(), Name: "phone"}, asPortal)
	if err != nil {
		t.Fatal(err)
	}
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(b.GetSecret())
	if err != nil {
		t.Fatal(err)
	}
	code := func() string {
		p := totp.DefaultParams()
		c, err := totp.Code(key, p, p.Step(clock()))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := portal.FinishTOTPEnrollment(ctx, &sfv1.FinishTOTPEnrollmentRequest{EnrollmentToken: ce.GetToken(), FactorId: b.GetFactorId(), Code: code()}, asPortal); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(30 * time.Second)
	mu.Unlock()
	from := len(s.rpcLines(t, 0))

	client := &sfv1.ClientInfo{Ip: "192.0.2.7", UserAgent: "Mozilla/5.0 (test)"}
	right := code()
	calls := []struct {
		name string
		call func() error
		want rpcFields
	}{
		{"accepted", func() error {
			_, err := portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: "dr-martin", Code: right, Client: client}, asPortal)
			return err
		}, rpcFields{"/secondfactor.v1.SecondFactorService/VerifyTOTP", "OK", "portal", "dr-martin", "192.0.2.7", "accepted"}},
		{"replayed", func() error {
			_, err := portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: "dr-martin", Code: right, Client: client}, asPortal)
			return err
		}, rpcFields{"/secondfactor.v1.SecondFactorService/VerifyTOTP", "OK", "portal", "dr-martin", "192.0.2.7", "rejected"}},
		{"unknown user, no client", func() error {
			_, err := portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: "dr-nobody", Code: "123456"}, asPortal)
			return err
		}, rpcFields{"/secondfactor.v1.SecondFactorService/VerifyTOTP", "OK", "portal", "dr-nobody", "", "rejected"}},
		{"invalid user id, cut", func() error {
			_, err := portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: strings.Repeat("x", 300), Code: "123456", Client: client}, asPortal)
			return err
		}, rpcFields{"/secondfactor.v1.SecondFactorService/VerifyTOTP", "InvalidArgument", "portal", strings.Repeat("x", 128) + "…", "192.0.2.7", ""}},
		{"no credential", func() error {
			_, err := portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: "dr-martin", Code: "123456", Client: client})
			return err
		}, rpcFields{"/secondfactor.v1.SecondFactorService/VerifyTOTP", "Unauthenticated", "", "dr-martin", "192.0.2.7", ""}},
		{"admin", func() error {
			_, err := admin.ListFactors(ctx, &sfv1.ListFactorsRequest{UserId: "dr-martin"}, asAdmin)
			return err
		}, rpcFields{"/secondfactor.v1.AdminService/ListFactors", "OK", "ops-admin", "dr-martin", "", ""}},
	}
	for _, c := range calls {
		c.call() // the log line says how it went
	}
	lines := s.rpcLines(t, from)
	if len(lines) != len(calls) {
		t.Fatalf("%d rpc lines for %d calls: %v", len(lines), len(calls), lines)
	}
	for i, c := range calls {
		if diff := cmp.Diff(c.want, rpcFieldsOf(lines[i])); diff != "" {
			t.Errorf("%s: rpc line (-want +got):\n%s", c.name, diff)
		}
	}

	// The audit event of the replayed code carries the request id of its
	// log line.
	r, err := admin.ListAuditEvents(ctx, &sfv1.ListAuditEventsRequest{UserId: "dr-martin", Actions: []string{string(mfa.ActionVerifyTOTP)}}, asAdmin)
	if err != nil || len(r.GetEvents()) < 2 {
		t.Fatalf("verify.totp events: %v, %v", r.GetEvents(), err)
	}
	if got, want := r.GetEvents()[0].GetRequestId(), lines[1]["request_id"]; got != want {
		t.Errorf("request id of the last verify.totp event %q, of the replayed call's log line %q", got, want)
	}
}
