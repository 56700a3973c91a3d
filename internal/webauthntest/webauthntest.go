// Package webauthntest is a software WebAuthn authenticator together with the
// browser-side client steps around it, for tests of a relying party (server).
//
// It is written from the W3C Web Authentication Level 3 specification. Its
// output is what a browser's credential.toJSON() produces for a
// navigator.credentials.create() or .get() call, so it can be posted to a
// server that parses it with go-webauthn's
// protocol.ParseCredentialCreationResponseBytes + (*webauthn.WebAuthn).CreateCredential
// or protocol.ParseCredentialRequestResponseBytes + (*webauthn.WebAuthn).ValidateLogin.
//
// What it does:
//   - keys are ECDSA P-256 (COSE alg ES256, -7), signatures ASN.1 DER;
//   - attestation is always "none" (fmt "none", attStmt {}), whatever the
//     options' attestation conveyance preference;
//   - every credential is discoverable (it keeps the user handle) and scoped to
//     the RP ID it was created for;
//   - the signature counter starts at 0 (reported at registration) and is
//     incremented before each assertion, so logins report 1, 2, ...;
//   - the only extension it answers is credProps (rk: true); others are ignored,
//     as a browser does for extensions it does not support.
//
// What it deliberately does not do, unlike a browser: it does not check that the
// RP ID is a registrable suffix of the origin, and it never refuses a ceremony
// because user verification was required but [Authenticator.UserVerified] is
// false. Both would stop a forged response before it reaches the server, and
// letting such responses through is the point of a test double. The knobs for
// negative tests are the origin parameter, the Authenticator fields,
// [Authenticator.SetSignCount] and [Tamper].
//
// The zero-value Authenticator is usable but reports UV=0; use [New].
package webauthntest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
)

// Errors returned by Create and Get. Each corresponds to the DOMException a
// browser would reject the navigator.credentials promise with.
var (
	// ErrExcluded: the authenticator holds a credential listed in the options'
	// excludeCredentials for the same RP ID (InvalidStateError).
	ErrExcluded = errors.New("webauthntest: authenticator already holds an excluded credential (InvalidStateError)")
	// ErrNoCredential: no held credential matches the RP ID and
	// allowCredentials, or an unknown credential ID was given (NotAllowedError).
	ErrNoCredential = errors.New("webauthntest: no matching credential (NotAllowedError)")
	// ErrNotSupported: pubKeyCredParams is non-empty and lacks ES256 (-7)
	// (NotSupportedError).
	ErrNotSupported = errors.New("webauthntest: no supported algorithm in pubKeyCredParams, need ES256 (-7) (NotSupportedError)")
)

// COSE and authenticator data constants (WebAuthn L3 §6.1, RFC 9053).
const (
	coseAlgES256 = -7

	flagUP = 0x01 // user present
	flagUV = 0x04 // user verified
	flagBE = 0x08 // backup eligible
	flagBS = 0x10 // backup state
	flagAT = 0x40 // attested credential data included

	credentialIDLen = 32
)

// Authenticator is a software authenticator holding any number of credentials.
// Its methods are safe for concurrent use; its exported fields are read during
// each ceremony, so change them only while no Create or Get is running.
type Authenticator struct {
	// AAGUID is reported in the attested credential data at registration.
	AAGUID [16]byte
	// UserVerified sets the UV flag in authenticator data. Clear it to
	// imitate an authenticator that cannot verify the user.
	UserVerified bool
	// BackupEligible and BackupState set the BE and BS flags. go-webauthn
	// v0.18.2 rejects BS without BE, and rejects a login whose BE differs
	// from the one stored at registration.
	BackupEligible, BackupState bool
	// Transports is the response's transports list; nil means ["internal"].
	Transports []string
	// Attachment is the authenticatorAttachment member; "" means "platform".
	// Use "cross-platform" for a roaming authenticator.
	Attachment string

	mu    sync.Mutex
	creds []*credential
}

// credential is one public key credential source (WebAuthn L3 §6.2).
type credential struct {
	id         []byte
	key        *ecdsa.PrivateKey
	rpID       string
	userHandle []byte
	signCount  uint32
}

