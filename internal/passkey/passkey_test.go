package passkey_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/passkey"
	"github.com/secondfactor/secondfactor/internal/webauthntest"
)

const (
	testRPID   = "portal.example"
	testOrigin = "https://portal.example"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unb64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		t.Fatalf("base64url %q: %v", s, err)
	}
	return b
}

func newRP(t testing.TB, mod func(*passkey.Config)) *passkey.RP {
	t.Helper()
	c := passkey.Config{RPID: testRPID, Origins: []string{testOrigin}}
	if mod != nil {
		mod(&c)
	}
	rp, err := passkey.New(withKey(c))
	if err != nil {
		t.Fatalf("New(%+v): %v", c, err)
	}
	return rp
}

// descriptorJSON is a PublicKeyCredentialDescriptorJSON.
type descriptorJSON struct {
	Type       string   `json:"type"`
	ID         string   `json:"id"`
	Transports []string `json:"transports"`
}

// creationOptions is the part of PublicKeyCredentialCreationOptionsJSON the
// tests look at.
type creationOptions struct {
	RP struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"rp"`
	User struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		DisplayName string `json:"displayName"`
	} `json:"user"`
	Challenge              string           `json:"challenge"`
	Timeout                int64            `json:"timeout"`
	ExcludeCredentials     []descriptorJSON `json:"excludeCredentials"`
	Attestation            string           `json:"attestation"`
	AuthenticatorSelection struct {
		ResidentKey        string `json:"residentKey"`
		RequireResidentKey bool   `json:"requireResidentKey"`
		UserVerification   string `json:"userVerification"`
	} `json:"authenticatorSelection"`
}

// requestOptions is the part of PublicKeyCredentialRequestOptionsJSON the
// tests look at.
type requestOptions struct {
	Challenge        string           `json:"challenge"`
	Timeout          int64            `json:"timeout"`
	RPID             string           `json:"rpId"`
	AllowCredentials []descriptorJSON `json:"allowCredentials"`
	UserVerification string           `json:"userVerification"`
}

func parseJSON[T any](t testing.TB, data []byte) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("options do not parse: %v\n%s", err, data)
	}
	return v
}

func factor(w *mfa.WebAuthn) mfa.Factor {
	return mfa.Factor{ID: "f-" + b64(w.CredentialID)[:8], Kind: mfa.KindWebAuthn, Name: "key", WebAuthn: w}
}

// register runs a registration ceremony for u with auth and adds the
// credential to u.
func register(t testing.TB, rp *passkey.RP, u *mfa.WebAuthnUser, auth *webauthntest.Authenticator) *mfa.WebAuthn {
	t.Helper()
	opts, sess, err := rp.BeginRegistration(*u)
	if err != nil {
		t.Fatalf("BeginRegistration: %v", err)
	}
	credJSON, err := auth.Create(opts, testOrigin)
	if err != nil {
		t.Fatalf("webauthntest Create: %v", err)
	}
	w, err := rp.FinishRegistration(*u, sess, credJSON)
	if err != nil {
		t.Fatalf("FinishRegistration: %v", err)
	}
	u.Credentials = append(u.Credentials, factor(w))
	return w
}

// login runs a login ceremony for u with auth.
func login(t testing.TB, rp *passkey.RP, u mfa.WebAuthnUser, auth *webauthntest.Authenticator) (mfa.Assertion, error) {
	t.Helper()
	opts, sess, err := rp.BeginLogin(u)
	if err != nil {
		t.Fatalf("BeginLogin: %v", err)
	}
	assertion, err := auth.Get(opts, testOrigin)
	if err != nil {
		t.Fatalf("webauthntest Get: %v", err)
	}
	return rp.FinishLogin(u, sess, assertion)
}

// ceremonyError asserts that err is an *mfa.CeremonyError with the given
// Malformed and returns it.
// ceremonyError checks err as checkCeremonyError does and returns it as a
// *mfa.CeremonyError.
func ceremonyError(t testing.TB, err error, malformed bool) *mfa.CeremonyError {
	t.Helper()
	checkCeremonyError(t, err, malformed)
	var ce *mfa.CeremonyError
	errors.As(err, &ce)
	return ce
}

// checkCeremonyError asserts that err is a *mfa.CeremonyError, Malformed
// or not, with a reason that does not repeat the detail.
func checkCeremonyError(t testing.TB, err error, malformed bool) {
	t.Helper()
	var ce *mfa.CeremonyError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want *mfa.CeremonyError", err, err)
	}
	if ce.Malformed != malformed {
		t.Errorf("Malformed = %v, want %v (reason %q, detail %q)", ce.Malformed, malformed, ce.Reason, ce.Detail)
	}
	if ce.Reason == "" {
		t.Errorf("empty Reason (detail %q)", ce.Detail)
	}
	if ce.Detail != "" && strings.Contains(ce.Reason, ce.Detail) {
		t.Errorf("Reason %q contains the library's Detail %q", ce.Reason, ce.Detail)
	}
}

func TestNewDefaults(t *testing.T) {
	rp := newRP(t, nil)
	if got := rp.Timeout(); got != 5*time.Minute {
		t.Errorf("Timeout() = %s, want 5m", got)
	}
	opts, _, err := rp.BeginRegistration(mfa.WebAuthnUser{ID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	c := parseJSON[creationOptions](t, opts)
	if c.RP.ID != testRPID || c.RP.Name != testRPID {
		t.Errorf("rp = %+v, want id and name %s (display name defaults to the RP ID)", c.RP, testRPID)
	}
	if got := c.AuthenticatorSelection.UserVerification; got != "preferred" {
		t.Errorf("userVerification = %q, want preferred", got)
	}
	if got := c.AuthenticatorSelection.ResidentKey; got != "discouraged" {
		t.Errorf("residentKey = %q, want discouraged", got)
	}
	if c.AuthenticatorSelection.RequireResidentKey {
		t.Error("requireResidentKey = true, want false")
	}
	if c.Attestation != "none" {
		t.Errorf("attestation = %q, want none", c.Attestation)
	}
	if c.Timeout != (5 * time.Minute).Milliseconds() {
		t.Errorf("creation timeout = %d ms, want 300000", c.Timeout)
	}

	lopts, _, err := rp.BeginLogin(mfa.WebAuthnUser{ID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	r := parseJSON[requestOptions](t, lopts)
	if r.UserVerification != "preferred" || r.RPID != testRPID || r.Timeout != 300000 {
		t.Errorf("request options %+v, want userVerification preferred, rpId %s, timeout 300000", r, testRPID)
	}
}

func TestNewValid(t *testing.T) {
	tests := []struct {
		name   string
		c      passkey.Config
		uv, rk string // expected in the creation options
		att    string
		reqRK  bool
		ms     int64
	}{
		{
			name: "explicit settings",
			c: passkey.Config{
				RPID: testRPID, RPDisplayName: "Portal", Origins: []string{testOrigin, "https://www.portal.example:8443"},
				UserVerification: "required", ResidentKey: "required", Attestation: "direct",
				AAGUIDs: []string{"00112233-4455-6677-8899-aabbccddeeff", "00112233445566778899AABBCCDDEEFF"},
				Timeout: 10 * time.Second,
			},
			uv: "required", rk: "required", att: "direct", reqRK: true, ms: 10000,
		},
		{
			name: "localhost over http",
			c:    passkey.Config{RPID: "localhost", Origins: []string{"http://localhost:8080", "http://localhost", "https://localhost"}},
			uv:   "preferred", rk: "discouraged", att: "none", ms: 300000,
		},
		{
			name: "subdomain origin, discouraged and preferred, max timeout",
			c: passkey.Config{
				RPID: testRPID, Origins: []string{"https://login.eu.portal.example"},
				UserVerification: "discouraged", ResidentKey: "preferred", Attestation: "indirect", Timeout: 30 * time.Minute,
			},
			uv: "discouraged", rk: "preferred", att: "indirect", ms: 1800000,
		},
		{
			name: "enterprise attestation",
			c:    passkey.Config{RPID: testRPID, Origins: []string{testOrigin}, Attestation: "enterprise"},
			uv:   "preferred", rk: "discouraged", att: "enterprise", ms: 300000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp, err := passkey.New(withKey(tt.c))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if tt.c.Timeout != 0 && rp.Timeout() != tt.c.Timeout {
				t.Errorf("Timeout() = %s, want %s", rp.Timeout(), tt.c.Timeout)
			}
			opts, _, err := rp.BeginRegistration(mfa.WebAuthnUser{ID: "bob"})
			if err != nil {
				t.Fatal(err)
			}
			c := parseJSON[creationOptions](t, opts)
			sel := c.AuthenticatorSelection
			if sel.UserVerification != tt.uv || sel.ResidentKey != tt.rk || sel.RequireResidentKey != tt.reqRK || c.Attestation != tt.att || c.Timeout != tt.ms {
				t.Errorf("options: uv %q rk %q requireRK %v attestation %q timeout %d; want %q %q %v %q %d",
					sel.UserVerification, sel.ResidentKey, sel.RequireResidentKey, c.Attestation, c.Timeout,
					tt.uv, tt.rk, tt.reqRK, tt.att, tt.ms)
			}
			wantName := tt.c.RPDisplayName
			if wantName == "" {
				wantName = tt.c.RPID
			}
			if c.RP.ID != tt.c.RPID || c.RP.Name != wantName {
				t.Errorf("rp = %+v, want id %q name %q", c.RP, tt.c.RPID, wantName)
			}
		})
	}
}

func TestNewInvalid(t *testing.T) {
	valid := func(mod func(*passkey.Config)) passkey.Config {
		c := passkey.Config{RPID: testRPID, Origins: []string{testOrigin}}
		mod(&c)
		return c
	}
	tests := []struct {
		name string
		c    passkey.Config
		want []string // substrings of the error
	}{
		{"empty rp id", valid(func(c *passkey.Config) { c.RPID = ""; c.Origins = []string{"https://x.example"} }), []string{"rp id"}},
		{"rp id with scheme", valid(func(c *passkey.Config) { c.RPID = "https://portal.example" }), []string{"rp id", `"https://portal.example"`}},
		{"rp id with port", valid(func(c *passkey.Config) { c.RPID = "portal.example:8443" }), []string{"rp id", `"portal.example:8443"`}},
		{"rp id with path", valid(func(c *passkey.Config) { c.RPID = "portal.example/login" }), []string{"rp id"}},
		{"no origins", valid(func(c *passkey.Config) { c.Origins = nil }), []string{"origins", "at least one"}},
		{"http origin not localhost", valid(func(c *passkey.Config) { c.Origins = []string{"http://portal.example"} }), []string{"origin", `"http://portal.example"`, "https"}},
		{"origin with a fragment", valid(func(c *passkey.Config) { c.Origins = []string{"https://portal.example#frag"} }), []string{"origin", "nothing after"}},
		{"origin with user info", valid(func(c *passkey.Config) { c.Origins = []string{"https://user:pw@portal.example"} }), []string{"origin", "nothing after"}},
		{"origin with an empty query", valid(func(c *passkey.Config) { c.Origins = []string{"https://portal.example?"} }), []string{"origin", "nothing after"}},
		{"origin with port 0", valid(func(c *passkey.Config) { c.Origins = []string{"https://portal.example:0"} }), []string{"origin", "nothing after"}},
		{"other scheme", valid(func(c *passkey.Config) { c.Origins = []string{"ftp://portal.example"} }), []string{"origin", `"ftp://portal.example"`}},
		{"origin with path", valid(func(c *passkey.Config) { c.Origins = []string{"https://portal.example/login"} }), []string{"origin", `"https://portal.example/login"`}},
		{"origin with trailing slash", valid(func(c *passkey.Config) { c.Origins = []string{"https://portal.example/"} }), []string{"origin", `"https://portal.example/"`}},
		{"origin with query", valid(func(c *passkey.Config) { c.Origins = []string{"https://portal.example?a=b"} }), []string{"origin", `"https://portal.example?a=b"`}},
		{"origin without scheme", valid(func(c *passkey.Config) { c.Origins = []string{"portal.example"} }), []string{"origin", `"portal.example"`}},
		{"origin of another site", valid(func(c *passkey.Config) { c.Origins = []string{testOrigin, "https://evil.example"} }), []string{"origin", `"https://evil.example"`, "subdomain"}},
		{"origin suffix but not subdomain", valid(func(c *passkey.Config) { c.Origins = []string{"https://notportal.example"} }), []string{"origin", `"https://notportal.example"`}},
		{"origin is parent of rp id", valid(func(c *passkey.Config) { c.Origins = []string{"https://example"} }), []string{"origin", `"https://example"`}},
		{"localhost origin, other rp id", valid(func(c *passkey.Config) { c.Origins = []string{"http://localhost:8080"} }), []string{"origin", `"http://localhost:8080"`}},
		{"bad user verification", valid(func(c *passkey.Config) { c.UserVerification = "always" }), []string{"user verification", `"always"`}},
		{"bad resident key", valid(func(c *passkey.Config) { c.ResidentKey = "yes" }), []string{"resident key", `"yes"`}},
		{"bad attestation", valid(func(c *passkey.Config) { c.Attestation = "full" }), []string{"attestation", `"full"`}},
		{"aaguid not hex", valid(func(c *passkey.Config) { c.AAGUIDs = []string{"zz112233445566778899aabbccddeeff"} }), []string{"aaguid", "zz112233"}},
		{"aaguid too short", valid(func(c *passkey.Config) { c.AAGUIDs = []string{"00112233-4455-6677-8899-aabbccddee"} }), []string{"aaguid", "aabbccddee"}},
		{"aaguid too long", valid(func(c *passkey.Config) { c.AAGUIDs = []string{"00112233445566778899aabbccddeeff00"} }), []string{"aaguid"}},
		{"aaguid empty", valid(func(c *passkey.Config) { c.AAGUIDs = []string{""} }), []string{"aaguid"}},
		{"one bad aaguid among good", valid(func(c *passkey.Config) { c.AAGUIDs = []string{"00112233445566778899aabbccddeeff", "xyz"} }), []string{"aaguid", `"xyz"`}},
		{"timeout too short", valid(func(c *passkey.Config) { c.Timeout = 9 * time.Second }), []string{"timeout", "9s"}},
		{"timeout too long", valid(func(c *passkey.Config) { c.Timeout = 31 * time.Minute }), []string{"timeout", "31m"}},
		{"timeout negative", valid(func(c *passkey.Config) { c.Timeout = -time.Minute }), []string{"timeout"}},
		{"several at once", passkey.Config{
			RPID: "", Origins: nil, UserVerification: "x", ResidentKey: "y", Attestation: "z",
			AAGUIDs: []string{"nope"}, Timeout: time.Second,
		}, []string{"rp id", "origins", "user verification", "resident key", "attestation", "aaguid", "timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp, err := passkey.New(withKey(tt.c))
			if err == nil {
				t.Fatalf("New(%+v) = %v, nil; want an error", tt.c, rp)
			}
			if rp != nil {
				t.Errorf("New returned a non-nil RP with error %v", err)
			}
			msg := strings.ToLower(err.Error())
			for _, w := range tt.want {
				if !strings.Contains(msg, strings.ToLower(w)) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestHandle(t *testing.T) {
	ids := []string{"alice@example.org", "bob@example.org", "10003456789", "Alice@example.org", "alice@example.org "}
	seen := map[string]string{}
	for _, id := range ids {
		h := passkey.Handle(id)
		if len(h) != 32 {
			t.Errorf("Handle(%q) has %d bytes, want 32", id, len(h))
		}
		if !bytes.Equal(h, passkey.Handle(id)) {
			t.Errorf("Handle(%q) is not deterministic", id)
		}
		if bytes.Contains(h, []byte(id)) {
			t.Errorf("Handle(%q) = %x contains the user id", id, h)
		}
		if other, ok := seen[string(h)]; ok {
			t.Errorf("Handle(%q) == Handle(%q)", id, other)
		}
		seen[string(h)] = id
	}
	// A caller must not be able to change a handle through the returned slice.
	h := passkey.Handle("alice@example.org")
	h[0] ^= 0xff
	if bytes.Equal(h, passkey.Handle("alice@example.org")) {
		t.Error("Handle returns shared storage")
	}
}

func TestRoundTrip(t *testing.T) {
	rp := newRP(t, nil)
	u := mfa.WebAuthnUser{ID: "alice@example.org", DisplayName: "Alice Martin"}

	auth := webauthntest.New()
	auth.AAGUID = [16]byte{0xad, 0xce, 0x00, 0x02, 0x35, 0xbc, 0xc6, 0x0a, 0x64, 0x8b, 0x0b, 0x25, 0xf1, 0xf0, 0x55, 0x03}
	auth.Transports = []string{"usb", "nfc"}
	auth.BackupEligible, auth.BackupState = true, true
	auth.Attachment = "cross-platform"

	opts, sess, err := rp.BeginRegistration(u)
	if err != nil {
		t.Fatal(err)
	}
	c := parseJSON[creationOptions](t, opts)
	if c.RP.ID != testRPID {
		t.Errorf("rp.id = %q, want %q", c.RP.ID, testRPID)
	}
	if want := b64(passkey.Handle(u.ID)); c.User.ID != want {
		t.Errorf("user.id = %q, want base64url(Handle) %q", c.User.ID, want)
	}
	if c.User.DisplayName != "Alice Martin" {
		t.Errorf("user.displayName = %q, want Alice Martin", c.User.DisplayName)
	}
	if n := len(unb64(t, c.Challenge)); n < 16 {
		t.Errorf("challenge has %d bytes, want at least 16", n)
	}
	if len(c.ExcludeCredentials) != 0 {
		t.Errorf("excludeCredentials = %+v for a user without credentials", c.ExcludeCredentials)
	}

	credJSON, err := auth.Create(opts, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	w, err := rp.FinishRegistration(u, sess, credJSON)
	if err != nil {
		t.Fatalf("FinishRegistration: %v", err)
	}
	ids := auth.Credentials()
	if len(ids) != 1 || !bytes.Equal(w.CredentialID, ids[0]) {
		t.Fatalf("CredentialID = %x, authenticator holds %x", w.CredentialID, ids)
	}
	if !slices.Equal(w.Transports, []string{"usb", "nfc"}) {
		t.Errorf("Transports = %q, want [usb nfc]", w.Transports)
	}
	if !bytes.Equal(w.AAGUID, auth.AAGUID[:]) {
		t.Errorf("AAGUID = %x, want %x", w.AAGUID, auth.AAGUID)
	}
	if !w.UserVerified || !w.BackupEligible || !w.BackupState {
		t.Errorf("flags uv %v be %v bs %v, want all true", w.UserVerified, w.BackupEligible, w.BackupState)
	}
	if w.SignCount != 0 || len(w.PublicKey) == 0 || w.AttestationFormat != "none" {
		t.Errorf("SignCount %d, PublicKey %d bytes, AttestationFormat %q; want 0, some, none", w.SignCount, len(w.PublicKey), w.AttestationFormat)
	}
	u.Credentials = append(u.Credentials, factor(w))

	// A second authenticator, device-bound, UV=0, no AAGUID, one transport.
	auth2 := webauthntest.New()
	auth2.UserVerified = false
	auth2.Transports = []string{"internal"}
	w2 := register(t, rp, &u, auth2)
	if w2.UserVerified || w2.BackupEligible || w2.BackupState || !bytes.Equal(w2.AAGUID, make([]byte, 16)) {
		t.Errorf("second credential: uv %v be %v bs %v aaguid %x; want false false false zero", w2.UserVerified, w2.BackupEligible, w2.BackupState, w2.AAGUID)
	}

	// Registration options now exclude both credentials, and an
	// authenticator holding one of them refuses to create another.
	opts, _, err = rp.BeginRegistration(u)
	if err != nil {
		t.Fatal(err)
	}
	c = parseJSON[creationOptions](t, opts)
	want := []descriptorJSON{
		{Type: "public-key", ID: b64(w.CredentialID), Transports: []string{"usb", "nfc"}},
		{Type: "public-key", ID: b64(w2.CredentialID), Transports: []string{"internal"}},
	}
	if !reflect.DeepEqual(c.ExcludeCredentials, want) {
		t.Errorf("excludeCredentials = %+v, want %+v", c.ExcludeCredentials, want)
	}
	if _, err := auth.Create(opts, testOrigin); !errors.Is(err, webauthntest.ErrExcluded) {
		t.Errorf("Create with the excluded credential: %v, want ErrExcluded", err)
	}

	// Logins report 1 then 2.
	for i := uint32(1); i <= 2; i++ {
		lopts, lsess, err := rp.BeginLogin(u)
		if err != nil {
			t.Fatal(err)
		}
		r := parseJSON[requestOptions](t, lopts)
		if len(r.AllowCredentials) != 2 || r.AllowCredentials[0].ID != b64(w.CredentialID) || r.AllowCredentials[1].ID != b64(w2.CredentialID) {
			t.Errorf("allowCredentials = %+v, want both credentials", r.AllowCredentials)
		}
		assertion, err := auth.Get(lopts, testOrigin)
		if err != nil {
			t.Fatal(err)
		}
		a, err := rp.FinishLogin(u, lsess, assertion)
		if err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
		if !bytes.Equal(a.CredentialID, w.CredentialID) {
			t.Errorf("login %d: CredentialID %x, want %x", i, a.CredentialID, w.CredentialID)
		}
		wantUse := mfa.AssertionUse{SignCount: i, BackupState: true, UserVerified: true}
		if a.Use != wantUse || a.CloneWarning {
			t.Errorf("login %d: Use %+v CloneWarning %v, want %+v false", i, a.Use, a.CloneWarning, wantUse)
		}
		w.SignCount = a.Use.SignCount // as the store does
	}

	// The second authenticator, UV=0, logs in too (UV only preferred).
	a, err := login(t, rp, u, auth2)
	if err != nil {
		t.Fatalf("login with auth2: %v", err)
	}
	if !bytes.Equal(a.CredentialID, w2.CredentialID) || a.Use.SignCount != 1 || a.Use.UserVerified || a.CloneWarning {
		t.Errorf("login with auth2: %+v", a)
	}

	// A clone: the counter goes back.
	if err := auth.SetSignCount(w.CredentialID, 0); err != nil {
		t.Fatal(err)
	}
	a, err = login(t, rp, u, auth)
	if err != nil {
		t.Fatalf("login with lowered counter: %v", err)
	}
	if !a.CloneWarning {
		t.Errorf("login reporting 1 after 2: CloneWarning false, want true (%+v)", a)
	}
	if !bytes.Equal(a.CredentialID, w.CredentialID) {
		t.Errorf("CredentialID %x, want %x", a.CredentialID, w.CredentialID)
	}
}

func TestFinishRegistrationRefused(t *testing.T) {
	const aaguid = "adce0002-35bc-c60a-648b-0b25f1f05503"
	model := [16]byte{0xad, 0xce, 0x00, 0x02, 0x35, 0xbc, 0xc6, 0x0a, 0x64, 0x8b, 0x0b, 0x25, 0xf1, 0xf0, 0x55, 0x03}
	tests := []struct {
		name      string
		config    func(*passkey.Config)
		auth      func(*webauthntest.Authenticator)
		origin    string
		tamper    webauthntest.Tamper
		json      func([]byte) []byte // replaces the credential JSON
		ok        bool
		malformed bool
	}{
		{name: "valid", ok: true},
		{name: "wrong origin", origin: "https://evil.example"},
		{name: "subdomain origin not configured", origin: "https://login.portal.example"},
		{name: "http origin", origin: "http://portal.example"},
		{name: "wrong rp id hash", tamper: webauthntest.Tamper{RPID: "evil.example"}},
		{name: "wrong client data type", tamper: webauthntest.Tamper{ClientDataType: "webauthn.get"}},
		{name: "no user presence", tamper: webauthntest.Tamper{DropUserPresence: true}},
		{name: "uv required, not verified", config: func(c *passkey.Config) { c.UserVerification = "required" }, auth: func(a *webauthntest.Authenticator) { a.UserVerified = false }},
		{name: "uv required, verified", config: func(c *passkey.Config) { c.UserVerification = "required" }, ok: true},
		{name: "backup state without eligibility", auth: func(a *webauthntest.Authenticator) { a.BackupState = true }},
		{name: "aaguid allowed", config: func(c *passkey.Config) { c.AAGUIDs = []string{"00000000000000000000000000000001", aaguid} }, auth: func(a *webauthntest.Authenticator) { a.AAGUID = model }, ok: true},
		{name: "aaguid not allowed", config: func(c *passkey.Config) { c.AAGUIDs = []string{aaguid} }},
		{name: "synced refused", config: func(c *passkey.Config) { c.RefuseSynced = true }, auth: func(a *webauthntest.Authenticator) { a.BackupEligible = true }},
		{name: "synced refused, device-bound ok", config: func(c *passkey.Config) { c.RefuseSynced = true }, ok: true},
		{name: "synced accepted by default", auth: func(a *webauthntest.Authenticator) { a.BackupEligible, a.BackupState = true, true }, ok: true},
		{name: "not json", json: func([]byte) []byte { return []byte("not json") }, malformed: true},
		{name: "empty", json: func([]byte) []byte { return nil }, malformed: true},
		{name: "truncated", json: func(b []byte) []byte { return b[:len(b)/2] }, malformed: true},
		{name: "empty object", json: func([]byte) []byte { return []byte("{}") }, malformed: true},
		{name: "json null", json: func([]byte) []byte { return []byte("null") }, malformed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := newRP(t, tt.config)
			auth := webauthntest.New()
			if tt.auth != nil {
				tt.auth(auth)
			}
			u := mfa.WebAuthnUser{ID: "carol"}
			opts, sess, err := rp.BeginRegistration(u)
			if err != nil {
				t.Fatal(err)
			}
			origin := testOrigin
			if tt.origin != "" {
				origin = tt.origin
			}
			credJSON, err := auth.CreateWith(opts, origin, tt.tamper)
			if err != nil {
				t.Fatal(err)
			}
			if tt.json != nil {
				credJSON = tt.json(credJSON)
			}
			w, err := rp.FinishRegistration(u, sess, credJSON)
			if tt.ok {
				if err != nil {
					t.Fatalf("FinishRegistration: %v", err)
				}
				if !bytes.Equal(w.CredentialID, auth.Credentials()[0]) {
					t.Errorf("CredentialID %x, want %x", w.CredentialID, auth.Credentials()[0])
				}
				return
			}
			if err == nil {
				t.Fatalf("FinishRegistration accepted it: %+v", w)
			}
			if w != nil {
				t.Errorf("credential %+v returned with error %v", w, err)
			}
			checkCeremonyError(t, err, tt.malformed)
		})
	}
}

func TestFinishRegistrationSessionMismatch(t *testing.T) {
	rp := newRP(t, nil)
	alice, bob := mfa.WebAuthnUser{ID: "alice"}, mfa.WebAuthnUser{ID: "bob"}
	optsA, sessA, err := rp.BeginRegistration(alice)
	if err != nil {
		t.Fatal(err)
	}
	_, sessA2, err := rp.BeginRegistration(alice)
	if err != nil {
		t.Fatal(err)
	}
	credJSON, err := webauthntest.New().Create(optsA, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	// Another user's session, or the same user's other session (another
	// challenge): refused.
	if _, err := rp.FinishRegistration(bob, sessA, credJSON); err == nil {
		t.Error("alice's credential accepted for bob")
	}
	if w, err := rp.FinishRegistration(alice, sessA2, credJSON); err == nil {
		t.Errorf("credential for one challenge accepted with another session: %+v", w)
	} else {
		checkCeremonyError(t, err, false)
	}
	// A corrupt session is the server's problem, not a ceremony error.
	_, err = rp.FinishRegistration(alice, []byte("{"), credJSON)
	var ce *mfa.CeremonyError
	if err == nil || errors.As(err, &ce) {
		t.Errorf("corrupt session: %v, want a non-ceremony error", err)
	}
}

func TestFinishLoginRefused(t *testing.T) {
	tests := []struct {
		name      string
		config    func(*passkey.Config)
		auth      func(*webauthntest.Authenticator)
		origin    string
		tamper    webauthntest.Tamper
		json      func([]byte) []byte
		malformed bool
		ok        bool
	}{
		{name: "valid", ok: true},
		{name: "wrong origin", origin: "https://evil.example"},
		{name: "wrong port", origin: "https://portal.example:8443"},
		{name: "wrong rp id hash", tamper: webauthntest.Tamper{RPID: "evil.example"}},
		{name: "wrong client data type", tamper: webauthntest.Tamper{ClientDataType: "webauthn.create"}},
		{name: "no user presence", tamper: webauthntest.Tamper{DropUserPresence: true}},
		{name: "bad signature", tamper: webauthntest.Tamper{BogusSignature: true}},
		{name: "uv required, not verified", config: func(c *passkey.Config) { c.UserVerification = "required" }, auth: func(a *webauthntest.Authenticator) { a.UserVerified = false }},
		{name: "backup eligibility changed", auth: func(a *webauthntest.Authenticator) { a.BackupEligible = true }},
		{name: "not json", json: func([]byte) []byte { return []byte("{not json") }, malformed: true},
		{name: "empty", json: func([]byte) []byte { return []byte{} }, malformed: true},
		{name: "truncated", json: func(b []byte) []byte { return b[:len(b)-20] }, malformed: true},
		{name: "array", json: func([]byte) []byte { return []byte("[]") }, malformed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := newRP(t, tt.config)
			auth := webauthntest.New()
			u := mfa.WebAuthnUser{ID: "dave"}
			w := register(t, rp, &u, auth)
			if tt.auth != nil {
				tt.auth(auth)
			}
			opts, sess, err := rp.BeginLogin(u)
			if err != nil {
				t.Fatal(err)
			}
			origin := testOrigin
			if tt.origin != "" {
				origin = tt.origin
			}
			assertion, err := auth.GetWith(opts, origin, tt.tamper)
			if err != nil {
				t.Fatal(err)
			}
			if tt.json != nil {
				assertion = tt.json(assertion)
			}
			a, err := rp.FinishLogin(u, sess, assertion)
			if tt.ok {
				if err != nil || !bytes.Equal(a.CredentialID, w.CredentialID) {
					t.Fatalf("FinishLogin = %+v, %v; want credential %x", a, err, w.CredentialID)
				}
				return
			}
			if err == nil {
				t.Fatalf("FinishLogin accepted it: %+v", a)
			}
			if a.CredentialID != nil {
				t.Errorf("assertion %+v returned with error %v", a, err)
			}
			ce := ceremonyError(t, err, tt.malformed)
			if tt.origin != "" {
				if ce.Detail == "" {
					t.Errorf("wrong origin: empty Detail, want the library's debug information")
				}
				if strings.Contains(ce.Reason, origin) || strings.Contains(ce.Reason, "Expected") {
					t.Errorf("Reason %q carries debug information", ce.Reason)
				}
			}
		})
	}
}

func TestFinishLoginSessionMismatch(t *testing.T) {
	rp := newRP(t, nil)
	auth := webauthntest.New()
	alice, bob := mfa.WebAuthnUser{ID: "alice"}, mfa.WebAuthnUser{ID: "bob"}
	register(t, rp, &alice, auth)
	register(t, rp, &bob, auth) // the same authenticator holds a credential for each

	opts, sess, err := rp.BeginLogin(alice)
	if err != nil {
		t.Fatal(err)
	}
	_, sess2, err := rp.BeginLogin(alice)
	if err != nil {
		t.Fatal(err)
	}
	_, sessBob, err := rp.BeginLogin(bob)
	if err != nil {
		t.Fatal(err)
	}
	assertion, err := auth.Get(opts, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := rp.FinishLogin(alice, sess2, assertion); err == nil {
		t.Errorf("assertion accepted with another challenge's session: %+v", a)
	}
	if a, err := rp.FinishLogin(bob, sess, assertion); err == nil {
		t.Errorf("alice's assertion accepted for bob: %+v", a)
	}
	if a, err := rp.FinishLogin(bob, sessBob, assertion); err == nil {
		t.Errorf("alice's assertion accepted with bob's session: %+v", a)
	}
	// bob's credential answering alice's challenge.
	bobAssertion, err := auth.GetWith(opts, testOrigin, webauthntest.Tamper{CredentialID: bob.Credentials[0].WebAuthn.CredentialID})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := rp.FinishLogin(alice, sess, bobAssertion); err == nil {
		t.Errorf("bob's credential accepted for alice: %+v", a)
	}
	if a, err := rp.FinishLogin(alice, sess, assertion); err != nil {
		t.Errorf("the right session: %+v, %v", a, err)
	}
}

// shape reduces a JSON value to its structure: object keys, array lengths
// and value kinds, without the values.
func shape(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			out[k] = shape(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = shape(e)
		}
		return out
	default:
		return fmt.Sprintf("%T", v)
	}
}

func TestBeginLoginWithoutCredential(t *testing.T) {
	rp := newRP(t, nil)
	auth := webauthntest.New()
	auth.Transports = []string{"usb"}
	enrolled := mfa.WebAuthnUser{ID: "erin"}
	w := register(t, rp, &enrolled, auth)
	nobody := mfa.WebAuthnUser{ID: "frank"}
	other := mfa.WebAuthnUser{ID: "grace"}

	begin := func(u mfa.WebAuthnUser) ([]byte, []byte, requestOptions) {
		t.Helper()
		opts, sess, err := rp.BeginLogin(u)
		if err != nil {
			t.Fatalf("BeginLogin(%q): %v", u.ID, err)
		}
		return opts, sess, parseJSON[requestOptions](t, opts)
	}
	optsE, _, rE := begin(enrolled)
	optsN, sessN, rN := begin(nobody)
	_, _, rN2 := begin(nobody)
	_, _, rO := begin(other)

	var vE, vN any
	if err := json.Unmarshal(optsE, &vE); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(optsN, &vN); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shape(vE), shape(vN)) {
		t.Errorf("options differ in shape:\nenrolled: %s\nnobody:   %s", optsE, optsN)
	}
	if len(rE.AllowCredentials) != 1 || rE.AllowCredentials[0].ID != b64(w.CredentialID) {
		t.Fatalf("enrolled user's allowCredentials = %+v", rE.AllowCredentials)
	}
	for _, r := range []requestOptions{rN, rN2, rO} {
		if len(r.AllowCredentials) != 1 {
			t.Fatalf("allowCredentials = %+v, want one decoy", r.AllowCredentials)
		}
		d := r.AllowCredentials[0]
		if d.Type != "public-key" || len(unb64(t, d.ID)) == 0 || len(d.Transports) == 0 {
			t.Errorf("decoy descriptor %+v, want type public-key, an id and transports", d)
		}
	}
	if rN.AllowCredentials[0].ID != rN2.AllowCredentials[0].ID {
		t.Errorf("decoy for the same user changed: %s then %s", rN.AllowCredentials[0].ID, rN2.AllowCredentials[0].ID)
	}
	if rN.AllowCredentials[0].ID == rO.AllowCredentials[0].ID {
		t.Errorf("two users got the same decoy %s", rN.AllowCredentials[0].ID)
	}
	if rN.Challenge == rN2.Challenge {
		t.Error("two logins got the same challenge")
	}
	if rN.RPID != rE.RPID || rN.UserVerification != rE.UserVerification || rN.Timeout != rE.Timeout {
		t.Errorf("decoy options %+v differ from real ones %+v", rN, rE)
	}
	if d := unb64(t, rN.AllowCredentials[0].ID); bytes.Contains(d, []byte(nobody.ID)) || bytes.Equal(d, passkey.Handle(nobody.ID)) {
		t.Errorf("decoy id %x reveals the user id or handle", d)
	}

	// No authenticator answers the decoy.
	if _, err := auth.Get(optsN, testOrigin); !errors.Is(err, webauthntest.ErrNoCredential) {
		t.Errorf("Get for the decoy: %v, want ErrNoCredential", err)
	}

	// A credential created for frank whose factor is gone, answering
	// frank's challenge with the right user handle and a valid signature.
	orphanAuth := webauthntest.New()
	orphan := nobody
	orphanW := register(t, rp, &orphan, orphanAuth)
	// erin's credential forced on frank's challenge.
	erinAssertion, err := auth.GetWith(optsN, testOrigin, webauthntest.Tamper{CredentialID: w.CredentialID})
	if err != nil {
		t.Fatal(err)
	}
	orphanAssertion, err := orphanAuth.GetWith(optsN, testOrigin, webauthntest.Tamper{CredentialID: orphanW.CredentialID})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		u         mfa.WebAuthnUser
		assertion []byte
	}{
		{"other user's credential", nobody, erinAssertion},
		{"removed credential", nobody, orphanAssertion},
		{"credential enrolled after begin", orphan, orphanAssertion},
		{"garbage", nobody, []byte(`{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := rp.FinishLogin(tt.u, sessN, tt.assertion)
			if err == nil {
				t.Fatalf("FinishLogin with the decoy session accepted: %+v", a)
			}
			var ce *mfa.CeremonyError
			if !errors.As(err, &ce) {
				t.Errorf("error %v (%T), want *mfa.CeremonyError", err, err)
			}
		})
	}
}

