package mfa

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store keeps users' factors, attempt counters, enrolment sessions,
// activation codes and WebAuthn challenges. Two implementations, an embedded
// bbolt file and Redis, pass one conformance suite (package storetest),
// which pins every rule and boundary stated here; a rule is stated once, on
// the method that applies it, and the others refer to it.
//
// Atomicity: every method that checks and then changes state does both in
// one atomic operation, so that concurrent callers, on one replica or many,
// cannot both pass the check.
//
// Time: a store reads no clock. Every expiry, lock and failure window is
// measured with the callers' now arguments. A store may keep times to the
// millisecond, truncating them (and rounding the durations of Limits up), so
// the boundaries below are exact for whole milliseconds. Whatever expires at
// T (an enrolment session, a pending factor, an activation code, a
// challenge, a lock) holds while now is before T and no longer from T on.
//
// A success is an AcceptTOTPStep or AcceptAssertion that returns true, or a
// ConsumeRecoveryCode that consumes a code: in the same atomic step it sets
// the user's counted attempts, lockouts and lock to zero (see StartAttempt)
// and LastVerifiedAt to now. Besides a success, only ResetUser and
// UnlockUser reset the attempts, and only ResetUser and DeleteFactor reset
// LastVerifiedAt (to zero: a verification made before them, perhaps with
// the factor removed, backs nothing after them).
//
// Epoch: each user has a factor epoch, 0 for a user the store has never
// seen, that ResetUser and DeleteFactor increment in the same atomic step
// as their removal. Whatever is begun under an epoch (an enrolment session,
// a login challenge, a verification) carries it, and the method that would
// complete it refuses when the user's epoch is no longer that one: nothing
// begun before a reset or a delete finishes after it, on any replica.
//
// Errors: a method returns ErrNotFound, ErrConflict, ErrWrongCode or
// ErrDuplicate, possibly wrapped, where its documentation says, and then has
// changed nothing. Any method may return an error wrapping ErrUnavailable
// when the store cannot be reached; called with a context that is already
// done, it returns an error wrapping the context's error and changes
// nothing. Arguments that a method documents as not allowed are refused with
// an error that wraps none of the above, and nothing changes. Any other error
// is a failure of the store itself.
type Store interface {
	// User returns a user's confirmed factors and state. A user the store
	// has never seen is returned with no factor, not as an error.
	User(ctx context.Context, userID string) (User, error)

	// StartAttempt counts one attempt at a guessable secret (a TOTP code, a
	// recovery code, an activation code) before it is evaluated. The rule:
	//
	//   - If now is before the user's lock end, the user is locked: nothing
	//     is counted and the Attempt is Locked, with LockedUntil and no
	//     factors.
	//   - Otherwise, if the last counted attempt was lim.FailureTTL or more
	//     before now (now - last >= FailureTTL), the counted attempts and
	//     lockouts are forgotten first (set to zero).
	//   - The attempt is counted (attempts + 1, last counted attempt = now).
	//     If the count is then lim.MaxFailures or more, the user is locked
	//     until now + lim.Backoff(lockouts), and lockouts + 1; otherwise the
	//     lock end is set to zero. The Attempt carries the user's factors, to
	//     be evaluated.
	//
	// So the MaxFailures-th attempt after a success is evaluated and locks
	// the ones after it, however many run in parallel: at most MaxFailures
	// are evaluated. When the lock ends, one attempt is evaluated and locks
	// again for the next back-off, until a success or FailureTTL without a
	// counted attempt. Attempts refused by a lock are not counted: they
	// neither lengthen the lock nor delay FailureTTL.
	//
	// lim must be valid: MaxFailures >= 1, FailureTTL > 0 and
	// 0 < BaseLockout <= MaxLockout; other limits are not allowed.
	StartAttempt(ctx context.Context, userID string, now time.Time, lim Limits) (Attempt, error)

	// AcceptTOTPStep accepts a code of time step step for factorID if
	// factorID is a confirmed TOTP factor of the user and step is greater
	// than the last step the factor accepted (at first, the step that
	// confirmed it); an equal or smaller step is a replay. Accepted, it
	// stores step as the factor's last, records now as the factor's last use
	// and is a success (see Store). It returns false, with no change,
	// otherwise. step must lie in 0..2^53 (the steps of any real time do);
	// other steps are not allowed.
	//
	// epoch is the user's epoch that the evaluated factors were read under
	// (Attempt.Epoch): a different epoch accepts nothing and returns false.
	// So does a suspended factor (SuspendedAt set), with its step kept.
	AcceptTOTPStep(ctx context.Context, userID, factorID string, step int64, epoch uint64, now time.Time) (bool, error)

	// CreateEnrollment stores a new enrolment session until e.ExpiresAt,
	// replacing one of the same token hash.
	CreateEnrollment(ctx context.Context, e Enrollment) error

	// Enrollment returns the session whose token hashes to tokenHash.
	// ErrNotFound if there is none, it expired, it was completed, or its
	// Epoch is no longer the user's (a reset or delete ended it).
	Enrollment(ctx context.Context, tokenHash string, now time.Time) (Enrollment, error)

	// PutActivationCode stores the hash of a user's activation code until
	// expiresAt, replacing any previous code.
	PutActivationCode(ctx context.Context, userID, codeHash string, expiresAt time.Time) error

	// ActivateEnrollment consumes the user's activation code if it hashes to
	// codeHash and marks the session activated. ErrNotFound if the session
	// is gone, expired, another user's or of another epoch; else ErrWrongCode if the user has
	// no unexpired code or it does not match. Nothing changes on error.
	ActivateEnrollment(ctx context.Context, tokenHash, userID, codeHash string, now time.Time) error

	// PutPendingFactor stores a factor that is not confirmed yet, until
	// expiresAt, replacing a pending factor of the same ID. A pending factor
	// verifies nothing. It belongs to the user's epoch at the call: a reset
	// or a delete removes it (see ResetUser, DeleteFactor).
	PutPendingFactor(ctx context.Context, userID string, f Factor, expiresAt time.Time) error

	// PendingFactor returns a pending factor. ErrNotFound if there is none,
	// it expired, or a reset or delete removed it.
	PendingFactor(ctx context.Context, userID, factorID string, now time.Time) (Factor, error)

	// ConfirmFactor turns a pending factor, or c.Factor given whole, into a
	// confirmed one and completes its enrolment session, atomically. Its
	// checks, in this order, the first that fails deciding the error:
	//
	//  1. a WebAuthn credential's ID is registered to no one, this user
	//     included (else ErrDuplicate);
	//  2. the session exists, has not expired, is c.UserID's and its Epoch
	//     is the user's (else ErrNotFound);
	//  3. it is usable: activated if it needs to be (else ErrConflict);
	//  4. the factor is given, or pending and unexpired (else ErrNotFound);
	//  5. for a FirstFactor session, or with c.FirstFactor, the user has no
	//     confirmed factor (else ErrConflict).
	//
	// A TOTP factor starts with c.Step as its last accepted step. The
	// pending factor of the same ID goes. c.RecoveryHashes, if any, replace
	// the user's recovery codes (see ConsumeRecoveryCode); with none, the
	// codes stay. Nothing changes on error.
	//
	// Not allowed: a c.Factor without ID or whose ID is not c.FactorID
	// (c.FactorID may be empty), whose Kind does not match its WebAuthn
	// record, or with an empty credential ID; a pending WebAuthn factor
	// (a credential is confirmed only given whole, so that its ID is
	// checked); c.Step outside 0..2^53; more than 1000 RecoveryHashes.
	ConfirmFactor(ctx context.Context, c Confirmation) error

	// PutChallenge stores a WebAuthn ceremony's server-side state under id
	// until expiresAt.
	PutChallenge(ctx context.Context, id string, c Challenge, expiresAt time.Time) error

	// TakeChallenge returns and deletes a challenge in one atomic step, so
	// that of concurrent callers at most one gets it. ErrNotFound if there
	// is none or it expired (an expired one is deleted too).
	TakeChallenge(ctx context.Context, id string, now time.Time) (Challenge, error)

	// AcceptAssertion accepts a verified WebAuthn assertion of factorID if
	// factorID is a confirmed WebAuthn factor of the user and use.SignCount
	// is greater than the stored count, or both are zero (an authenticator
	// without a counter). An equal non-zero count, a smaller one, or zero
	// after a non-zero count is refused: a cloned authenticator or a
	// replay. Accepted, it stores the count and flags of use, records now
	// as the factor's last use and is a success (see Store).
	//
	// The outcome says which: AssertionAccepted; AssertionRefused, with no
	// change, when the factor is not a confirmed WebAuthn factor of the
	// user, is suspended (SuspendedAt set), or epoch is not the user's (the
	// epoch the challenge was made under); AssertionCloned when the count is
	// refused by the rule above: the factor is then suspended at now in the
	// same atomic step (SuspendedAt = now), so that every later assertion is
	// refused, whatever its count, until SuspendFactor lifts it. A refusal
	// comes first: an assertion of another epoch, or for a suspended factor,
	// is AssertionRefused whatever its count, and suspends nothing.
	AcceptAssertion(ctx context.Context, userID, factorID string, use AssertionUse, epoch uint64, now time.Time) (AssertionOutcome, error)

	// ConsumeRecoveryCode removes the user's recovery code that hashes to
	// codeHash, if the user has it; that is a success (see Store). A user's
	// recovery codes are a set of hashes: a hash given twice is one code.
	// It returns whether a code was removed and how many codes the user has
	// after the call, removed or not (0 for a user without codes).
	ConsumeRecoveryCode(ctx context.Context, userID, codeHash string, now time.Time) (ok bool, remaining int, err error)

	// ReplaceRecoveryCodes replaces all of a user's recovery codes by hashes
	// (none if empty) and completes the enrolment session that authorised
	// it, atomically. ErrNotFound if the session is gone, expired, another
	// user's or of another epoch; ErrConflict if it is not usable, is a FirstFactor session or
	// the user has no confirmed factor. Nothing changes on error. More than
	// 1000 hashes are not allowed.
	ReplaceRecoveryCodes(ctx context.Context, tokenHash, userID string, hashes []string, now time.Time) error

	// ResetUser removes, in one atomic step, all of a user's confirmed
	// factors (and their credential IDs, which become free), pending
	// factors, recovery codes, activation code, counted attempts, lockouts
	// and lock, and increments the user's epoch, which ends every session,
	// challenge and verification begun before (see Epoch). It returns how
	// many confirmed factors it removed. A user the store has never seen is
	// reset too (epoch 0 → 1), with 0 removed. LastVerifiedAt goes too (see
	// Store); enrolment sessions and challenges stay until they expire,
	// ended by the epoch.
	ResetUser(ctx context.Context, userID string, now time.Time) (removed int, err error)

	// DeleteFactor removes one confirmed factor of the user (a credential's
	// ID becomes free) and increments the user's epoch, atomically. If it
	// was the user's last factor, the recovery codes go too. The user's
	// pending factors go as well, since they belong to enrolments begun
	// under the epoch it ends, and LastVerifiedAt is set to zero (see
	// Store). ErrNotFound if the user has no confirmed factor factorID, and
	// then nothing changes.
	DeleteFactor(ctx context.Context, userID, factorID string, now time.Time) error

	// UnlockUser sets the user's counted attempts, lockouts and lock to zero
	// (as a success does, but without touching LastVerifiedAt). A user
	// without any is unchanged; that is not an error.
	UnlockUser(ctx context.Context, userID string) error

	// SuspendFactor sets the SuspendedAt of the user's confirmed factor
	// factorID to at; the zero time lifts a suspension. ErrNotFound if the
	// user has no confirmed factor factorID.
	SuspendFactor(ctx context.Context, userID, factorID string, at time.Time) error

	// AppendEvent appends e to the audit chain of e.UserID, which is
	// append-only: it sets e.Seq to the chain's last Seq + 1 (1 for the
	// first event), e.PrevHash to the last event's Hash ("" for the first)
	// and e.Hash to EventHash(e), atomically against concurrent appends to
	// the same chain, stores it and returns it. e.Time is kept, and hashed,
	// in whole milliseconds (truncated), in UTC. The last event is the last
	// appended: one removed since behind the store's back still gives the
	// next its Seq + 1 and its Hash, so that the gap shows. e.UserID must not
	// be empty; e.Seq, e.PrevHash and e.Hash given are ignored.
	AppendEvent(ctx context.Context, e Event) (Event, error)

	// Events returns the events that q selects, newest first (by Time, then
	// by UserID, then by Seq, all descending, user IDs compared byte by
	// byte), at most q.Limit (1 to 1000; other limits are not allowed), and
	// a cursor for the next page: "" when no further event is selected,
	// else the page is full and the next holds at least one event (when
	// read, if nothing was removed meanwhile). Pass the cursor with the same
	// query. A cursor that the store did not give is ErrNotFound. Events
	// are returned as stored, so that a check of their hashes sees any
	// edit; an event removed behind the store's back is not listed, and an
	// edited one is listed where it was appended.
	Events(ctx context.Context, q EventQuery) ([]Event, string, error)

	// Chain returns up to n events (1 to 1000; other n are not allowed) of
	// userID's audit chain in chain order, starting at the first event
	// whose Seq is at least from, as stored. An empty slice past the end or
	// for a user without events.
	Chain(ctx context.Context, userID string, from uint64, n int) ([]Event, error)

	// ChainUsers returns up to n users (1 to 1000; other n are not allowed)
	// that have an audit chain, in ascending byte order, starting after the
	// user after ("" for the first page), which need not have one. Fewer
	// than n: there are no more.
	ChainUsers(ctx context.Context, after string, n int) ([]string, error)

	// PruneEvents removes old audit events, for a retention period. An
	// event can go when its Time is before `before` (strictly: an event at
	// before, or after it, stays) and it is the first event left in its
	// chain: so a chain loses only its oldest events, in Seq order, and
	// what remains of it is always a contiguous suffix, the events of Seq
	// >= some first Seq. An event before `before` that follows one at or
	// after it in its chain stays until that one can go. A chain's events
	// go with their index entries in one atomic step (a store may drop an
	// entry of an index that spans users just after it): Events and Chain
	// no longer return them. The chain's head stays, even when all its
	// events go, so that the next AppendEvent continues the chain (the last
	// Seq + 1, after its Hash) and ChainUsers still lists the user.
	//
	// At most max events go in one call (1 to MaxPruneEvents; other max
	// are not allowed), the oldest first: by Time, exactly so when each
	// chain's times rise with its Seq, as the service's appends make them.
	// It returns how many it removed; fewer than max means that, when it
	// ended, no event that could go was left but those appended meanwhile
	// (when no other PruneEvents ran at the same time). The outbox (see
	// Outbox) is not touched: DropNotifications ages its entries on its own.
	PruneEvents(ctx context.Context, before time.Time, max int) (removed int, err error)

	Bypasses // break-glass bypass codes (bypass.go)
	Outbox   // notifications waiting for the webhook (outbox.go)
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
	// ErrUnavailable: the store could not be reached or did not answer in
	// time (connection refused or reset, timeout, client closed). The
	// operation may or may not have taken effect; the caller may retry,
	// since every one-time value is consumed at most once.
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
	ID string
	// Epoch is the user's factor epoch (see Store).
	Epoch uint64
	// Factors are the confirmed factors, oldest first: by CreatedAt, then
	// by ID.
	Factors []Factor
	// LockedUntil is the lock end set by the last counted attempt (see
	// Store.StartAttempt), zero if it set none or after a success. A lock
	// that ended stays here until then: ask Locked.
	LockedUntil    time.Time
	LastVerifiedAt time.Time // the last success, zero if none
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
	// SuspendedAt, when set, suspends the factor: it verifies nothing until
	// an administrator lifts it (Store.SuspendFactor with the zero time).
	SuspendedAt time.Time `json:"suspended_at,omitzero"`
	TOTP        *TOTP     `json:"totp,omitempty"`
	WebAuthn    *WebAuthn `json:"webauthn,omitempty"`
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

// AssertionOutcome is what Store.AcceptAssertion did.
type AssertionOutcome int

// The outcomes of Store.AcceptAssertion.
const (
	AssertionRefused AssertionOutcome = iota
	AssertionAccepted
	AssertionCloned
)

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
	// Epoch is the user's epoch when the challenge was made (see Store).
	Epoch uint64 `json:"epoch"`
}