// Tamper alters one ceremony so that a correct server must reject the result
// (or, for CredentialID, picks the credential). The zero value changes nothing.
type Tamper struct {
	// RPID, if non-empty, is hashed into authenticatorData's rpIdHash instead
	// of the RP ID of the options. Credential storage and lookup still use the
	// options' RP ID.
	RPID string
	// ClientDataType, if non-empty, replaces "webauthn.create" or
	// "webauthn.get" in clientDataJSON.
	ClientDataType string
	// DropUserPresence clears the UP flag. (To clear UV, set
	// Authenticator.UserVerified to false.)
	DropUserPresence bool
	// BogusSignature (Get only) makes the signature a well-formed ES256
	// signature by the right key over different data, so it fails
	// verification.
	BogusSignature bool
	// CredentialID, if set, selects a held credential: Get asserts with it,
	// ignoring allowCredentials (it must belong to the options' RP ID);
	// Create registers it again, same ID and key, for the new options.
	CredentialID []byte
}

// New returns an empty authenticator that reports UV=1, BE=0, BS=0, an all-zero
// AAGUID, transports ["internal"] and attachment "platform".
func New() *Authenticator {
	return &Authenticator{UserVerified: true}
}

// Create answers navigator.credentials.create({publicKey: options}) and
// returns the JSON of credential.toJSON(): id, rawId, type "public-key",
// response {clientDataJSON, authenticatorData, transports, publicKey,
// publicKeyAlgorithm, attestationObject}, authenticatorAttachment and
// clientExtensionResults, binary values base64url without padding.
//
// optionsJSON is a PublicKeyCredentialCreationOptions JSON, either bare or
// wrapped as {"publicKey": {...}} (which is how go-webauthn marshals
// protocol.CredentialCreation). origin is the page origin written into
// clientDataJSON, e.g. "https://portal.example". If rp.id is absent the RP ID
// is the origin's host, as in a browser.
//
// Errors: ErrExcluded, ErrNotSupported, or a parse error for malformed options.
func (a *Authenticator) Create(optionsJSON []byte, origin string) ([]byte, error) {
	return a.CreateWith(optionsJSON, origin, Tamper{})
}

// Get answers navigator.credentials.get({publicKey: options}) and returns the
// JSON of credential.toJSON(): id, rawId, type "public-key", response
// {clientDataJSON, authenticatorData, signature, userHandle},
// authenticatorAttachment and clientExtensionResults {}.
//
// optionsJSON is a PublicKeyCredentialRequestOptions JSON, bare or wrapped as
// {"publicKey": {...}} (go-webauthn's protocol.CredentialAssertion). The
// credential used is the first one in allowCredentials that the authenticator
// holds for the RP ID or, if allowCredentials is empty (a discoverable login),
// the oldest credential it holds for the RP ID. Its signature counter is
// incremented, and authenticatorData || SHA-256(clientDataJSON) is signed with
// ECDSA-SHA256. The userHandle stored at registration is returned.
//
// Errors: ErrNoCredential, or a parse error for malformed options.
func (a *Authenticator) Get(optionsJSON []byte, origin string) ([]byte, error) {
	return a.GetWith(optionsJSON, origin, Tamper{})
}

// creation is what CreateWith reads of the creation options.
type creation struct {
	rpID       string
	challenge  string
	userHandle []byte
	exclude    []descriptor
	credProps  bool
}

// parseCreation reads and checks creation options as a browser would.
func parseCreation(optionsJSON []byte, origin string) (creation, error) {
	var opts struct {
		RP struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
		Challenge        string `json:"challenge"`
		PubKeyCredParams []struct {
			Type string `json:"type"`
			Alg  int64  `json:"alg"`
		} `json:"pubKeyCredParams"`
		ExcludeCredentials []descriptor `json:"excludeCredentials"`
		Extensions         struct {
			CredProps bool `json:"credProps"`
		} `json:"extensions"`
	}
	if err := parseOptions(optionsJSON, &opts); err != nil {
		return creation{}, err
	}
	challenge, err := canonicalChallenge(opts.Challenge)
	if err != nil {
		return creation{}, err
	}
	rpID, err := rpIDOrOriginHost(opts.RP.ID, origin)
	if err != nil {
		return creation{}, err
	}
	userHandle, err := decodeB64(opts.User.ID)
	if err != nil || len(userHandle) == 0 || len(userHandle) > 64 {
		return creation{}, fmt.Errorf("webauthntest: user.id must be base64url of 1 to 64 bytes (TypeError)")
	}
	// An empty list means the client's default (ES256 and RS256).
	supported := len(opts.PubKeyCredParams) == 0
	for _, p := range opts.PubKeyCredParams {
		if p.Type == "public-key" && p.Alg == coseAlgES256 {
			supported = true
		}
	}
	if !supported {
		return creation{}, ErrNotSupported
	}
	return creation{rpID: rpID, challenge: challenge, userHandle: userHandle,
		exclude: opts.ExcludeCredentials, credProps: opts.Extensions.CredProps}, nil
}

