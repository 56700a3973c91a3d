package mfa

import (
	"context"
	"errors"
	"time"
)

// Store keeps users' factors, attempt counters, enrolment sessions and
// activation codes. Two implementations pass the same conformance suite
// (package storetest): an embedded bbolt file and Redis.
//
// Every method that checks and then changes state does both in one atomic
// operation, so that concurrent callers, on one replica or many, cannot both
// pass the check. Methods return ErrNotFound, ErrConflict or ErrWrongCode
// where documented, wrapped or not; any other error is a failure of the
// store itself.
type Store interface {
	// User returns a user's confirmed factors and state. A user the store
	// has never seen is returned with no factor, not as an error.
	User(ctx context.Context, userID string) (User, error)

	// StartAttempt counts one attempt at a guessable factor (a TOTP code,
	// an activation code) before it is evaluated. If the user is locked it
	// counts nothing and returns Locked with the end of the lock. Otherwise
	// it adds one to the consecutive failures, and when they reach
	// lim.MaxFailures it locks the user for lim.Backoff(lockouts) at once,
	// so that however many attempts run in parallel, at most MaxFailures are
	// evaluated. The attempt still returns the user's factors and is to be
	// evaluated. A success (AcceptTOTPStep) resets the count. Failures are
	// forgotten once lim.FailureTTL has passed since the last counted
	// attempt, measured with the now arguments (not the store's clock).
	StartAttempt(ctx context.Context, userID string, now time.Time, lim Limits) (Attempt, error)

	// AcceptTOTPStep records that factorID accepted a code of time step
	// step, if step is later than the last step it accepted; it then resets
	// the user's failure count and lock and records now as the user's last
	// verification and the factor's last use. It returns false, with no
	// change, when step is not later (a replay) or the factor is gone.
	AcceptTOTPStep(ctx context.Context, userID, factorID string, step int64, now time.Time) (bool, error)

	// CreateEnrollment stores a new enrolment session until e.ExpiresAt.
	CreateEnrollment(ctx context.Context, e Enrollment) error

	// Enrollment returns the session whose token hashes to tokenHash.
	// ErrNotFound if there is none, it expired or it was completed.
	Enrollment(ctx context.Context, tokenHash string, now time.Time) (Enrollment, error)

	// PutActivationCode stores the hash of a user's activation code until
	// expiresAt, replacing any previous code.
	PutActivationCode(ctx context.Context, userID, codeHash string, expiresAt time.Time) error

	// ActivateEnrollment consumes the user's activation code if it hashes to
	// codeHash and marks the session activated. ErrNotFound if the session
	// is gone; ErrWrongCode (nothing changed) if there is no unexpired code
	// or it does not match.
	ActivateEnrollment(ctx context.Context, tokenHash, userID, codeHash string, now time.Time) error

	// PutPendingFactor stores a factor that is not confirmed yet, until
	// expiresAt. A pending factor verifies nothing.
	PutPendingFactor(ctx context.Context, userID string, f Factor, expiresAt time.Time) error

	// PendingFactor returns a pending factor. ErrNotFound if there is none
	// or it expired.
	PendingFactor(ctx context.Context, userID, factorID string, now time.Time) (Factor, error)

	// ConfirmFactor turns a pending factor (or c.Factor, given whole) into
	// a confirmed one and completes its enrolment session, atomically: the
	// session must exist and be usable (activated if it needs to be), the
	// pending factor must exist, and for a FirstFactor session the user must
	// have no confirmed factor. A TOTP factor starts with c.Step as its last
	// accepted step; a WebAuthn credential's ID must not be registered to
	// anyone. c.RecoveryHashes, if any, become the user's recovery codes.
	// ErrNotFound if the session or the pending factor is gone; ErrConflict
	// if the session is not activated or the user already has a factor;
	// ErrDuplicate if the credential ID is taken. Nothing changes on error.
	ConfirmFactor(ctx context.Context, c Confirmation) error

	// PutChallenge stores a WebAuthn ceremony's server-side state under id
	// until expiresAt.
	PutChallenge(ctx context.Context, id string, c Challenge, expiresAt time.Time) error

	// TakeChallenge returns and deletes a challenge in one atomic step, so
	// that of concurrent callers at most one gets it. ErrNotFound if there
	// is none or it expired (an expired one is deleted too).
	TakeChallenge(ctx context.Context, id string, now time.Time) (Challenge, error)

	// AcceptAssertion records a verified WebAuthn assertion of factorID:
	// if the factor exists and use.SignCount is later than the stored one
	// (or both are zero: an authenticator without a counter), it stores the
	// count and flags, resets the user's failures and lock, and records now
	// as the last verification and use. It returns false, with no change,
	// when the factor is gone or the count did not grow (a cloned
	// authenticator, or a concurrent replay).
	AcceptAssertion(ctx context.Context, userID, factorID string, use AssertionUse, now time.Time) (bool, error)

	// ConsumeRecoveryCode removes the user's recovery code that hashes to
	// codeHash; if there was one, it resets the user's failures and lock and
	// records now as the last verification. It returns whether a code was
	// consumed and how many are left.
	ConsumeRecoveryCode(ctx context.Context, userID, codeHash string, now time.Time) (ok bool, remaining int, err error)

	// ReplaceRecoveryCodes replaces all of a user's recovery codes and
	// completes the enrolment session that authorised it, atomically: the
	// session must exist, be usable, belong to userID and not be a
	// FirstFactor session, and the user must have a confirmed factor.
	// ErrNotFound if the session is gone; ErrConflict otherwise.
	ReplaceRecoveryCodes(ctx context.Context, tokenHash, userID string, hashes []string, now time.Time) error
}

