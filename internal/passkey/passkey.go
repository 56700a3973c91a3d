// Package passkey is the WebAuthn factor: security keys and passkeys,
// through github.com/go-webauthn/webauthn. It turns the service's records
// into the library's types and back, applies the relying party's policy
// (origins, user verification, AAGUID allow-list, synced passkeys), and
// keeps the library's error details out of what callers see.
package passkey

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// Config is the relying party's policy.
type Config struct {
	RPID          string   // e.g. portal.example; a domain, not an IP address
	RPDisplayName string   // shown by the browser; the RP ID if empty
	Origins       []string // exact origins allowed: https://…, or http://localhost[:port] for development
	// UserVerification: "preferred", "required" or "discouraged".
	UserVerification string
	// ResidentKey: "discouraged", "preferred" or "required".
	ResidentKey string
	// Attestation conveyance: "none", "indirect", "direct" or "enterprise".
	Attestation string
	// AAGUIDs, when not empty, are the only authenticator models accepted
	// at registration (hex, with or without dashes).
	AAGUIDs []string
	// RefuseSynced refuses backup-eligible credentials (passkeys synced
	// across devices); only device-bound keys are then registered.
	RefuseSynced bool
	// Timeout of a ceremony; the server enforces it.
	Timeout time.Duration
	// DecoyKey keys the credential IDs shown for users without a
	// credential: secret and the same on every replica and restart (the
	// server derives it from the sealing key), so that a decoy cannot be
	// computed from the user ID nor told from a real, stable credential ID.
	// It is not a setting: New checks it, Validate does not.
	DecoyKey []byte
}

// DefaultConfig returns the policy New takes for every empty setting: user
// verification preferred, resident keys discouraged, no attestation, and
// ceremonies of 5 minutes. It names no relying party: RPID and Origins have
// no default.
func DefaultConfig() Config {
	return Config{
		UserVerification: string(protocol.VerificationPreferred),
		ResidentKey:      string(protocol.ResidentKeyRequirementDiscouraged),
		Attestation:      string(protocol.PreferNoAttestation),
		Timeout:          5 * time.Minute,
	}
}

// Validate reports every refused setting of c at once, each an
// *mfa.SettingError ("webauthn rp id", "webauthn origins", "webauthn
// origin", "webauthn user verification", "webauthn resident key",
// "webauthn attestation", "webauthn aaguid", "webauthn timeout"), joined.
// Empty values are refused: New fills them from DefaultConfig before it
// calls Validate.
func (c Config) Validate() error {
	var errs []error
	bad := func(setting, format string, args ...any) {
		errs = append(errs, &mfa.SettingError{Setting: "webauthn " + setting, Reason: fmt.Sprintf(format, args...)})
	}
	if c.RPID == "" || strings.ContainsAny(c.RPID, ":/ ") {
		bad("rp id", "%q: want a domain such as portal.example", c.RPID)
	}
	if len(c.Origins) == 0 {
		bad("origins", "empty: want at least one, e.g. https://%s", c.RPID)
	}
	for _, o := range c.Origins {
		for _, problem := range checkOrigin(o, c.RPID) {
			bad("origin", "%q: %s", o, problem)
		}
	}
	if !oneOf(protocol.UserVerificationRequirement(c.UserVerification),
		protocol.VerificationPreferred, protocol.VerificationRequired, protocol.VerificationDiscouraged) {
		bad("user verification", "%q: want preferred, required or discouraged", c.UserVerification)
	}
	if !oneOf(protocol.ResidentKeyRequirement(c.ResidentKey),
		protocol.ResidentKeyRequirementDiscouraged, protocol.ResidentKeyRequirementPreferred, protocol.ResidentKeyRequirementRequired) {
		bad("resident key", "%q: want discouraged, preferred or required", c.ResidentKey)
	}
	if !oneOf(protocol.ConveyancePreference(c.Attestation),
		protocol.PreferNoAttestation, protocol.PreferIndirectAttestation, protocol.PreferDirectAttestation, protocol.PreferEnterpriseAttestation) {
		bad("attestation", "%q: want none, indirect, direct or enterprise", c.Attestation)
	}
	for _, a := range c.AAGUIDs {
		if _, ok := parseAAGUID(a); !ok {
			bad("aaguid", "%q: want 32 hex digits", a)
		}
	}
	if c.Timeout < 10*time.Second || c.Timeout > 30*time.Minute {
		bad("timeout", "%s: want 10s to 30m", c.Timeout)
	}
	return errors.Join(errs...)
}

