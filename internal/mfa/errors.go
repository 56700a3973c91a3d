package mfa

import (
	"errors"
	"fmt"
)

// FieldError is bad input: the field and what is wrong with it. Problem
// never repeats the value, so the whole error is safe to show the caller.
type FieldError struct {
	Field   string
	Problem string
}

// Error returns "field: problem", the text the caller sees.
func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

func badField(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Errors of the flows, beside the store's ErrNotFound, ErrConflict,
// ErrWrongCode, ErrDuplicate and ErrUnavailable. The flows return them
// inside an *Error that says which rule refused; check them with errors.Is.
var (
	// ErrRefused: a rule of the flows refuses the request.
	ErrRefused = errors.New("refused")
	// ErrLocked: too many failed attempts.
	ErrLocked = errors.New("too many failed attempts")
)

// Reason names the rule that refused a request. Reasons are stable values
// that tests assert and logs carry; they hold nothing about the user.
type Reason string

// The reasons, with the kind of error each one comes with.
const (
	// ReasonAlreadyEnrolled (ErrRefused): the user has a factor, and a
	// session backed only by a password or strong authentication may enrol
	// a first factor only. Also the answer when another session enrolled a
	// first factor meanwhile.
	ReasonAlreadyEnrolled Reason = "already-enrolled"
	// ReasonNotEnrolled (ErrRefused): PROOF_EXISTING_FACTOR for a user who
	// has no factor to prove anything with.
	ReasonNotEnrolled Reason = "not-enrolled"
	// ReasonNoFreshVerification (ErrRefused): PROOF_EXISTING_FACTOR, but the
	// user's last accepted verification is missing or older than the
	// fresh-verification window (a verification exactly at the window's
	// end still counts), or an administrator removed factors of the user
	// (a reset or a delete) since it.
	ReasonNoFreshVerification Reason = "no-fresh-verification"
	// ReasonPolicyStrongOnly (ErrRefused): the strong-only policy refuses a
	// first factor on a password alone.
	ReasonPolicyStrongOnly Reason = "policy-strong-only"
	// ReasonNeedsActivationCode (ErrRefused): the session enrols nothing
	// until an activation code is given.
	ReasonNeedsActivationCode Reason = "needs-activation-code"
	// ReasonWrongActivationCode (ErrRefused): the activation code given is
	// wrong, expired, already used or another user's.
	ReasonWrongActivationCode Reason = "wrong-activation-code"
	// ReasonNeedsExistingFactor (ErrRefused): the operation (regenerating
	// recovery codes) needs a session created with PROOF_EXISTING_FACTOR.
	ReasonNeedsExistingFactor Reason = "needs-existing-factor"
	// ReasonFactorsChanged (ErrRefused): the user's factors changed while
	// the session was open (a reset); nothing was done.
	ReasonFactorsChanged Reason = "factors-changed"
	// ReasonWebAuthnDisabled (ErrRefused): WebAuthn is not configured.
	ReasonWebAuthnDisabled Reason = "webauthn-disabled"
	// ReasonLocked (ErrLocked): too many failed attempts; retry later.
	ReasonLocked Reason = "locked"
	// ReasonSessionNotFound (ErrNotFound): the enrolment token names no
	// usable session: unknown, expired or already used.
	ReasonSessionNotFound Reason = "session-not-found"
	// ReasonPendingFactorNotFound (ErrNotFound): the TOTP factor to confirm
	// is unknown or expired.
	ReasonPendingFactorNotFound Reason = "pending-factor-not-found"
	// ReasonRegistrationNotFound (ErrNotFound): no WebAuthn registration is
	// in progress in the session, or it expired.
	ReasonRegistrationNotFound Reason = "registration-not-found"
	// ReasonCredentialRegistered (ErrDuplicate): the authenticator's
	// credential is already registered.
	ReasonCredentialRegistered Reason = "credential-registered"
	// ReasonFactorNotFound (ErrNotFound): the user has no confirmed factor
	// of the id given.
	ReasonFactorNotFound Reason = "factor-not-found"
	// ReasonFactorNotSuspended (ErrRefused): EnableFactor of a factor that
	// is not suspended.
	ReasonFactorNotSuspended Reason = "factor-not-suspended"
)

// Error is a request the flows refuse: the kind of refusal, the rule that
// refused, a message for the caller and, apart from it, the cause.
//
// Message is written to be shown: it holds no secret and no internal detail.
// Cause is for the log only and the edges never show it. errors.Is matches
// Kind, and also whatever Cause wraps.
type Error struct {
	// Kind is one of the package's sentinels: ErrRefused, ErrLocked,
	// ErrNotFound, ErrConflict, ErrWrongCode, ErrDuplicate, ErrUnavailable.
	Kind error
	// Reason names the rule that refused.
	Reason Reason
	// Message says what was refused and what to do, to the caller.
	Message string
	// Cause is what the flows were told underneath (a store's error), for
	// the log only; nil if none.
	Cause error
}

// Error returns the message, followed by the cause if there is one: the
// text for the log.
func (e *Error) Error() string {
	if e.Cause == nil {
		return e.Message
	}
	return e.Message + ": " + e.Cause.Error()
}

// Is reports whether target is the error's kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// refuse returns an *Error of kind ErrRefused.
func refuse(r Reason, format string, args ...any) error {
	return &Error{Kind: ErrRefused, Reason: r, Message: fmt.Sprintf(format, args...)}
}

// failWith returns an *Error of the given kind with its cause.
func failWith(kind error, r Reason, cause error, msg string) error {
	return &Error{Kind: kind, Reason: r, Message: msg, Cause: cause}
}