// Errors a Store returns.
var (
	// ErrNotFound: the record does not exist or expired.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the record is not in the state the operation needs.
	ErrConflict = errors.New("conflict")
	// ErrWrongCode: a one-time code did not match.
	ErrWrongCode = errors.New("wrong code")
	// ErrDuplicate: a WebAuthn credential ID is already registered.
	ErrDuplicate = errors.New("credential already registered")
	// ErrUnavailable: the store cannot be reached now (connection refused,
	// timeout); nothing is known to have changed and the caller may retry.
	ErrUnavailable = errors.New("store unavailable")
)

// Kind is the kind of a factor.
type Kind string

// The factor kinds.
const (
	KindTOTP     Kind = "totp"
	KindWebAuthn Kind = "webauthn"
)

// User is what the store knows of a user.
type User struct {
	ID             string
	Factors        []Factor  // confirmed factors, oldest first
	LockedUntil    time.Time // zero when not locked
	LastVerifiedAt time.Time // last accepted verification of any factor
	RecoveryCodes  int       // recovery codes left
}

// Locked reports whether the user's guessable factors are locked at now.
func (u User) Locked(now time.Time) bool { return now.Before(u.LockedUntil) }

// Factor is a second factor. It holds secrets only sealed.
type Factor struct {
	ID         string    `json:"id"`
	Kind       Kind      `json:"kind"`
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	TOTP       *TOTP     `json:"totp,omitempty"`
	WebAuthn   *WebAuthn `json:"webauthn,omitempty"`
}

// WebAuthn is a registered security key or passkey. The public key is not
// a secret; the store keeps SignCount, BackupState and UserVerified current
// (AcceptAssertion), the rest as registered.
type WebAuthn struct {
	CredentialID      []byte   `json:"cred_id"`
	PublicKey         []byte   `json:"public_key"` // COSE
	AttestationType   string   `json:"att_type,omitempty"`
	AttestationFormat string   `json:"att_fmt,omitempty"`
	AAGUID            []byte   `json:"aaguid,omitempty"`
	Transports        []string `json:"transports,omitempty"`
	BackupEligible    bool     `json:"be"`
	BackupState       bool     `json:"bs"`
	UserVerified      bool     `json:"uv"`
	SignCount         uint32   `json:"sign_count"`
}

// AssertionUse is what a verified assertion changes on its credential.
type AssertionUse struct {
	SignCount    uint32
	BackupState  bool
	UserVerified bool
}

// Challenge is the server-side state of a WebAuthn ceremony.
type Challenge struct {
	UserID string `json:"user_id"`
	// Name is the factor name, for a registration.
	Name string `json:"name,omitempty"`
	// Session is go-webauthn's SessionData, as JSON.
	Session []byte `json:"session"`
}

// TOTP is the sealed secret and parameters of a TOTP factor.
type TOTP struct {
	Algorithm string `json:"alg"`
	Digits    int    `json:"digits"`
	Period    int    `json:"period"` // seconds
	KeyID     string `json:"key_id"` // the sealing key
	Sealed    []byte `json:"sealed"` // AES-256-GCM, nonce first
}

// Attempt is the outcome of StartAttempt.
type Attempt struct {
	// Locked: evaluate nothing, the user is locked until LockedUntil.
	Locked      bool
	LockedUntil time.Time
	// Factors are the user's confirmed factors, when not Locked.
	Factors []Factor
}

// Limits are the failed-attempt policy.
type Limits struct {
	MaxFailures int           // consecutive failures that lock, e.g. 10
	BaseLockout time.Duration // first lock, e.g. 30 s; doubles with each lock
	MaxLockout  time.Duration // longest lock, e.g. 1 h
	FailureTTL  time.Duration // failures are forgotten after this long without one
}

// Backoff is the length of a user's (lockouts+1)-th consecutive lock.
func (l Limits) Backoff(lockouts int) time.Duration {
	d := l.BaseLockout
	for i := 0; i < lockouts && d < l.MaxLockout; i++ {
		d *= 2
	}
	return min(d, l.MaxLockout)
}

// Proof says how the portal authenticated the user who enrols.
type Proof string

// The proofs.
const (
	ProofPasswordOnly   Proof = "password-only"
	ProofStrong         Proof = "strong"
	ProofExistingFactor Proof = "existing-factor"
)

// Enrollment is an enrolment session. It enrols at most one factor.
type Enrollment struct {
	TokenHash   string    `json:"-"`
	UserID      string    `json:"user_id"`
	DisplayName string    `json:"display_name"`
	ReturnURL   string    `json:"return_url,omitempty"`
	Proof       Proof     `json:"proof"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	// FirstFactor: the session may only enrol a user's first factor.
	FirstFactor bool `json:"first_factor"`
	// NeedsActivation: the session enrols nothing until Activated.
	NeedsActivation bool `json:"needs_activation"`
	Activated       bool `json:"activated"`
}

// Usable reports whether the session may enrol a factor.
func (e Enrollment) Usable() bool { return !e.NeedsActivation || e.Activated }

// Confirmation is the argument of ConfirmFactor.
type Confirmation struct {
	UserID      string
	FactorID    string
	TokenHash   string // the enrolment session to complete
	FirstFactor bool
	Step        int64 // TOTP: the step of the confirming code
	Now         time.Time
	// Factor, for a WebAuthn credential, is the factor to add (there is no
	// pending factor); FactorID is then Factor.ID.
	Factor *Factor
	// RecoveryHashes replace the user's recovery codes when not empty.
	RecoveryHashes []string
}