// checkOrigin says what is wrong with an allowed origin for the RP ID.
func checkOrigin(o, rpID string) []string {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.ForceQuery ||
		u.Fragment != "" || u.User != nil || u.Port() == "0" || strings.HasSuffix(u.Host, ":") {
		return []string{"want scheme://host[:port] with nothing after"}
	}
	var problems []string
	if u.Scheme != "https" && (u.Scheme != "http" || u.Hostname() != "localhost") {
		problems = append(problems, "want https (http only for localhost)")
	}
	if u.Hostname() != rpID && !strings.HasSuffix(u.Hostname(), "."+rpID) {
		problems = append(problems, "its host is not "+rpID+" or a subdomain of it")
	}
	return problems
}

// parseAAGUID reads an AAGUID written in hex, with or without dashes.
func parseAAGUID(s string) ([]byte, bool) {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	return b, err == nil && len(b) == 16
}

// RP is a configured relying party.
type RP struct {
	wa           *webauthn.WebAuthn
	uv           protocol.UserVerificationRequirement
	aaguids      [][]byte
	refuseSynced bool
	timeout      time.Duration
	decoyKey     []byte
}

// New fills the empty settings of c from DefaultConfig, checks them with
// Config.Validate and the decoy key, and returns the relying party. Every
// error names the setting at fault.
func New(c Config) (*RP, error) {
	d := DefaultConfig()
	if c.RPDisplayName == "" {
		c.RPDisplayName = c.RPID
	}
	if c.UserVerification == "" {
		c.UserVerification = d.UserVerification
	}
	if c.ResidentKey == "" {
		c.ResidentKey = d.ResidentKey
	}
	if c.Attestation == "" {
		c.Attestation = d.Attestation
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	errs := []error{c.Validate()}
	if len(c.DecoyKey) < 16 {
		errs = append(errs, &mfa.SettingError{Setting: "webauthn decoy key", Reason: fmt.Sprintf("of %d bytes: want at least 16 secret bytes", len(c.DecoyKey))})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var aaguids [][]byte
	for _, a := range c.AAGUIDs {
		b, _ := parseAAGUID(a) // checked by Validate
		aaguids = append(aaguids, b)
	}
	uv := protocol.UserVerificationRequirement(c.UserVerification)
	rk := protocol.ResidentKeyRequirement(c.ResidentKey)
	requireRK := rk == protocol.ResidentKeyRequirementRequired
	wa, err := webauthn.New(&webauthn.Config{
		RPID:                  c.RPID,
		RPDisplayName:         c.RPDisplayName,
		RPOrigins:             c.Origins,
		AttestationPreference: protocol.ConveyancePreference(c.Attestation),
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        rk,
			RequireResidentKey: &requireRK,
			UserVerification:   uv,
		},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: c.Timeout, TimeoutUVD: c.Timeout},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: c.Timeout, TimeoutUVD: c.Timeout},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("webauthn: %w", err)
	}
	return &RP{wa: wa, uv: uv, aaguids: aaguids, refuseSynced: c.RefuseSynced, timeout: c.Timeout, decoyKey: c.DecoyKey}, nil
}

// oneOf reports whether a setting is one of its allowed values.
func oneOf[T ~string](v T, allowed ...T) bool {
	return slices.Contains(allowed, v)
}

// Timeout is how long a ceremony's challenge lives.
func (rp *RP) Timeout() time.Duration { return rp.timeout }

// user adapts mfa.WebAuthnUser to webauthn.User.
type user struct{ u mfa.WebAuthnUser }

// Handle is the WebAuthn user handle of a user ID: a hash, so that the
// handle an authenticator stores is not the portal's identifier, which may
// be an e-mail address or a professional number. (The name it stores and
// shows is the display name of the enrolment, or the user ID if none was
// given.)
func Handle(userID string) []byte {
	m := hmac.New(sha256.New, []byte("secondfactor webauthn user handle"))
	m.Write([]byte(userID))
	return m.Sum(nil)
}