// TOTP is the sealed secret and parameters of a TOTP factor.
type TOTP struct {
	Algorithm string `json:"alg"`
	Digits    int    `json:"digits"`
	Period    int    `json:"period"` // seconds
	KeyID     string `json:"key_id"` // the sealing key
	Sealed    []byte `json:"sealed"` // AES-256-GCM, nonce first
}

// Attempt is the outcome of Store.StartAttempt.
type Attempt struct {
	// Locked: evaluate nothing, the user is locked until LockedUntil.
	Locked bool
	// LockedUntil is, when Locked, the end of the lock; otherwise the end
	// of the lock this very attempt set because its count reached
	// lim.MaxFailures, zero if it set none. So of attempts racing at the
	// limit, exactly one reports the lock it set.
	LockedUntil time.Time
	// Factors are the user's confirmed factors, when not Locked.
	Factors []Factor
	// Epoch is the user's epoch the factors were read under, for
	// AcceptTOTPStep.
	Epoch uint64
}

// Limits are the failed-attempt policy; Store.StartAttempt states how a
// store applies them.
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
	// Epoch is the user's epoch when the session was created (see Store).
	Epoch uint64 `json:"epoch"`
}

// Usable reports whether the session may enrol a factor.
func (e Enrollment) Usable() bool { return !e.NeedsActivation || e.Activated }