// fuzzUser is a user for the fuzz targets.
var fuzzUser = mfa.WebAuthnUser{ID: "fuzz@example.org", DisplayName: "Fuzz"}

// mutations returns variants of a valid credential or assertion JSON for
// the seed corpus.
func mutations(t testing.TB, valid []byte) [][]byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(valid, &m); err != nil {
		t.Fatal(err)
	}
	variant := func(f func(m, resp map[string]any)) []byte {
		var c map[string]any
		if err := json.Unmarshal(valid, &c); err != nil {
			t.Fatal(err)
		}
		f(c, c["response"].(map[string]any))
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	out := [][]byte{
		valid,
		valid[:len(valid)/2],
		{},
		[]byte("{}"),
		[]byte("null"),
		[]byte(`{"id":"AA","rawId":"AA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AA","attestationObject":"oA","signature":"MAA"}}`),
		variant(func(c, _ map[string]any) { c["type"] = "password" }),
		variant(func(c, _ map[string]any) { c["rawId"] = "AAAA" }),
		variant(func(c, _ map[string]any) { delete(c, "response") }),
		variant(func(_, r map[string]any) {
			r["clientDataJSON"] = b64([]byte(`{"type":"webauthn.get","challenge":"","origin":""}`))
		}),
		variant(func(_, r map[string]any) { r["clientDataJSON"] = "!!" }),
		variant(func(_, r map[string]any) { r["authenticatorData"] = b64(make([]byte, 37)) }),
		variant(func(_, r map[string]any) { r["authenticatorData"] = b64(make([]byte, 10)) }),
	}
	for _, k := range []string{"attestationObject", "signature", "userHandle"} {
		if _, ok := m["response"].(map[string]any)[k]; ok {
			out = append(out,
				variant(func(_, r map[string]any) { delete(r, k) }),
				variant(func(_, r map[string]any) { r[k] = b64([]byte{0xa1, 0x63, 'f', 'm', 't', 0xf6}) }),
				variant(func(_, r map[string]any) { r[k] = "" }),
			)
		}
	}
	return out
}

