package mfa

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/secondfactor/secondfactor/internal/secret"
)

// RelyingParty runs WebAuthn ceremonies (package passkey implements it).
// Sessions are opaque bytes the service keeps server-side between the two
// halves of a ceremony.
type RelyingParty interface {
	// BeginRegistration returns creation options for the browser,
	// excluding the user's credentials.
	BeginRegistration(u WebAuthnUser) (options, session []byte, err error)
	// FinishRegistration checks a new credential; a *CeremonyError says why
	// one is refused.
	FinishRegistration(u WebAuthnUser, session, credentialJSON []byte) (*WebAuthn, error)
	// BeginLogin returns request options; a user without credentials gets
	// options of the same shape.
	BeginLogin(u WebAuthnUser) (options, session []byte, err error)
	// FinishLogin verifies an assertion; a *CeremonyError says why one is
	// refused.
	FinishLogin(u WebAuthnUser, session, assertionJSON []byte) (Assertion, error)
	// Timeout is the lifetime of a ceremony.
	Timeout() time.Duration
}

// WebAuthnUser is a user as the relying party sees them.
type WebAuthnUser struct {
	ID          string
	Name        string
	DisplayName string
	Credentials []Factor // WebAuthn factors only
}

// Assertion is a verified WebAuthn assertion.
type Assertion struct {
	CredentialID []byte
	Use          AssertionUse
	// CloneWarning: the sign count went backwards; refuse the login.
	CloneWarning bool
}

// CeremonyError is a WebAuthn credential or assertion that was refused.
// Reason may be shown to the caller; Detail only logged.
type CeremonyError struct {
	Malformed bool // the JSON could not be parsed at all
	Reason    string
	Detail    string
}

func (e *CeremonyError) Error() string { return e.Reason }

// MaxCredentialJSON is the largest credential or assertion accepted.
const MaxCredentialJSON = 32 << 10

func webauthnUser(u User, displayName string) WebAuthnUser {
	w := WebAuthnUser{ID: u.ID, DisplayName: displayName}
	for _, f := range u.Factors {
		if f.WebAuthn != nil {
			w.Credentials = append(w.Credentials, f)
		}
	}
	return w
}

func registrationKey(tokenHash string) string { return "reg:" + tokenHash }
func loginKey(challengeID string) string      { return "login:" + secret.Hash(challengeID) }

// BeginWebAuthnRegistration starts registering a security key or passkey in
// an enrolment session and returns the options for the browser.
func (s *Service) BeginWebAuthnRegistration(ctx context.Context, token, name, activationCode string) ([]byte, error) {
	if s.o.RP == nil {
		return nil, errNoWebAuthn
	}
	if err := checkText("name", name, MaxFactorName, true); err != nil {
		return nil, err
	}
	e, err := s.session(ctx, token, activationCode)
	if err != nil {
		return nil, err
	}
	u, err := s.o.Store.User(ctx, e.UserID)
	if err != nil {
		return nil, err
	}
	options, sess, err := s.o.RP.BeginRegistration(webauthnUser(u, e.DisplayName))
	if err != nil {
		return nil, err
	}
	now := s.o.Now()
	err = s.o.Store.PutChallenge(ctx, registrationKey(e.TokenHash), Challenge{UserID: e.UserID, Name: name, Session: sess, Epoch: e.Epoch}, now.Add(s.o.RP.Timeout()))
	if err != nil {
		return nil, err
	}
	return options, nil
}

// FinishWebAuthnRegistration stores the credential the browser created and
// completes the enrolment session. For a user's first factor it returns the
// new recovery codes, shown this once.
func (s *Service) FinishWebAuthnRegistration(ctx context.Context, token string, credentialJSON []byte) (Factor, []secret.String, error) {
	if s.o.RP == nil {
		return Factor{}, nil, errNoWebAuthn
	}
	if len(credentialJSON) == 0 || len(credentialJSON) > MaxCredentialJSON {
		return Factor{}, nil, badField("credential_json", "must be 1 to %d bytes", MaxCredentialJSON)
	}
	e, err := s.session(ctx, token, "")
	if err != nil {
		return Factor{}, nil, err
	}
	now := s.o.Now()
	ch, err := s.o.Store.TakeChallenge(ctx, registrationKey(e.TokenHash), now)
	if errors.Is(err, ErrNotFound) {
		return Factor{}, nil, failWith(ErrNotFound, ReasonRegistrationNotFound, err, "no registration in progress, or it expired: begin again")
	}
	if err != nil {
		return Factor{}, nil, err
	}
	u, err := s.o.Store.User(ctx, e.UserID)
	if err != nil {
		return Factor{}, nil, err
	}
	cred, err := s.o.RP.FinishRegistration(webauthnUser(u, e.DisplayName), ch.Session, credentialJSON)
	var ce *CeremonyError
	if errors.As(err, &ce) {
		s.log(ctx, slog.LevelWarn, "webauthn registration refused", "user_id", e.UserID, "reason", ce.Reason, "detail", ce.Detail)
		return Factor{}, nil, badField("credential_json", "%s", ce.Reason)
	}
	if err != nil {
		return Factor{}, nil, err
	}
	id, err := secret.NewID(s.o.Rand)
	if err != nil {
		return Factor{}, nil, err
	}
	f := Factor{ID: id, Kind: KindWebAuthn, Name: ch.Name, CreatedAt: now, WebAuthn: cred}
	codes, hashes, err := s.firstFactorCodes(e)
	if err != nil {
		return Factor{}, nil, err
	}
	err = s.o.Store.ConfirmFactor(ctx, Confirmation{
		UserID: e.UserID, FactorID: id, TokenHash: e.TokenHash, FirstFactor: e.FirstFactor,
		Now: now, Factor: &f, RecoveryHashes: hashes,
	})
	if err := s.confirmError(err); err != nil {
		return Factor{}, nil, err
	}
	if err := s.factorAdded(ctx, e, f, now); err != nil {
		return Factor{}, nil, err
	}
	return f, codes, nil
}