// Bounds of what the Store methods take.
const (
	// MaxStep is the largest TOTP step a Store takes (Lua compares steps
	// as doubles, exact up to 2^53; the steps of any real time are far
	// below).
	MaxStep = 1 << 53
	// MaxRecoveryHashes is the most recovery code hashes one call may give.
	MaxRecoveryHashes = 1000
	// MaxPruneEvents is the most audit events one PruneEvents may remove.
	MaxPruneEvents = 10000
	// MaxPage is the largest page of Events, Chain and ChainUsers.
	MaxPage = 1000
)

// CheckPage refuses a page size n that Store does not allow; what names it.
func CheckPage(what string, n int) error {
	if n < 1 || n > MaxPage {
		return fmt.Errorf("%s %d: want 1 to %d", what, n, MaxPage)
	}
	return nil
}

// CheckPruneMax refuses a max that Store.PruneEvents does not allow.
func CheckPruneMax(max int) error {
	if max < 1 || max > MaxPruneEvents {
		return fmt.Errorf("max %d: want 1 to %d", max, MaxPruneEvents)
	}
	return nil
}

// Validate refuses the confirmations that Store.ConfirmFactor does not
// allow, except a pending WebAuthn factor, which only the store's atomic
// step sees.
func (c Confirmation) Validate() error {
	if c.Step < 0 || c.Step > MaxStep {
		return fmt.Errorf("step %d out of range", c.Step)
	}
	if len(c.RecoveryHashes) > MaxRecoveryHashes {
		return fmt.Errorf("%d recovery codes, at most %d", len(c.RecoveryHashes), MaxRecoveryHashes)
	}
	f := c.Factor
	switch {
	case f == nil:
		return nil
	case f.ID == "":
		return errors.New("the factor has no ID")
	case c.FactorID != "" && c.FactorID != f.ID:
		return fmt.Errorf("factor ID %q is not the factor's %q", c.FactorID, f.ID)
	case (f.Kind == KindWebAuthn) != (f.WebAuthn != nil):
		return fmt.Errorf("%s factor %s with WebAuthn record %v", f.Kind, f.ID, f.WebAuthn != nil)
	case f.WebAuthn != nil && len(f.WebAuthn.CredentialID) == 0:
		return fmt.Errorf("factor %s has an empty credential ID", f.ID)
	}
	return nil
}

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

