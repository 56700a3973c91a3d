package grpcapi_test

import (
	"context"
	"encoding/base32"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
)

// TestInvalidArguments: every malformed field is InvalidArgument, and the
// message names the field.
func TestInvalidArguments(t *testing.T) {
	e := newEnv(t, "bolt", envOptions{})
	ctx := context.Background()
	ce, err := e.portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: "u1", Proof: sfv1.Proof_PROOF_STRONG}, asPortal)
	if err != nil {
		t.Fatal(err)
	}
	tok := ce.GetToken()
	long := strings.Repeat("x", 129)
	cases := []struct {
		name  string
		field string
		call  func() error
	}{
		{"GetUser empty user", "user_id", func() error {
			_, err := e.portal.GetUser(ctx, &sfv1.GetUserRequest{}, asPortal)
			return err
		}},
		{"GetUser long user", "user_id", func() error {
			_, err := e.portal.GetUser(ctx, &sfv1.GetUserRequest{UserId: long}, asPortal)
			return err
		}},
		{"GetUser user with space", "user_id", func() error {
			_, err := e.portal.GetUser(ctx, &sfv1.GetUserRequest{UserId: "a b"}, asPortal)
			return err
		}},
		{"GetUser user with non-ASCII", "user_id", func() error {
			_, err := e.portal.GetUser(ctx, &sfv1.GetUserRequest{UserId: "médecin"}, asPortal)
			return err
		}},
		{"CreateEnrollment no proof", "proof", func() error {
			_, err := e.portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: "u2"}, asPortal)
			return err
		}},
		{"CreateEnrollment unknown proof", "proof", func() error {
			_, err := e.portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: "u2", Proof: 99}, asPortal)
			return err
		}},
		{"CreateEnrollment long display name", "display_name", func() error {
			_, err := e.portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: "u2", Proof: sfv1.Proof_PROOF_STRONG, DisplayName: long}, asPortal)
			return err
		}},
		{"CreateEnrollment control char in display name", "display_name", func() error {
			_, err := e.portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: "u2", Proof: sfv1.Proof_PROOF_STRONG, DisplayName: "Dr\nX"}, asPortal)
			return err
		}},
		{"CreateEnrollment return URL not allowed", "return_url", func() error {
			_, err := e.portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: "u2", Proof: sfv1.Proof_PROOF_STRONG, ReturnUrl: "https://evil.example/"}, asPortal)
			return err
		}},
		{"BeginTOTPEnrollment no token", "enrollment_token", func() error {
			_, err := e.portal.BeginTOTPEnrollment(ctx, &sfv1.BeginTOTPEnrollmentRequest{Name: "phone"}, asPortal)
			return err
		}},
		{"BeginTOTPEnrollment token not base64url", "enrollment_token", func() error {
			_, err := e.portal.BeginTOTPEnrollment(ctx, &sfv1.BeginTOTPEnrollmentRequest{EnrollmentToken: "a/b+c", Name: "phone"}, asPortal)
			return err
		}},
		{"BeginTOTPEnrollment long token", "enrollment_token", func() error {
			_, err := e.portal.BeginTOTPEnrollment(ctx, &sfv1.BeginTOTPEnrollmentRequest{EnrollmentToken: strings.Repeat("a", 200), Name: "phone"}, asPortal)
			return err
		}},
		{"BeginTOTPEnrollment no name", "name", func() error {
			_, err := e.portal.BeginTOTPEnrollment(ctx, &sfv1.BeginTOTPEnrollmentRequest{EnrollmentToken: tok}, asPortal)
			return err
		}},
		{"BeginTOTPEnrollment long name", "name", func() error {
			_, err := e.portal.BeginTOTPEnrollment(ctx, &sfv1.BeginTOTPEnrollmentRequest{EnrollmentToken: tok, Name: strings.Repeat("n", 65)}, asPortal)
			return err
		}},
		{"BeginTOTPEnrollment long activation code", "activation_code", func() error {
			_, err := e.portal.BeginTOTPEnrollment(ctx, &sfv1.BeginTOTPEnrollmentRequest{EnrollmentToken: tok, Name: "p", ActivationCode: strings.Repeat("A", 65)}, asPortal)
			return err
		}},
		{"FinishTOTPEnrollment bad factor id", "factor_id", func() error {
			_, err := e.portal.FinishTOTPEnrollment(ctx, &sfv1.FinishTOTPEnrollmentRequest{EnrollmentToken: tok, FactorId: "xyz", Code: "123456"}, asPortal)
			return err
		}},
		{"FinishTOTPEnrollment letters in code", "code", func() error {
			_, err := e.portal.FinishTOTPEnrollment(ctx, &sfv1.FinishTOTPEnrollmentRequest{EnrollmentToken: tok, FactorId: "0123456789abcdef", Code: "12345a"}, asPortal)
			return err
		}},
		{"VerifyTOTP empty code", "code", func() error {
			_, err := e.portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: "u1"}, asPortal)
			return err
		}},
		{"VerifyTOTP short code", "code", func() error {
			_, err := e.portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: "u1", Code: "12345"}, asPortal)
			return err
		}},
		{"VerifyTOTP long code", "code", func() error {
			_, err := e.portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: "u1", Code: "123456789"}, asPortal)
			return err
		}},
		{"VerifyTOTP non-ASCII digits", "code", func() error {
			_, err := e.portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: "u1", Code: "١٢٣٤٥٦"}, asPortal)
			return err
		}},
		{"VerifyTOTP empty user", "user_id", func() error {
			_, err := e.portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{Code: "123456"}, asPortal)
			return err
		}},
		{"VerifyTOTP bad client ip", "client.ip", func() error {
			_, err := e.portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: "u1", Code: "123456", Client: &sfv1.ClientInfo{Ip: "not-an-ip"}}, asPortal)
			return err
		}},
		{"VerifyTOTP long user agent", "client.user_agent", func() error {
			_, err := e.portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: "u1", Code: "123456", Client: &sfv1.ClientInfo{UserAgent: strings.Repeat("M", 513)}}, asPortal)
			return err
		}},
		{"IssueActivationCode no reason", "reason", func() error {
			_, err := e.admin.IssueActivationCode(ctx, &sfv1.IssueActivationCodeRequest{UserId: "u1"}, asAdmin)
			return err
		}},
		{"IssueActivationCode empty user", "user_id", func() error {
			_, err := e.admin.IssueActivationCode(ctx, &sfv1.IssueActivationCodeRequest{Reason: "x"}, asAdmin)
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), c.field+":") {
				t.Fatalf("got %v %q, want InvalidArgument naming %q", st.Code(), st.Message(), c.field)
			}
		})
	}
	// The session was not touched by the bad calls.
	e.finishTOTP(t, "u1", tok, "")
}