// newCredential makes the credential of a registration: a new key pair or,
// with t.CredentialID, an existing credential registered again (ID and key),
// as a misbehaving or malicious authenticator could. a.mu is held.
func (a *Authenticator) newCredential(cr creation, t Tamper) (*credential, error) {
	if t.CredentialID != nil {
		for _, have := range a.creds {
			if bytes.Equal(have.id, t.CredentialID) {
				return have, nil
			}
		}
		return nil, ErrNoCredential
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	c := &credential{id: make([]byte, credentialIDLen), key: key, rpID: cr.rpID, userHandle: cr.userHandle}
	if _, err := rand.Read(c.id); err != nil {
		return nil, err
	}
	return c, nil
}

// coseKey encodes an ECDSA P-256 public key as a COSE_Key (RFC 9052 §7,
// RFC 9053 §7.1.1), keys in canonical order.
func coseKey(key *ecdsa.PrivateKey) ([]byte, error) {
	point, err := key.PublicKey.Bytes() // 0x04 || x (32 bytes) || y (32 bytes)
	if err != nil {
		return nil, err
	}
	cose := cborMapHeader(nil, 5)
	cose = cborInt(cborInt(cose, 1), 2)                   // kty: EC2
	cose = cborInt(cborInt(cose, 3), coseAlgES256)        // alg: ES256
	cose = cborInt(cborInt(cose, -1), 1)                  // crv: P-256
	cose = cborByteString(cborInt(cose, -2), point[1:33]) // x
	cose = cborByteString(cborInt(cose, -3), point[33:])  // y
	return cose, nil
}

// CreateWith is Create with the alterations in t.
func (a *Authenticator) CreateWith(optionsJSON []byte, origin string, t Tamper) ([]byte, error) {
	cr, err := parseCreation(optionsJSON, origin)
	if err != nil {
		return nil, err
	}

	a.mu.Lock()
	defer a.mu.Unlock()

	for _, d := range cr.exclude {
		if c := a.find(d, cr.rpID); c != nil {
			return nil, ErrExcluded
		}
	}
	c, err := a.newCredential(cr, t)
	if err != nil {
		return nil, err
	}
	cose, err := coseKey(c.key)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&c.key.PublicKey)
	if err != nil {
		return nil, err
	}

	// Authenticator data (§6.1) with attested credential data (§6.5.2).
	authData := a.authData(cr.rpID, t, flagAT, c.signCount)
	authData = append(authData, a.AAGUID[:]...)
	authData = binary.BigEndian.AppendUint16(authData, uint16(len(c.id)))
	authData = append(authData, c.id...)
	authData = append(authData, cose...)

	// Attestation object (§6.5.4) in "none" format (§8.7).
	attObj := cborMapHeader(nil, 3)
	attObj = cborTextString(cborTextString(attObj, "fmt"), "none")
	attObj = cborMapHeader(cborTextString(attObj, "attStmt"), 0)
	attObj = cborByteString(cborTextString(attObj, "authData"), authData)

	clientData, err := clientDataJSON(orDefault(t.ClientDataType, "webauthn.create"), cr.challenge, origin)
	if err != nil {
		return nil, err
	}

	extensions := map[string]any{}
	if cr.credProps {
		extensions["credProps"] = map[string]bool{"rk": true}
	}
	transports := a.Transports
	if transports == nil {
		transports = []string{"internal"}
	}
	out, err := json.Marshal(credentialJSON[attestationResponseJSON]{
		ID:    b64(c.id),
		RawID: b64(c.id),
		Response: attestationResponseJSON{
			ClientDataJSON:     b64(clientData),
			AuthenticatorData:  b64(authData),
			Transports:         transports,
			PublicKey:          b64(spki),
			PublicKeyAlgorithm: coseAlgES256,
			AttestationObject:  b64(attObj),
		},
		AuthenticatorAttachment: orDefault(a.Attachment, "platform"),
		ClientExtensionResults:  extensions,
		Type:                    "public-key",
	})
	if err != nil {
		return nil, err
	}
	if t.CredentialID == nil {
		a.creds = append(a.creds, c)
	}
	return out, nil
}

