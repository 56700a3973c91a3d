package grpcapi_test

import (
	"regexp"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/config"
	"github.com/secondfactor/secondfactor/internal/redistest"
)

// TestRedisStoppedIsUnavailable: with its Redis gone, the server answers
// UNAVAILABLE, never ACCEPTED or INTERNAL, and tells the caller nothing of
// the cause but a request id; verification and enrolment alike.
func TestRedisStoppedIsUnavailable(t *testing.T) {
	r := redistest.StartServer(t)
	e := newEnv(t, "bolt", envOptions{config: func(c *config.Config) {
		c.Store, c.RedisAddrs = "redis", []string{r.Addr}
	}})
	u := e.enrollTOTP(t, "dr-martin")
	e.clock.Advance(30e9)
	code := e.code(t, u)
	r.Stop()

	calls := map[string]func() error{
		"VerifyTOTP": func() error {
			_, err := e.portal.VerifyTOTP(t.Context(), &sfv1.VerifyTOTPRequest{UserId: u.userID, Code: code}, asPortal)
			return err
		},
		"GetUser": func() error {
			_, err := e.portal.GetUser(t.Context(), &sfv1.GetUserRequest{UserId: u.userID}, asPortal)
			return err
		},
		"CreateEnrollment": func() error {
			_, err := e.portal.CreateEnrollment(t.Context(), &sfv1.CreateEnrollmentRequest{UserId: "dr-new", Proof: sfv1.Proof_PROOF_STRONG}, asPortal)
			return err
		},
		"BeginWebAuthnLogin": func() error {
			_, err := e.portal.BeginWebAuthnLogin(t.Context(), &sfv1.BeginWebAuthnLoginRequest{UserId: u.userID}, asPortal)
			return err
		},
	}
	want := regexp.MustCompile(`^the store is unavailable: retry \(request id [0-9a-f]{16}\)$`)
	for name, call := range calls {
		st := status.Convert(call())
		if st.Code() != codes.Unavailable || !want.MatchString(st.Message()) {
			t.Errorf("%s with Redis stopped: %s %q, want Unavailable matching %s", name, st.Code(), st.Message(), want)
		}
	}
}
