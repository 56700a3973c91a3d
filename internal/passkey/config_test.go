package passkey_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/passkey"
)

// refused returns the settings err refuses, in order; an error that is not
// an *mfa.SettingError fails the test.
func refused(t *testing.T, err error) []mfa.SettingError {
	t.Helper()
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var got []mfa.SettingError
		for _, e := range j.Unwrap() {
			got = append(got, refused(t, e)...)
		}
		return got
	}
	var se *mfa.SettingError
	if !errors.As(err, &se) {
		t.Fatalf("%v (%T) is not an *mfa.SettingError", err, err)
	}
	return []mfa.SettingError{*se}
}

func TestConfigValidate(t *testing.T) {
	valid := func(mod func(*passkey.Config)) passkey.Config {
		c := passkey.DefaultConfig()
		c.RPID, c.Origins = testRPID, []string{testOrigin}
		mod(&c)
		return c
	}
	for _, c := range []struct {
		name string
		c    passkey.Config
		want []mfa.SettingError
	}{
		{"defaults with a relying party", valid(func(*passkey.Config) {}), nil},
		{"no decoy key: not a setting", valid(func(c *passkey.Config) { c.DecoyKey = nil }), nil},
		{"empty enums are refused", valid(func(c *passkey.Config) { c.UserVerification, c.ResidentKey, c.Attestation = "", "", "" }), []mfa.SettingError{
			{Setting: "webauthn user verification", Reason: `"": want preferred, required or discouraged`},
			{Setting: "webauthn resident key", Reason: `"": want discouraged, preferred or required`},
			{Setting: "webauthn attestation", Reason: `"": want none, indirect, direct or enterprise`},
		}},
		{"every setting at once", passkey.Config{
			RPID: "portal.example:8443", Origins: []string{"http://portal.example"}, UserVerification: "x", ResidentKey: "y",
			Attestation: "z", AAGUIDs: []string{"00112233445566778899aabbccddeeff", "nope"}, Timeout: time.Second,
		}, []mfa.SettingError{
			{Setting: "webauthn rp id", Reason: `"portal.example:8443": want a domain such as portal.example`},
			{Setting: "webauthn origin", Reason: `"http://portal.example": want https (http only for localhost)`},
			{Setting: "webauthn origin", Reason: `"http://portal.example": its host is not portal.example:8443 or a subdomain of it`},
			{Setting: "webauthn user verification", Reason: `"x": want preferred, required or discouraged`},
			{Setting: "webauthn resident key", Reason: `"y": want discouraged, preferred or required`},
			{Setting: "webauthn attestation", Reason: `"z": want none, indirect, direct or enterprise`},
			{Setting: "webauthn aaguid", Reason: `"nope": want 32 hex digits`},
			{Setting: "webauthn timeout", Reason: "1s: want 10s to 30m"},
		}},
		{"no origin", valid(func(c *passkey.Config) { c.Origins = nil }), []mfa.SettingError{
			{Setting: "webauthn origins", Reason: "empty: want at least one, e.g. https://portal.example"},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, refused(t, c.c.Validate())); diff != "" {
				t.Errorf("refused settings mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNewTakesDefaults: New fills empty settings from DefaultConfig, and
// checks the decoy key beside the settings.
func TestNewTakesDefaults(t *testing.T) {
	rp, err := passkey.New(withKey(passkey.Config{RPID: testRPID, Origins: []string{testOrigin}}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rp.Timeout(), passkey.DefaultConfig().Timeout; got != want {
		t.Errorf("Timeout() = %s, want the default %s", got, want)
	}
	_, err = passkey.New(passkey.Config{RPID: testRPID, Origins: []string{testOrigin}, Timeout: time.Hour, DecoyKey: make([]byte, 8)})
	want := []mfa.SettingError{
		{Setting: "webauthn timeout", Reason: "1h0m0s: want 10s to 30m"},
		{Setting: "webauthn decoy key", Reason: "of 8 bytes: want at least 16 secret bytes"},
	}
	if diff := cmp.Diff(want, refused(t, err)); diff != "" {
		t.Errorf("New errors mismatch (-want +got):\n%s", diff)
	}
}