// GetWith is Get with the alterations in t.
func (a *Authenticator) GetWith(optionsJSON []byte, origin string, t Tamper) ([]byte, error) {
	var opts struct {
		Challenge        string       `json:"challenge"`
		RPID             string       `json:"rpId"`
		AllowCredentials []descriptor `json:"allowCredentials"`
	}
	if err := parseOptions(optionsJSON, &opts); err != nil {
		return nil, err
	}
	challenge, err := canonicalChallenge(opts.Challenge)
	if err != nil {
		return nil, err
	}
	rpID, err := rpIDOrOriginHost(opts.RPID, origin)
	if err != nil {
		return nil, err
	}

	a.mu.Lock()
	defer a.mu.Unlock()

	var c *credential
	switch {
	case t.CredentialID != nil:
		c = a.find(descriptor{Type: "public-key", ID: b64(t.CredentialID)}, rpID)
	case len(opts.AllowCredentials) > 0:
		for _, d := range opts.AllowCredentials {
			if c = a.find(d, rpID); c != nil {
				break
			}
		}
	default:
		for _, h := range a.creds {
			if h.rpID == rpID {
				c = h
				break
			}
		}
	}
	if c == nil {
		return nil, ErrNoCredential
	}

	clientData, err := clientDataJSON(orDefault(t.ClientDataType, "webauthn.get"), challenge, origin)
	if err != nil {
		return nil, err
	}
	c.signCount++
	authData := a.authData(rpID, t, 0, c.signCount)

	// §6.3.3 step 11: sign authenticatorData || SHA-256(clientDataJSON).
	clientDataHash := sha256.Sum256(clientData)
	signed := append(bytes.Clone(authData), clientDataHash[:]...)
	if t.BogusSignature {
		signed[len(signed)-1] ^= 0x01
	}
	digest := sha256.Sum256(signed)
	sig, err := ecdsa.SignASN1(rand.Reader, c.key, digest[:])
	if err != nil {
		return nil, err
	}

	return json.Marshal(credentialJSON[assertionResponseJSON]{
		ID:    b64(c.id),
		RawID: b64(c.id),
		Response: assertionResponseJSON{
			ClientDataJSON:    b64(clientData),
			AuthenticatorData: b64(authData),
			Signature:         b64(sig),
			UserHandle:        b64(c.userHandle),
		},
		AuthenticatorAttachment: orDefault(a.Attachment, "platform"),
		ClientExtensionResults:  map[string]any{},
		Type:                    "public-key",
	})
}

// Credentials returns copies of the IDs of the held credentials, oldest first.
func (a *Authenticator) Credentials() [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([][]byte, len(a.creds))
	for i, c := range a.creds {
		ids[i] = bytes.Clone(c.id)
	}
	return ids
}

// SignCount returns the signature counter of the credential with the given ID:
// the value its last assertion reported (0 before any). ok is false if the
// credential is unknown.
func (a *Authenticator) SignCount(credID []byte) (n uint32, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.creds {
		if bytes.Equal(c.id, credID) {
			return c.signCount, true
		}
	}
	return 0, false
}

// SetSignCount sets the signature counter of the credential with the given ID,
// as if it had been used n times: its next assertion reports n+1. It returns
// ErrNoCredential if the credential is unknown.
//
// Use it to imitate a cloned authenticator: after logins reporting 1 and 2,
// SetSignCount(id, 0) makes the next login report 1. go-webauthn v0.18.2 does
// not fail such a login: (*webauthn.WebAuthn).ValidateLogin returns a nil error
// and a credential whose Authenticator.CloneWarning is true and whose
// Authenticator.SignCount is left at the stored value (it is not lowered).
// The warning is raised whenever the reported count is <= the stored one,
// unless both are 0. Rejecting the login is up to the relying party.
func (a *Authenticator) SetSignCount(credID []byte, n uint32) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.creds {
		if bytes.Equal(c.id, credID) {
			c.signCount = n
			return nil
		}
	}
	return ErrNoCredential
}

