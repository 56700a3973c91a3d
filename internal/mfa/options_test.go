package mfa_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/boltstore"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/seal"
	"github.com/secondfactor/secondfactor/internal/totp"
)

func TestBackoff(t *testing.T) {
	l := mfa.Limits{BaseLockout: 30 * time.Second, MaxLockout: time.Hour}
	for _, c := range []struct {
		lockouts int
		want     time.Duration
	}{
		{0, 30 * time.Second}, {1, time.Minute}, {2, 2 * time.Minute}, {6, 32 * time.Minute},
		{7, time.Hour}, {8, time.Hour}, {1000, time.Hour},
	} {
		if got := l.Backoff(c.lockouts); got != c.want {
			t.Errorf("Backoff(%d) = %s, want %s", c.lockouts, got, c.want)
		}
	}
}

// settings returns the refused settings in err, in order, failing the test
// for an error that is not a *mfa.SettingError.
func settings(t *testing.T, err error) []mfa.SettingError {
	t.Helper()
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var got []mfa.SettingError
		for _, e := range j.Unwrap() {
			got = append(got, settings(t, e)...)
		}
		return got
	}
	var se *mfa.SettingError
	if !errors.As(err, &se) {
		t.Fatalf("%v (%T) is not a *mfa.SettingError", err, err)
	}
	return []mfa.SettingError{*se}
}

func TestDefaultOptionsAreValid(t *testing.T) {
	if err := mfa.DefaultOptions().Validate(); err != nil {
		t.Fatalf("DefaultOptions().Validate() = %v", err)
	}
	if err := mfa.DefaultLimits().Validate(); err != nil {
		t.Fatalf("DefaultLimits().Validate() = %v", err)
	}
	// Each call is a fresh value: changing one changes nobody else's.
	l := mfa.DefaultLimits()
	l.MaxFailures = 1
	if got := mfa.DefaultLimits().MaxFailures; got != 10 {
		t.Errorf("DefaultLimits().MaxFailures after changing a copy = %d, want 10", got)
	}
	if got := mfa.DefaultOptions().Limits; got != mfa.DefaultLimits() {
		t.Errorf("DefaultOptions().Limits = %+v, want DefaultLimits() %+v", got, mfa.DefaultLimits())
	}
	if got := mfa.DefaultOptions().TOTP; got != totp.DefaultParams() {
		t.Errorf("DefaultOptions().TOTP = %+v, want totp.DefaultParams() %+v", got, totp.DefaultParams())
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*mfa.Options)
		want []mfa.SettingError
	}{
		{"defaults", func(*mfa.Options) {}, nil},
		{"unknown policy", func(o *mfa.Options) { o.Policy = "lax" }, []mfa.SettingError{
			{"enrolment policy", `"lax": want activation-code, strong-only or open`},
		}},
		{"empty policy", func(o *mfa.Options) { o.Policy = "" }, []mfa.SettingError{
			{"enrolment policy", `"": want activation-code, strong-only or open`},
		}},
		{"totp parameters", func(o *mfa.Options) { o.TOTP = totp.Params{Algorithm: "MD5", Digits: 7, Period: 0} }, []mfa.SettingError{
			{"totp algorithm", `"MD5": want SHA1, SHA256 or SHA512`},
			{"totp digits", "7: want 6 or 8"},
			{"totp period", "0s: want whole seconds between 1s and 5m"},
		}},
		{"every limit", func(o *mfa.Options) {
			o.Limits = mfa.Limits{MaxFailures: 0, BaseLockout: time.Minute, MaxLockout: time.Second}
		}, []mfa.SettingError{
			{"max failures", "0: want at least 1"},
			{"max lockout", "1s: want at least the base lockout, 1m0s"},
			{"failure ttl", "0s: want more than 0"},
		}},
		{"negative base lockout", func(o *mfa.Options) { o.Limits.BaseLockout = -time.Second }, []mfa.SettingError{
			{"base lockout", "-1s: want more than 0"},
		}},
		{"max lockout equal to base", func(o *mfa.Options) { o.Limits.MaxLockout = o.Limits.BaseLockout }, nil},
		{"lifetimes", func(o *mfa.Options) {
			o.EnrollmentTTL, o.PendingTTL, o.ActivationTTL, o.FreshVerification = 0, -time.Second, 169*time.Hour, 168*time.Hour
		}, []mfa.SettingError{
			{"enrolment ttl", "0s: want more than 0 and at most 168h0m0s"},
			{"pending ttl", "-1s: want more than 0 and at most 168h0m0s"},
			{"activation ttl", "169h0m0s: want more than 0 and at most 168h0m0s"},
		}},
		{"return urls", func(o *mfa.Options) {
			o.ReturnURLs = []string{"https://ok.example/done", "/done", "javascript:alert(1)", "ftp://x.example/", "https://exa mple.org/%zz"}
		}, []mfa.SettingError{
			{"return url", `"/done": want an absolute http(s) URL`},
			{"return url", `"javascript:alert(1)": want an absolute http(s) URL`},
			{"return url", `"ftp://x.example/": want an absolute http(s) URL`},
			{"return url", `"https://exa mple.org/%zz": want an absolute http(s) URL`},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := mfa.DefaultOptions()
			c.mod(&o)
			if diff := cmp.Diff(c.want, settings(t, o.Validate())); diff != "" {
				t.Errorf("refused settings mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "sf.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	ring, err := seal.NewRing([]seal.Key{{ID: "k1", Bytes: make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		mod  func(*mfa.Options)
		want string
	}{
		{"no store", func(o *mfa.Options) { o.Store = nil }, "Store"},
		{"no ring", func(o *mfa.Options) { o.Ring = nil }, "Ring"},
		{"unknown policy", func(o *mfa.Options) { o.Policy = "lax" }, `mfa: enrolment policy "lax"`},
		{"7 digits", func(o *mfa.Options) { o.TOTP = totp.Params{Algorithm: totp.SHA1, Digits: 7, Period: 30 * time.Second} }, "mfa: totp digits 7"},
		{"max lockout below base", func(o *mfa.Options) {
			o.Limits = mfa.Limits{MaxFailures: 3, BaseLockout: time.Minute, MaxLockout: time.Second, FailureTTL: time.Hour}
		}, "mfa: max lockout 1s"},
		{"no failures allowed", func(o *mfa.Options) {
			o.Limits = mfa.Limits{MaxFailures: 0, BaseLockout: time.Second, MaxLockout: time.Minute, FailureTTL: time.Hour}
		}, "mfa: max failures 0"},
		{"negative lifetime", func(o *mfa.Options) { o.ActivationTTL = -time.Hour }, "mfa: activation ttl -1h0m0s"},
		{"relative return url", func(o *mfa.Options) { o.ReturnURLs = []string{"/done"} }, `mfa: return url "/done"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := mfa.Options{Store: store, Ring: ring}
			if _, err := mfa.New(o); err != nil {
				t.Fatalf("the base options are refused: %v", err)
			}
			c.mod(&o)
			_, err := mfa.New(o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}
