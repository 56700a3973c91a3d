package grpcapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/config"
)

// TestMetricsShowAGuessingCampaign: /metrics counts verifications by
// method and verdict and the lock they end in.
func TestMetricsShowAGuessingCampaign(t *testing.T) {
	e := newEnv(t, "bolt", envOptions{config: func(c *config.Config) { c.HTTPAddr = "127.0.0.1:0" }})
	u := e.enrollTOTP(t, "dr-martin")
	e.clock.Advance(30e9)
	wrong := e.wrongCode(t, u)
	for range 11 {
		if _, err := e.portal.VerifyTOTP(t.Context(), &sfv1.VerifyTOTPRequest{UserId: u.userID, Code: wrong}, asPortal); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := e.portal.VerifyTOTP(t.Context(), &sfv1.VerifyTOTPRequest{UserId: "dr-other", Code: e.code(t, u)}, asPortal); err != nil || r.GetVerdict() != sfv1.Verdict_VERDICT_REJECTED {
		t.Fatalf("VerifyTOTP of an unknown user: %v %v", r, err)
	}
	resp, err := http.Get("http://" + e.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`secondfactor_audit_events_total{action="verify.totp",result="rejected"} 11`,
		`secondfactor_audit_events_total{action="verify.totp",result="locked"} 1`,
		`secondfactor_audit_events_total{action="user.locked",result=""} 1`,
		`secondfactor_audit_events_total{action="factor.added",result="totp"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "secondfactor_audit") {
				t.Log(l)
			}
		}
	}
}
