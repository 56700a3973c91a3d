package webauthntest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

const (
	rpID   = "portal.example"
	origin = "https://portal.example"
)

// user is the minimal webauthn.User the server side needs.
type user struct {
	id    []byte
	creds []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.id }
func (u *user) WebAuthnName() string                       { return "alice" }
func (u *user) WebAuthnDisplayName() string                { return "Alice" }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// store replaces the stored copy of c (matched by ID) or appends it.
func (u *user) store(c *webauthn.Credential) {
	for i := range u.creds {
		if bytes.Equal(u.creds[i].ID, c.ID) {
			u.creds[i] = *c
			return
		}
	}
	u.creds = append(u.creds, *c)
}

func newRP(t *testing.T) *webauthn.WebAuthn {
	t.Helper()
	w, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: "Portal", RPOrigins: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func newUser() *user { return &user{id: []byte("user-0001-handle")} }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// register runs a registration ceremony and returns the server's error, storing
// the credential on success.
func register(t *testing.T, w *webauthn.WebAuthn, u *user, a *Authenticator, orig string, tp Tamper, opts ...webauthn.RegistrationOption) error {
	t.Helper()
	creation, session, err := w.BeginRegistration(u, opts...)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.CreateWith(mustJSON(t, creation), orig, tp)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(resp)
	if err != nil {
		return err
	}
	cred, err := w.CreateCredential(u, *session, parsed)
	if err != nil {
		return err
	}
	u.store(cred)
	return nil
}

// login runs a login ceremony and returns the server's result, storing the
// updated credential on success.
func login(t *testing.T, w *webauthn.WebAuthn, u *user, a *Authenticator, orig string, tp Tamper, opts ...webauthn.LoginOption) (*webauthn.Credential, error) {
	t.Helper()
	assertion, session, err := w.BeginLogin(u, opts...)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.GetWith(mustJSON(t, assertion), orig, tp)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(resp)
	if err != nil {
		return nil, err
	}
	cred, err := w.ValidateLogin(u, *session, parsed)
	if err != nil {
		return nil, err
	}
	u.store(cred)
	return cred, nil
}

// wantProtocolError checks that err is a *protocol.Error of the given type
// whose Details or DevInfo contains want.
func wantProtocolError(t *testing.T, err error, typ, want string) {
	t.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("got error %v (%T), want *protocol.Error", err, err)
	}
	if pe.Type != typ || !strings.Contains(pe.Details+" | "+pe.DevInfo, want) {
		t.Fatalf("got protocol.Error{Type: %q, Details: %q, DevInfo: %q}, want type %q mentioning %q", pe.Type, pe.Details, pe.DevInfo, typ, want)
	}
}

func TestRegisterAndLogin(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	a.AAGUID = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8}
	if err := register(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatalf("CreateCredential: %v", err)
	}
	ids := a.Credentials()
	if len(ids) != 1 || len(ids[0]) != 32 {
		t.Fatalf("Credentials() = %x, want one 32-byte ID", ids)
	}
	c := u.creds[0]
	if !bytes.Equal(c.ID, ids[0]) || c.AttestationFormat != "none" || !c.Flags.UserPresent || !c.Flags.UserVerified ||
		c.Flags.BackupEligible || c.Authenticator.SignCount != 0 || !bytes.Equal(c.Authenticator.AAGUID, a.AAGUID[:]) ||
		c.Authenticator.Attachment != protocol.Platform || len(c.Transport) != 1 || c.Transport[0] != protocol.Internal {
		t.Fatalf("unexpected stored credential: %+v", c)
	}

	for want := uint32(1); want <= 2; want++ {
		got, err := login(t, w, u, a, origin, Tamper{})
		if err != nil {
			t.Fatalf("login %d: %v", want, err)
		}
		if got.Authenticator.SignCount != want || got.Authenticator.CloneWarning {
			t.Fatalf("login %d: SignCount %d, CloneWarning %v", want, got.Authenticator.SignCount, got.Authenticator.CloneWarning)
		}
	}
	if n, ok := a.SignCount(ids[0]); !ok || n != 2 {
		t.Fatalf("SignCount = %d, %v; want 2, true", n, ok)
	}
}