func FuzzFinishRegistration(f *testing.F) {
	rp := newRP(f, func(c *passkey.Config) { c.Timeout = 30 * time.Minute })
	opts, sess, err := rp.BeginRegistration(fuzzUser)
	if err != nil {
		f.Fatal(err)
	}
	valid, err := webauthntest.New().Create(opts, testOrigin)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range mutations(f, valid) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, credJSON []byte) {
		w, err := rp.FinishRegistration(fuzzUser, sess, credJSON)
		if err == nil {
			if w == nil || len(w.CredentialID) == 0 || len(w.PublicKey) == 0 {
				t.Fatalf("accepted without a credential: %+v", w)
			}
			return
		}
		if w != nil {
			t.Errorf("credential %+v returned with error %v", w, err)
		}
		var ce *mfa.CeremonyError
		if !errors.As(err, &ce) {
			t.Fatalf("error %v (%T), want *mfa.CeremonyError", err, err)
		}
		if ce.Reason == "" {
			t.Fatalf("empty Reason: %+v", ce)
		}
	})
}

func FuzzFinishLogin(f *testing.F) {
	rp := newRP(f, func(c *passkey.Config) { c.Timeout = 30 * time.Minute })
	auth := webauthntest.New()
	u := fuzzUser
	w := register(f, rp, &u, auth)
	opts, sess, err := rp.BeginLogin(u)
	if err != nil {
		f.Fatal(err)
	}
	valid, err := auth.Get(opts, testOrigin)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range mutations(f, valid) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, assertionJSON []byte) {
		a, err := rp.FinishLogin(u, sess, assertionJSON)
		if err == nil {
			if !bytes.Equal(a.CredentialID, w.CredentialID) {
				t.Fatalf("accepted with credential %x, want %x", a.CredentialID, w.CredentialID)
			}
			return
		}
		var ce *mfa.CeremonyError
		if !errors.As(err, &ce) {
			t.Fatalf("error %v (%T), want *mfa.CeremonyError", err, err)
		}
		if ce.Reason == "" {
			t.Fatalf("empty Reason: %+v", ce)
		}
	})
}