func TestOversizedRequest(t *testing.T) {
	e := newEnv(t, "bolt", envOptions{})
	_, err := e.portal.GetUser(context.Background(), &sfv1.GetUserRequest{UserId: strings.Repeat("u", 100<<10)}, asPortal)
	wantCode(t, "a 100 KiB request", err, codes.ResourceExhausted)
}

func TestCallerAuthentication(t *testing.T) {
	e := newEnv(t, "bolt", envOptions{})
	ctx := context.Background()
	get := &sfv1.GetUserRequest{UserId: "u1"}
	_, err := e.portal.GetUser(ctx, get)
	wantCode(t, "no token", err, codes.Unauthenticated)
	_, err = e.portal.GetUser(ctx, get, as("not-a-known-token"))
	wantCode(t, "unknown token", err, codes.Unauthenticated)
	_, err = e.portal.GetUser(ctx, get, asAdmin)
	wantCode(t, "admin token on a portal method", err, codes.PermissionDenied)
	_, err = e.admin.IssueActivationCode(ctx, &sfv1.IssueActivationCodeRequest{UserId: "u1", Reason: "r"}, asPortal)
	wantCode(t, "portal token on an admin method", err, codes.PermissionDenied)
	if _, err = e.portal.GetUser(ctx, get, asPortal); err != nil {
		t.Fatalf("portal token on a portal method: %v", err)
	}
	// Methods of later issues answer Unimplemented, to authorised callers only.
	_, err = e.portal.CreateVerification(ctx, &sfv1.CreateVerificationRequest{UserId: "u1"}, asPortal)
	wantCode(t, "CreateVerification", err, codes.Unimplemented)
	_, err = e.admin.ResetUser(ctx, &sfv1.ResetUserRequest{UserId: "u1", Reason: "r"}, asPortal)
	wantCode(t, "ResetUser as portal", err, codes.PermissionDenied)
}

// TestRedisHoldsNoPlaintextSecret enrols a user through every secret-bearing
// path and then reads every key and value in Redis.
func TestRedisHoldsNoPlaintextSecret(t *testing.T) {
	e := newEnv(t, "redis", envOptions{})
	ctx := context.Background()
	ce, err := e.portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: "dr-secret", Proof: sfv1.Proof_PROOF_PASSWORD_ONLY}, asPortal)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := e.admin.IssueActivationCode(ctx, &sfv1.IssueActivationCodeRequest{UserId: "dr-secret", Reason: "checked"}, asAdmin)
	if err != nil {
		t.Fatal(err)
	}
	u := e.finishTOTP(t, "dr-secret", ce.GetToken(), ac.GetCode())
	// A second session and code that stay unused, so they are still stored.
	tok2 := e.createEnrollment(t, "dr-other", sfv1.Proof_PROOF_STRONG)
	ac2, err := e.admin.IssueActivationCode(ctx, &sfv1.IssueActivationCodeRequest{UserId: "dr-other", Reason: "checked"}, asAdmin)
	if err != nil {
		t.Fatal(err)
	}
	b2 := e.beginTOTP(t, tok2)

	assertNotInRedis(t, e.redisAddr, map[string]string{
		"TOTP secret (base32)":         base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(u.secret),
		"TOTP secret (raw)":            string(u.secret),
		"pending TOTP secret (base32)": b2.GetSecret(),
		"enrolment token":              ce.GetToken(),
		"unused enrolment token":       tok2,
		"activation code":              ac.GetCode(),
		"unused activation code":       ac2.GetCode(),
	})
}