func TestBareOptionsAndUVRequired(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	sel := protocol.AuthenticatorSelection{UserVerification: protocol.VerificationRequired}
	creation, session, err := w.BeginRegistration(u, webauthn.WithAuthenticatorSelection(sel))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.Create(mustJSON(t, creation.Response), origin) // bare object, no "publicKey" wrapper
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(resp)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := w.CreateCredential(u, *session, parsed)
	if err != nil {
		t.Fatal(err)
	}
	u.store(cred)

	assertion, session, err := w.BeginLogin(u, webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = a.Get(mustJSON(t, assertion.Response), origin)
	if err != nil {
		t.Fatal(err)
	}
	parsedA, err := protocol.ParseCredentialRequestResponseBytes(resp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.ValidateLogin(u, *session, parsedA); err != nil {
		t.Fatal(err)
	}
}

func TestDiscoverableLogin(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	if err := register(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	assertion, session, err := w.BeginDiscoverableLogin()
	if err != nil {
		t.Fatal(err)
	}
	if len(assertion.Response.AllowedCredentials) != 0 {
		t.Fatal("discoverable options carry allowCredentials")
	}
	resp, err := a.Get(mustJSON(t, assertion), origin)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(resp)
	if err != nil {
		t.Fatal(err)
	}
	var gotHandle []byte
	handler := func(rawID, userHandle []byte) (webauthn.User, error) {
		gotHandle = userHandle
		return u, nil
	}
	cred, err := w.ValidateDiscoverableLogin(handler, *session, parsed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotHandle, u.id) || cred.Authenticator.SignCount != 1 {
		t.Fatalf("userHandle %q, SignCount %d", gotHandle, cred.Authenticator.SignCount)
	}
}

func TestWrongOrigin(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	err := register(t, w, u, a, "https://evil.example", Tamper{})
	wantProtocolError(t, err, "verification_error", "Error validating origin")

	if err := register(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	_, err = login(t, w, u, a, "https://portal.example:8443", Tamper{})
	wantProtocolError(t, err, "verification_error", "Error validating origin")
}

func TestWrongRPID(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	err := register(t, w, u, a, origin, Tamper{RPID: "evil.example"})
	wantProtocolError(t, err, "verification_error", "RP Hash mismatch")

	if err := register(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	_, err = login(t, w, u, a, origin, Tamper{RPID: "example"})
	wantProtocolError(t, err, "verification_error", "RP Hash mismatch")
}

func TestWrongClientDataType(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	err := register(t, w, u, a, origin, Tamper{ClientDataType: "webauthn.get"})
	wantProtocolError(t, err, "verification_error", "Error validating ceremony type")

	if err := register(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	_, err = login(t, w, u, a, origin, Tamper{ClientDataType: "webauthn.create"})
	wantProtocolError(t, err, "verification_error", "Error validating ceremony type")
}

func TestBogusSignature(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	if err := register(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	_, err := login(t, w, u, a, origin, Tamper{BogusSignature: true})
	wantProtocolError(t, err, "invalid_signature", "Error validating the assertion signature")

	if _, err := login(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatalf("honest login after a bogus one: %v", err)
	}
}

func TestExclusion(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	if err := register(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	var exclude []protocol.CredentialDescriptor
	for _, c := range u.creds {
		exclude = append(exclude, c.Descriptor())
	}
	creation, _, err := w.BeginRegistration(u, webauthn.WithExclusions(exclude))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(mustJSON(t, creation), origin); !errors.Is(err, ErrExcluded) {
		t.Fatalf("Create with own credential excluded: %v, want ErrExcluded", err)
	}
	if len(a.Credentials()) != 1 {
		t.Fatal("excluded Create stored a credential")
	}
	// A second authenticator may register under the same options, and the
	// first may register for another RP ID.
	if _, err := New().Create(mustJSON(t, creation), origin); err != nil {
		t.Fatalf("other authenticator: %v", err)
	}
	creation.Response.RelyingParty.ID = "other.example"
	if _, err := a.Create(mustJSON(t, creation), "https://other.example"); err != nil {
		t.Fatalf("other RP ID: %v", err)
	}
}

func TestCloneWarning(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	if err := register(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := login(t, w, u, a, origin, Tamper{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.SetSignCount(a.Credentials()[0], 0); err != nil {
		t.Fatal(err)
	}
	cred, err := login(t, w, u, a, origin, Tamper{}) // reports 1 after 2
	if err != nil {
		t.Fatalf("go-webauthn v0.18.2 does not fail on a counter regression, got %v", err)
	}
	if !cred.Authenticator.CloneWarning || cred.Authenticator.SignCount != 2 {
		t.Fatalf("CloneWarning %v, SignCount %d; want true, 2", cred.Authenticator.CloneWarning, cred.Authenticator.SignCount)
	}
	if err := a.SetSignCount([]byte("nope"), 1); !errors.Is(err, ErrNoCredential) {
		t.Fatalf("SetSignCount unknown ID: %v", err)
	}
}

func TestUserVerificationDropped(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	a.UserVerified = false
	sel := protocol.AuthenticatorSelection{UserVerification: protocol.VerificationRequired}
	err := register(t, w, u, a, origin, Tamper{}, webauthn.WithAuthenticatorSelection(sel))
	wantProtocolError(t, err, "verification_error", "User verification required")

	// Without UV the registration passes when UV is only preferred...
	if err := register(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	if _, err := login(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	// ...but not a login that requires it.
	_, err = login(t, w, u, a, origin, Tamper{}, webauthn.WithUserVerification(protocol.VerificationRequired))
	wantProtocolError(t, err, "verification_error", "User verification required")
}

func TestUserPresenceDropped(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	err := register(t, w, u, a, origin, Tamper{DropUserPresence: true})
	wantProtocolError(t, err, "verification_error", "User presence required")

	if err := register(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	_, err = login(t, w, u, a, origin, Tamper{DropUserPresence: true})
	wantProtocolError(t, err, "verification_error", "User presence required")
}

func TestBackupFlags(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	a.BackupEligible, a.BackupState = true, true
	if err := register(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	if f := u.creds[0].Flags; !f.BackupEligible || !f.BackupState {
		t.Fatalf("flags %+v", f)
	}
	if _, err := login(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	a.BackupEligible, a.BackupState = false, false // BE must not change
	_, err := login(t, w, u, a, origin, Tamper{})
	wantProtocolError(t, err, "invalid_request", "Backup Eligible flag inconsistency")
}

func TestCredentialSelection(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	for range 2 {
		if err := register(t, w, u, a, origin, Tamper{}); err != nil {
			t.Fatal(err)
		}
	}
	ids := a.Credentials()
	// Only the second credential is allowed: it is the one used.
	cred, err := login(t, w, u, a, origin, Tamper{}, webauthn.WithAllowedCredentials([]protocol.CredentialDescriptor{u.creds[1].Descriptor()}))
	if err != nil || !bytes.Equal(cred.ID, ids[1]) {
		t.Fatalf("login with allow list: %v, used %x want %x", err, cred.ID, ids[1])
	}
	// Forcing the first one while only the second is allowed: the server refuses.
	_, err = login(t, w, u, a, origin, Tamper{CredentialID: ids[0]}, webauthn.WithAllowedCredentials([]protocol.CredentialDescriptor{u.creds[1].Descriptor()}))
	wantProtocolError(t, err, "invalid_request", "not in the sessions allowed credential list")

	// No credential for another RP ID.
	assertion, _, err := w.BeginLogin(u, webauthn.WithLoginRelyingPartyID("other.example"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(mustJSON(t, assertion), "https://other.example"); !errors.Is(err, ErrNoCredential) {
		t.Fatalf("Get for other RP ID: %v, want ErrNoCredential", err)
	}
}

func TestUnsupportedAlgorithm(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	creation, _, err := w.BeginRegistration(u, webauthn.WithCredentialParameters([]protocol.CredentialParameter{
		{Type: protocol.PublicKeyCredentialType, Algorithm: -257}, // RS256 only
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(mustJSON(t, creation), origin); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Create: %v, want ErrNotSupported", err)
	}
}

// TestWireFormat checks the JSON and binary layout independently of go-webauthn.
func TestWireFormat(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	creation, session, err := w.BeginRegistration(u, webauthn.WithExtensions(webauthn.WithExtensionCredProps()))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.Create(mustJSON(t, creation), origin)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(resp)
	if err != nil {
		t.Fatal(err)
	}
	if cred, err := w.CreateCredential(u, *session, parsed); err != nil || cred.Extensions.RK == nil || !*cred.Extensions.RK {
		t.Fatalf("CreateCredential with credProps: %v", err)
	}
	if bytes.Contains(resp, []byte("=")) {
		t.Fatalf("padding in %s", resp)
	}
	var reg struct {
		ID, RawID, Type, AuthenticatorAttachment string
		Response                                 map[string]json.RawMessage
		ClientExtensionResults                   map[string]json.RawMessage
	}
	if err := json.Unmarshal(resp, &reg); err != nil {
		t.Fatal(err)
	}
	if reg.ID != reg.RawID || reg.Type != "public-key" || reg.AuthenticatorAttachment != "platform" ||
		string(reg.ClientExtensionResults["credProps"]) != `{"rk":true}` {
		t.Fatalf("bad registration JSON %s", resp)
	}
	for _, k := range []string{"clientDataJSON", "authenticatorData", "transports", "publicKey", "publicKeyAlgorithm", "attestationObject"} {
		if _, ok := reg.Response[k]; !ok {
			t.Fatalf("response lacks %s: %s", k, resp)
		}
	}
	str := func(k string) []byte {
		var s string
		if err := json.Unmarshal(reg.Response[k], &s); err != nil {
			t.Fatal(err)
		}
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	wantCD := `{"type":"webauthn.create","challenge":"` + creation.Response.Challenge.String() + `","origin":"https://portal.example","crossOrigin":false}`
	if got := string(str("clientDataJSON")); got != wantCD {
		t.Fatalf("clientDataJSON\n got %s\nwant %s", got, wantCD)
	}

	ad := str("authenticatorData")
	id, _ := base64.RawURLEncoding.DecodeString(reg.ID)
	hash := sha256.Sum256([]byte(rpID))
	switch {
	case !bytes.Equal(ad[:32], hash[:]):
		t.Fatal("rpIdHash")
	case ad[32] != 0x45: // UP | UV | AT
		t.Fatalf("flags %#x", ad[32])
	case binary.BigEndian.Uint32(ad[33:37]) != 0:
		t.Fatal("counter")
	case !bytes.Equal(ad[37:53], make([]byte, 16)):
		t.Fatal("aaguid")
	case binary.BigEndian.Uint16(ad[53:55]) != 32 || !bytes.Equal(ad[55:87], id):
		t.Fatal("credential ID")
	}
	cose := ad[87:]
	wantPrefix := []byte{0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20}
	if len(cose) != 77 || !bytes.Equal(cose[:10], wantPrefix) || !bytes.Equal(cose[42:45], []byte{0x22, 0x58, 0x20}) {
		t.Fatalf("COSE key % x", cose)
	}
	att := str("attestationObject")
	wantAtt := append([]byte("\xa3\x63fmt\x64none\x67attStmt\xa0\x68authData\x58"), byte(len(ad)))
	if !bytes.Equal(att, append(wantAtt, ad...)) {
		t.Fatalf("attestationObject % x", att)
	}

	// Assertion JSON (discoverable: the server needs no stored credential).
	assertion, _, err := w.BeginDiscoverableLogin()
	if err != nil {
		t.Fatal(err)
	}
	resp, err = a.Get(mustJSON(t, assertion), origin)
	if err != nil {
		t.Fatal(err)
	}
	var asn struct {
		ID, RawID, Type        string
		Response               map[string]string
		ClientExtensionResults map[string]any
	}
	if err := json.Unmarshal(resp, &asn); err != nil {
		t.Fatal(err)
	}
	if asn.ID != reg.ID || asn.RawID != reg.ID || asn.Type != "public-key" || asn.ClientExtensionResults == nil ||
		asn.Response["userHandle"] != base64.RawURLEncoding.EncodeToString(u.id) || len(asn.Response) != 4 {
		t.Fatalf("bad assertion JSON %s", resp)
	}
	ad, _ = base64.RawURLEncoding.DecodeString(asn.Response["authenticatorData"])
	if len(ad) != 37 || ad[32] != 0x05 || binary.BigEndian.Uint32(ad[33:]) != 1 {
		t.Fatalf("assertion authenticatorData % x", ad)
	}
}

func TestConcurrentLogins(t *testing.T) {
	w, u, a := newRP(t), newUser(), New()
	if err := register(t, w, u, a, origin, Tamper{}); err != nil {
		t.Fatal(err)
	}
	assertion, _, err := w.BeginLogin(u)
	if err != nil {
		t.Fatal(err)
	}
	opts := mustJSON(t, assertion)
	const n = 8
	var wg sync.WaitGroup
	counts := make(chan uint32, n)
	for range n {
		wg.Go(func() {
			resp, err := a.Get(opts, origin)
			if err != nil {
				t.Error(err)
				return
			}
			p, err := protocol.ParseCredentialRequestResponseBytes(resp)
			if err != nil {
				t.Error(err)
				return
			}
			counts <- p.Response.AuthenticatorData.Counter
		})
	}
	wg.Wait()
	close(counts)
	seen := map[uint32]bool{}
	for c := range counts {
		seen[c] = true
	}
	if len(seen) != n {
		t.Fatalf("counters not distinct: %v", seen)
	}
}