var testDecoyKey = []byte("decoy key for the passkey tests, 32+ bytes")

// withKey gives c the decoy key every configuration needs, unless the test
// set one (or set it empty on purpose with a non-nil zero-length slice).
func withKey(c passkey.Config) passkey.Config {
	if c.DecoyKey == nil {
		c.DecoyKey = testDecoyKey
	}
	return c
}

func TestNewNeedsDecoyKey(t *testing.T) {
	_, err := passkey.New(passkey.Config{RPID: testRPID, Origins: []string{testOrigin}, DecoyKey: []byte{}})
	if err == nil || !strings.Contains(err.Error(), "decoy key") {
		t.Fatalf("New without a decoy key: %v, want an error naming the decoy key", err)
	}
}

// TestDecoyNeedsTheKey: the decoy credential ID of a user without a
// credential depends on the secret key, so it cannot be computed from the
// user ID and the source code.
func TestDecoyNeedsTheKey(t *testing.T) {
	decoy := func(key []byte) string {
		rp := newRP(t, func(c *passkey.Config) { c.DecoyKey = key })
		opts, _, err := rp.BeginLogin(mfa.WebAuthnUser{ID: "frank"})
		if err != nil {
			t.Fatal(err)
		}
		var o struct {
			AllowCredentials []struct {
				ID string `json:"id"`
			} `json:"allowCredentials"`
		}
		if err := json.Unmarshal(opts, &o); err != nil || len(o.AllowCredentials) != 1 {
			t.Fatalf("options %s: %v", opts, err)
		}
		return o.AllowCredentials[0].ID
	}
	a, b := decoy([]byte("first deployment's secret key..")), decoy([]byte("second deployment's secret key."))
	if a == b {
		t.Fatal("the decoy credential ID does not depend on the key")
	}
	if decoy([]byte("first deployment's secret key..")) != a {
		t.Fatal("the decoy credential ID is not stable for one key")
	}
}
