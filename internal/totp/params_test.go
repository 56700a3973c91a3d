package totp_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/totp"
)

// TestParamsValidateReportsAll: every refused parameter is reported at once,
// each as a *ParamError naming it.
func TestParamsValidateReportsAll(t *testing.T) {
	err := totp.Params{Algorithm: "MD5", Digits: 7, Period: 500 * time.Millisecond}.Validate()
	if err == nil {
		t.Fatal("Validate of three bad parameters = nil")
	}
	var got []totp.ParamError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var pe *totp.ParamError
		if !errors.As(e, &pe) {
			t.Fatalf("%v (%T) is not a *ParamError", e, e)
		}
		got = append(got, *pe)
	}
	want := []totp.ParamError{
		{Param: "algorithm", Reason: `"MD5": want SHA1, SHA256 or SHA512`},
		{Param: "digits", Reason: "7: want 6 or 8"},
		{Param: "period", Reason: "500ms: want whole seconds between 1s and 5m"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Validate errors mismatch (-want +got):\n%s", diff)
	}
	if want := "totp digits 7: want 6 or 8"; (&got[1]).Error() != want {
		t.Errorf("Error() = %q, want %q", (&got[1]).Error(), want)
	}
}

// TestDefaultParams: the defaults are valid, and a caller changing its copy
// changes nobody else's.
func TestDefaultParams(t *testing.T) {
	p := totp.DefaultParams()
	if err := p.Validate(); err != nil {
		t.Fatalf("DefaultParams().Validate() = %v", err)
	}
	want := totp.Params{Algorithm: totp.SHA1, Digits: 6, Period: 30 * time.Second}
	if p != want {
		t.Errorf("DefaultParams() = %+v, want %+v", p, want)
	}
	p.Digits = 8
	if got := totp.DefaultParams(); got != want {
		t.Errorf("DefaultParams() after changing a copy = %+v, want %+v", got, want)
	}
}