// Event is an entry of the audit trail: who did what to whose factors, and
// how each verification went. A user's events form a hash chain (see
// Store.AppendEvent), so that an edited or removed event is detected.
//
// What Result, FactorID and Reason hold for each action is listed with the
// actions (audit.go): Result also names the proof of enrollment.created and
// the kind of factor.added, and Reason, for an event the service decided
// itself (user.locked, factor.suspended), says what caused it.
type Event struct {
	UserID    string    `json:"user_id"`
	Seq       uint64    `json:"seq"` // position in the user's chain, from 1
	Time      time.Time `json:"time"`
	Action    Action    `json:"action"`
	Result    string    `json:"result,omitempty"` // for verifications: accepted, rejected, locked, replay, suspended
	FactorID  string    `json:"factor_id,omitempty"`
	Actor     string    `json:"actor,omitempty"`  // the API caller
	Reason    string    `json:"reason,omitempty"` // an administrator's reason
	ClientIP  string    `json:"client_ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	PrevHash  string    `json:"prev_hash,omitempty"` // hex SHA-256 of the previous event, "" for the first
	Hash      string    `json:"hash"`                // hex SHA-256 of this one: EventHash
}

// Action is what an audit event records.
type Action string

// EventQuery selects audit events for Store.Events.
type EventQuery struct {
	UserID  string    // "" for every user
	Since   time.Time // zero: no lower bound; else Time >= Since
	Until   time.Time // zero: no upper bound; else Time < Until
	Actions []Action  // empty: every action
	Limit   int       // 1 to 1000
	Cursor  string    // from the previous page, "" for the first
}