// authData returns the 37 leading bytes of authenticator data: rpIdHash,
// flags (UP, UV, BE, BS from a, plus extra) and the big-endian counter.
func (a *Authenticator) authData(rpID string, t Tamper, extra byte, count uint32) []byte {
	rpIDHash := sha256.Sum256([]byte(orDefault(t.RPID, rpID)))
	flags := extra | flagUP
	if t.DropUserPresence {
		flags &^= flagUP
	}
	if a.UserVerified {
		flags |= flagUV
	}
	if a.BackupEligible {
		flags |= flagBE
	}
	if a.BackupState {
		flags |= flagBS
	}
	out := append(rpIDHash[:], flags)
	return binary.BigEndian.AppendUint32(out, count)
}

// find returns the held credential that d names, if it is scoped to rpID.
// Must be called with a.mu held.
func (a *Authenticator) find(d descriptor, rpID string) *credential {
	if d.Type != "public-key" {
		return nil
	}
	id, err := decodeB64(d.ID)
	if err != nil {
		return nil
	}
	for _, c := range a.creds {
		if c.rpID == rpID && bytes.Equal(c.id, id) {
			return c
		}
	}
	return nil
}

// descriptor is a PublicKeyCredentialDescriptorJSON.
type descriptor struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// credentialJSON is a RegistrationResponseJSON or AuthenticationResponseJSON
// (§5.1.8), members in the order a browser's toJSON() emits them.
type credentialJSON[R any] struct {
	ID                      string         `json:"id"`
	RawID                   string         `json:"rawId"`
	Response                R              `json:"response"`
	AuthenticatorAttachment string         `json:"authenticatorAttachment,omitempty"`
	ClientExtensionResults  map[string]any `json:"clientExtensionResults"`
	Type                    string         `json:"type"`
}

// attestationResponseJSON is an AuthenticatorAttestationResponseJSON.
type attestationResponseJSON struct {
	ClientDataJSON     string   `json:"clientDataJSON"`
	AuthenticatorData  string   `json:"authenticatorData"`
	Transports         []string `json:"transports"`
	PublicKey          string   `json:"publicKey"`
	PublicKeyAlgorithm int64    `json:"publicKeyAlgorithm"`
	AttestationObject  string   `json:"attestationObject"`
}

// assertionResponseJSON is an AuthenticatorAssertionResponseJSON.
type assertionResponseJSON struct {
	ClientDataJSON    string `json:"clientDataJSON"`
	AuthenticatorData string `json:"authenticatorData"`
	Signature         string `json:"signature"`
	UserHandle        string `json:"userHandle,omitempty"`
}

// parseOptions decodes options JSON into v, unwrapping {"publicKey": {...}}.
func parseOptions(optionsJSON []byte, v any) error {
	var wrapper map[string]json.RawMessage
	if err := json.Unmarshal(optionsJSON, &wrapper); err != nil {
		return fmt.Errorf("webauthntest: options: %w", err)
	}
	if inner, ok := wrapper["publicKey"]; ok {
		optionsJSON = inner
	}
	if err := json.Unmarshal(optionsJSON, v); err != nil {
		return fmt.Errorf("webauthntest: options: %w", err)
	}
	return nil
}

// canonicalChallenge decodes the options' challenge and re-encodes it the way
// a browser writes it into clientDataJSON: base64url without padding. For the
// unpadded challenge go-webauthn sends, this is the string as given.
func canonicalChallenge(s string) (string, error) {
	raw, err := decodeB64(s)
	if err != nil || len(raw) == 0 {
		return "", fmt.Errorf("webauthntest: options: challenge is not non-empty base64url")
	}
	return b64(raw), nil
}

// rpIDOrOriginHost returns rpID, or the origin's host if rpID is empty.
func rpIDOrOriginHost(rpID, origin string) (string, error) {
	if rpID != "" {
		return rpID, nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("webauthntest: no RP ID in options and origin %q has no host", origin)
	}
	return u.Hostname(), nil
}

// clientDataJSON serializes CollectedClientData (§5.8.1) with members in the
// order the specification's serialization uses.
func clientDataJSON(typ, challenge, origin string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
	}{typ, challenge, origin, false})
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), err
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// decodeB64 decodes base64url, tolerating padding.
func decodeB64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