func (a user) WebAuthnID() []byte { return Handle(a.u.ID) }
func (a user) WebAuthnName() string {
	switch {
	case a.u.Name != "":
		return a.u.Name
	case a.u.DisplayName != "":
		return a.u.DisplayName
	}
	return a.u.ID
}
func (a user) WebAuthnDisplayName() string {
	if a.u.DisplayName != "" {
		return a.u.DisplayName
	}
	return a.WebAuthnName()
}
func (a user) WebAuthnCredentials() []webauthn.Credential {
	var out []webauthn.Credential
	for _, f := range a.u.Credentials {
		if f.WebAuthn != nil {
			out = append(out, toLibrary(f.WebAuthn))
		}
	}
	return out
}

func toLibrary(w *mfa.WebAuthn) webauthn.Credential {
	flags := protocol.FlagUserPresent
	if w.UserVerified {
		flags |= protocol.FlagUserVerified
	}
	if w.BackupEligible {
		flags |= protocol.FlagBackupEligible
	}
	if w.BackupState {
		flags |= protocol.FlagBackupState
	}
	transports := make([]protocol.AuthenticatorTransport, len(w.Transports))
	for i, t := range w.Transports {
		transports[i] = protocol.AuthenticatorTransport(t)
	}
	return webauthn.Credential{
		ID:                w.CredentialID,
		PublicKey:         w.PublicKey,
		AttestationType:   w.AttestationType,
		AttestationFormat: w.AttestationFormat,
		Transport:         transports,
		Flags:             webauthn.NewCredentialFlags(flags),
		Authenticator:     webauthn.Authenticator{AAGUID: w.AAGUID, SignCount: w.SignCount},
	}
}

// failed turns a library error into an *mfa.CeremonyError.
func failed(what string, malformed bool, err error) error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return &mfa.CeremonyError{Malformed: malformed, Reason: what + ": " + pe.Details, Detail: pe.DevInfo}
	}
	return &mfa.CeremonyError{Malformed: malformed, Reason: what, Detail: err.Error()}
}

var _ mfa.RelyingParty = (*RP)(nil)

// BeginRegistration returns the creation options for the browser (the
// PublicKeyCredentialCreationOptionsJSON that
// PublicKeyCredential.parseCreationOptionsFromJSON takes) and the session to
// keep server-side. The user's credentials are excluded.
func (rp *RP) BeginRegistration(u mfa.WebAuthnUser) (options, session []byte, err error) {
	a := user{u}
	var exclude []protocol.CredentialDescriptor
	for _, c := range a.WebAuthnCredentials() {
		exclude = append(exclude, c.Descriptor())
	}
	creation, sess, err := rp.wa.BeginRegistration(a, webauthn.WithExclusions(exclude))
	if err != nil {
		return nil, nil, fmt.Errorf("webauthn begin registration: %w", err)
	}
	return marshalPair(creation.Response, sess)
}