// confirmError translates ConfirmFactor's errors for the caller. Between
// the checks of session() and ConfirmFactor, another request may have
// completed the session, enrolled a first factor or taken the credential.
func (s *Service) confirmError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return failWith(ErrNotFound, ReasonSessionNotFound, err, "enrolment session or pending factor not found (expired or already used)")
	case errors.Is(err, ErrConflict):
		return failWith(ErrRefused, ReasonAlreadyEnrolled, err, "the user enrolled a factor meanwhile: adding another needs PROOF_EXISTING_FACTOR")
	case errors.Is(err, ErrDuplicate):
		return failWith(ErrDuplicate, ReasonCredentialRegistered, err, "this authenticator's credential is already registered")
	}
	return err
}

// LoginChallenge is a started WebAuthn login.
type LoginChallenge struct {
	ID      secret.String
	Options []byte
}

// BeginWebAuthnLogin starts a login and returns the options for the browser
// and the challenge id that FinishWebAuthnLogin takes. Users without a
// credential, or unknown, get an answer of the same shape.
func (s *Service) BeginWebAuthnLogin(ctx context.Context, userID string, c Client) (LoginChallenge, error) {
	if s.o.RP == nil {
		return LoginChallenge{}, errNoWebAuthn
	}
	if err := checkUserID(userID); err != nil {
		return LoginChallenge{}, err
	}
	if err := c.check(); err != nil {
		return LoginChallenge{}, err
	}
	u, err := s.o.Store.User(ctx, userID)
	if err != nil {
		return LoginChallenge{}, err
	}
	options, sess, err := s.o.RP.BeginLogin(webauthnUser(u, ""))
	if err != nil {
		return LoginChallenge{}, err
	}
	id, err := secret.NewToken(s.o.Rand)
	if err != nil {
		return LoginChallenge{}, err
	}
	err = s.o.Store.PutChallenge(ctx, loginKey(id.Reveal()), Challenge{UserID: userID, Session: sess, Epoch: u.Epoch}, s.o.Now().Add(s.o.RP.Timeout()))
	if err != nil {
		return LoginChallenge{}, err
	}
	return LoginChallenge{ID: id, Options: options}, nil
}

// FinishWebAuthnLogin checks an assertion. The challenge is consumed by the
// first call, whatever its outcome. It returns the user the challenge was
// for. An assertion cannot be guessed, so no failure is counted and a TOTP
// lock does not apply.
func (s *Service) FinishWebAuthnLogin(ctx context.Context, challengeID string, assertionJSON []byte, c Client) (Result, string, error) {
	if s.o.RP == nil {
		return Result{}, "", errNoWebAuthn
	}
	if err := checkToken("challenge_id", challengeID); err != nil {
		return Result{}, "", err
	}
	if err := c.check(); err != nil {
		return Result{}, "", err
	}
	now := s.o.Now()
	ch, err := s.o.Store.TakeChallenge(ctx, loginKey(challengeID), now)
	if errors.Is(err, ErrNotFound) {
		// No user to record an event for: the line is the trace.
		s.log(ctx, slog.LevelInfo, "webauthn login refused: unknown, expired or spent challenge", "client_ip", clientOf(ctx, c).IP)
		return Result{Verdict: Rejected}, "", nil
	}
	if err != nil {
		return Result{}, "", err
	}
	// From here on the challenge is spent: every outcome is final.
	r, err := s.verifyAssertion(ctx, ch, assertionJSON, c, now)
	if err != nil {
		return Result{}, "", err
	}
	return r, ch.UserID, nil
}

