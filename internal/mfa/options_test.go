package mfa_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

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

func TestNewRefusesBadOptions(t *testing.T) {
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "sf.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
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
		{"unknown policy", func(o *mfa.Options) { o.Policy = "lax" }, `policy "lax"`},
		{"7 digits", func(o *mfa.Options) { o.TOTP = totp.Params{Algorithm: totp.SHA1, Digits: 7, Period: 30 * time.Second} }, "digits"},
		{"max lockout below base", func(o *mfa.Options) {
			o.Limits = mfa.Limits{MaxFailures: 3, BaseLockout: time.Minute, MaxLockout: time.Second, FailureTTL: time.Hour}
		}, "limits"},
		{"no failures allowed", func(o *mfa.Options) {
			o.Limits = mfa.Limits{MaxFailures: 0, BaseLockout: time.Second, MaxLockout: time.Minute, FailureTTL: time.Hour}
		}, "limits"},
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