// FinishRegistration checks the browser's credential against the session and
// the policy and returns the credential to store. An *mfa.CeremonyError says
// why a credential is refused.
func (rp *RP) FinishRegistration(u mfa.WebAuthnUser, session, credentialJSON []byte) (*mfa.WebAuthn, error) {
	var sess webauthn.SessionData
	if err := json.Unmarshal(session, &sess); err != nil {
		return nil, fmt.Errorf("webauthn session: %w", err)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(credentialJSON)
	if err != nil {
		return nil, failed("credential is malformed", true, err)
	}
	cred, err := rp.wa.CreateCredential(user{u}, sess, parsed)
	if err != nil {
		return nil, failed("credential refused", false, err)
	}
	if len(rp.aaguids) > 0 && !slices.ContainsFunc(rp.aaguids, func(a []byte) bool { return bytes.Equal(a, cred.Authenticator.AAGUID) }) {
		return nil, &mfa.CeremonyError{Reason: "credential refused: this authenticator model is not on the allow-list", Detail: "aaguid " + hex.EncodeToString(cred.Authenticator.AAGUID)}
	}
	if rp.refuseSynced && cred.Flags.BackupEligible {
		return nil, &mfa.CeremonyError{Reason: "credential refused: synced passkeys are not accepted here; use a security key or a device-bound passkey"}
	}
	transports := make([]string, len(cred.Transport))
	for i, t := range cred.Transport {
		transports[i] = string(t)
	}
	return &mfa.WebAuthn{
		CredentialID:      cred.ID,
		PublicKey:         cred.PublicKey,
		AttestationType:   cred.AttestationType,
		AttestationFormat: cred.AttestationFormat,
		AAGUID:            cred.Authenticator.AAGUID,
		Transports:        transports,
		BackupEligible:    cred.Flags.BackupEligible,
		BackupState:       cred.Flags.BackupState,
		UserVerified:      cred.Flags.UserVerified,
		SignCount:         cred.Authenticator.SignCount,
	}, nil
}

// BeginLogin returns the request options for the browser (the
// PublicKeyCredentialRequestOptionsJSON that
// PublicKeyCredential.parseRequestOptionsFromJSON takes) and the session to
// keep. A user without credentials gets options of the same shape, listing a
// credential ID derived from the user ID that no authenticator holds, so that
// the answer does not tell who is enrolled.
func (rp *RP) BeginLogin(u mfa.WebAuthnUser) (options, session []byte, err error) {
	a := user{u}
	var opts []webauthn.LoginOption
	if len(a.WebAuthnCredentials()) == 0 {
		m := hmac.New(sha256.New, rp.decoyKey)
		m.Write([]byte(u.ID))
		opts = append(opts, webauthn.WithAllowedCredentials([]protocol.CredentialDescriptor{{
			Type: protocol.PublicKeyCredentialType, CredentialID: m.Sum(nil),
			Transport: []protocol.AuthenticatorTransport{protocol.USB},
		}}))
		assertion, sess, err := rp.wa.BeginDiscoverableLogin(append(opts, webauthn.WithUserVerification(rp.uv))...)
		if err != nil {
			return nil, nil, fmt.Errorf("webauthn begin login: %w", err)
		}
		sess.UserID = a.WebAuthnID()
		return marshalPair(assertion.Response, sess)
	}
	assertion, sess, err := rp.wa.BeginLogin(a, webauthn.WithUserVerification(rp.uv))
	if err != nil {
		return nil, nil, fmt.Errorf("webauthn begin login: %w", err)
	}
	return marshalPair(assertion.Response, sess)
}

// FinishLogin verifies an assertion against the session and the user's
// credentials. An *mfa.CeremonyError says why it is refused.
func (rp *RP) FinishLogin(u mfa.WebAuthnUser, session, assertionJSON []byte) (mfa.Assertion, error) {
	var sess webauthn.SessionData
	if err := json.Unmarshal(session, &sess); err != nil {
		return mfa.Assertion{}, fmt.Errorf("webauthn session: %w", err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(assertionJSON)
	if err != nil {
		return mfa.Assertion{}, failed("assertion is malformed", true, err)
	}
	cred, err := rp.wa.ValidateLogin(user{u}, sess, parsed)
	if err != nil {
		return mfa.Assertion{}, failed("assertion refused", false, err)
	}
	flags := parsed.Response.AuthenticatorData.Flags
	return mfa.Assertion{
		CredentialID: cred.ID,
		Use: mfa.AssertionUse{
			// What the authenticator reported: on success the library's
			// updated count, on a clone warning the count it refused.
			SignCount:    parsed.Response.AuthenticatorData.Counter,
			BackupState:  flags.HasBackupState(),
			UserVerified: flags.HasUserVerified(),
		},
		CloneWarning: cred.Authenticator.CloneWarning,
	}, nil
}

func marshalPair(options any, session *webauthn.SessionData) ([]byte, []byte, error) {
	o, err := json.Marshal(options)
	if err != nil {
		return nil, nil, fmt.Errorf("webauthn options: %w", err)
	}
	s, err := json.Marshal(session)
	if err != nil {
		return nil, nil, fmt.Errorf("webauthn session: %w", err)
	}
	return o, s, nil
}