// verifyAssertion checks an assertion against the login session of a spent
// challenge and, if it holds, records its use. Every outcome but bad input
// is an audit event.
func (s *Service) verifyAssertion(ctx context.Context, ch Challenge, assertionJSON []byte, c Client, now time.Time) (Result, error) {
	userID := ch.UserID
	if len(assertionJSON) == 0 || len(assertionJSON) > MaxCredentialJSON {
		return Result{}, badField("assertion_json", "must be 1 to %d bytes", MaxCredentialJSON)
	}
	u, err := s.o.Store.User(ctx, userID)
	if err != nil {
		return Result{}, err
	}
	e := Event{UserID: userID, Time: now, Action: ActionVerifyWebAuthn, Result: ResultRejected}
	wu := webauthnUser(u, "")
	if len(wu.Credentials) == 0 {
		return s.webauthnVerdict(ctx, e, c)
	}
	a, err := s.o.RP.FinishLogin(wu, ch.Session, assertionJSON)
	var ce *CeremonyError
	switch {
	case errors.As(err, &ce) && ce.Malformed:
		return Result{}, badField("assertion_json", "%s", ce.Reason)
	case errors.As(err, &ce):
		s.log(ctx, slog.LevelWarn, "webauthn assertion refused", "user_id", userID, "reason", ce.Reason, "detail", ce.Detail, "client_ip", clientOf(ctx, c).IP)
		return s.webauthnVerdict(ctx, e, c)
	case err != nil:
		return Result{}, err
	}
	f := credentialFactor(wu.Credentials, a.CredentialID)
	if f == nil {
		return s.webauthnVerdict(ctx, e, c)
	}
	e.FactorID = f.ID
	if !f.SuspendedAt.IsZero() {
		s.log(ctx, slog.LevelWarn, "webauthn assertion refused: credential suspended", "user_id", userID, "factor_id", f.ID,
			"suspended_at", f.SuspendedAt, "client_ip", clientOf(ctx, c).IP)
		e.Result = ResultSuspended
		return s.webauthnVerdict(ctx, e, c)
	}
	return s.acceptAssertion(ctx, e, ch, *f, a, c)
}

// acceptAssertion has the store accept a verified assertion of f (the
// store decides on the sign count: go-webauthn's CloneWarning saw the count
// read before, and a concurrent login may have moved it since) and
// records the outcome in e.
func (s *Service) acceptAssertion(ctx context.Context, e Event, ch Challenge, f Factor, a Assertion, c Client) (Result, error) {
	outcome, err := s.o.Store.AcceptAssertion(ctx, e.UserID, f.ID, a.Use, ch.Epoch, e.Time)
	if err != nil {
		return Result{}, err
	}
	switch outcome {
	case AssertionAccepted:
		e.Result = ResultAccepted
	case AssertionCloned:
		e.Result = ResultReplay
		if err := s.suspended(ctx, e, f, a, c); err != nil {
			return Result{}, err
		}
	default:
		s.log(ctx, slog.LevelWarn, "webauthn assertion refused by the store: credential suspended or removed, or the user's factors changed",
			"user_id", e.UserID, "factor_id", f.ID, "client_ip", clientOf(ctx, c).IP)
	}
	return s.webauthnVerdict(ctx, e, c)
}

// suspended records the suspension of f, whose sign count went backwards
// in the assertion of verification e (Store.AcceptAssertion suspended it).
func (s *Service) suspended(ctx context.Context, e Event, f Factor, a Assertion, c Client) error {
	why := fmt.Sprintf("sign count went backwards (stored %d, asserted %d): possible cloned authenticator", f.WebAuthn.SignCount, a.Use.SignCount)
	s.log(ctx, slog.LevelWarn, "webauthn credential suspended: "+why, "user_id", e.UserID, "factor_id", f.ID,
		"client_ip", clientOf(ctx, c).IP)
	return s.record(ctx, Event{UserID: e.UserID, Time: e.Time, Action: ActionFactorSuspended, Result: ResultSuspended,
		FactorID: f.ID, Reason: why}, c)
}

// webauthnVerdict records verification e and answers it.
func (s *Service) webauthnVerdict(ctx context.Context, e Event, c Client) (Result, error) {
	r := Result{Verdict: Rejected}
	if e.Result == ResultAccepted {
		r.Verdict = Accepted
	}
	return answer(r, s.record(ctx, e, c))
}

// credentialFactor returns the factor among fs whose credential ID is id,
// or nil.
func credentialFactor(fs []Factor, id []byte) *Factor {
	for i := range fs {
		if bytes.Equal(fs[i].WebAuthn.CredentialID, id) {
			return &fs[i]
		}
	}
	return nil
}

var errNoWebAuthn = refuse(ReasonWebAuthnDisabled, "WebAuthn is not configured on this server")
