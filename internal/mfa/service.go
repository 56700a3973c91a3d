// Package mfa implements the second-factor flows: enrolment sessions and the
// rules of who may enrol what, TOTP enrolment and verification, the
// failed-attempt lock and activation codes. It knows nothing of gRPC, HTTP
// or Redis: it talks to a Store and returns errors that the edges translate.
package mfa

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"time"

	"github.com/secondfactor/secondfactor/internal/seal"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/totp"
)

// Policy decides what a password-only enrolment session may do.
type Policy string

// The enrolment policies.
const (
	// PolicyActivationCode: a password-only session enrols a first factor
	// only with an activation code delivered out of band. The default.
	PolicyActivationCode Policy = "activation-code"
	// PolicyStrongOnly: a first factor needs strong authentication.
	PolicyStrongOnly Policy = "strong-only"
	// PolicyOpen: a password-only session enrols a first factor directly.
	// Unsafe: whoever holds a stolen password can enrol their own phone.
	PolicyOpen Policy = "open"
)

// Options configure a Service. New takes the value of DefaultOptions for
// every zero setting.
type Options struct {
	Store  Store
	Ring   *seal.Ring
	RP     RelyingParty // WebAuthn; nil disables it
	Policy Policy
	Issuer string      // shown in authenticator apps
	TOTP   totp.Params // parameters of new TOTP factors
	Limits Limits      // the failed-attempt policy; zero takes DefaultLimits as a whole

	EnrollmentTTL     time.Duration // enrolment session lifetime
	PendingTTL        time.Duration // unconfirmed factor lifetime
	ActivationTTL     time.Duration // activation code lifetime
	FreshVerification time.Duration // how recent a verification backs PROOF_EXISTING_FACTOR
	EnrollURL         string        // base of the hosted enrolment page, e.g. https://mfa.example/enroll/
	ReturnURLs        []string      // allowed return URLs, exact match
	DisableBypass     bool          // refuse bypass codes: none is issued or accepted (bypass.go)

	Now    func() time.Time // the clock; time.Now if nil
	Rand   io.Reader        // randomness for secrets; crypto/rand if nil
	Logger *slog.Logger
	// OnEvent, if set, is called with each audit event once it is stored
	// (metrics count them). It must not block.
	OnEvent func(Event)
}

// DefaultOptions returns the settings New takes where Options leaves them
// zero: the activation-code policy, issuer "secondfactor", the TOTP
// parameters of totp.DefaultParams(), DefaultLimits(), sessions of 15 minutes,
// pending factors of 10, activation codes of an hour, and a verification
// fresh for 5 minutes. Store, Ring, RP and the injections are left nil.
func DefaultOptions() Options {
	return Options{
		Policy:            PolicyActivationCode,
		Issuer:            "secondfactor",
		TOTP:              totp.DefaultParams(),
		Limits:            DefaultLimits(),
		EnrollmentTTL:     15 * time.Minute,
		PendingTTL:        10 * time.Minute,
		ActivationTTL:     time.Hour,
		FreshVerification: 5 * time.Minute,
	}
}

// DefaultLimits returns the failed-attempt policy New takes when
// Options.Limits is zero: a lock after 10 consecutive failures, 30 seconds
// long and doubling up to an hour, and failures forgotten after a day
// without one.
func DefaultLimits() Limits {
	return Limits{MaxFailures: 10, BaseLockout: 30 * time.Second, MaxLockout: time.Hour, FailureTTL: 24 * time.Hour}
}

// SettingError is one setting refused by a validator of this package, or of
// a RelyingParty's configuration (package passkey reports with it too).
type SettingError struct {
	Setting string // the setting in words, e.g. "max failures"
	Reason  string // the value and what is wanted, e.g. "0: want at least 1"
}

// Error says which setting is refused and why, e.g. "max failures 0: want
// at least 1".
func (e *SettingError) Error() string { return e.Setting + " " + e.Reason }

// settingErrors gathers the refused settings of a validator.
type settingErrors []error

func (errs *settingErrors) add(setting, format string, args ...any) {
	*errs = append(*errs, &SettingError{Setting: setting, Reason: fmt.Sprintf(format, args...)})
}

// Validate reports an unknown policy as a *SettingError.
func (p Policy) Validate() error {
	switch p {
	case PolicyActivationCode, PolicyStrongOnly, PolicyOpen:
		return nil
	}
	return &SettingError{Setting: "enrolment policy", Reason: fmt.Sprintf("%q: want activation-code, strong-only or open", p)}
}

// Validate reports every refused limit at once, each a *SettingError,
// joined.
func (l Limits) Validate() error {
	var errs settingErrors
	if l.MaxFailures < 1 {
		errs.add("max failures", "%d: want at least 1", l.MaxFailures)
	}
	if l.BaseLockout <= 0 {
		errs.add("base lockout", "%s: want more than 0", l.BaseLockout)
	}
	if l.MaxLockout < l.BaseLockout {
		errs.add("max lockout", "%s: want at least the base lockout, %s", l.MaxLockout, l.BaseLockout)
	}
	if l.FailureTTL <= 0 {
		errs.add("failure ttl", "%s: want more than 0", l.FailureTTL)
	}
	return errors.Join(errs...)
}

// maxLifetime bounds the lifetime settings.
const maxLifetime = 7 * 24 * time.Hour

// Validate reports every refused setting of o at once, each a
// *SettingError, joined: the policy, the TOTP parameters (as settings "totp
// algorithm", "totp digits" and "totp period"), the limits, the lifetimes and
// the return URLs. Zero values are refused: New fills them from
// DefaultOptions before it calls Validate. Store, Ring, RP and the
// injections are not settings: New checks them.
func (o Options) Validate() error {
	var errs settingErrors
	if err := o.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.TOTP.Validate(); err != nil {
		for _, e := range unjoin(err) {
			var pe *totp.ParamError
			if !errors.As(e, &pe) {
				errs = append(errs, e)
				continue
			}
			errs.add("totp "+pe.Param, "%s", pe.Reason)
		}
	}
	if err := o.Limits.Validate(); err != nil {
		errs = append(errs, unjoin(err)...)
	}
	for _, d := range []struct {
		setting string
		v       time.Duration
	}{
		{"enrolment ttl", o.EnrollmentTTL}, {"pending ttl", o.PendingTTL},
		{"activation ttl", o.ActivationTTL}, {"fresh verification", o.FreshVerification},
	} {
		if d.v <= 0 || d.v > maxLifetime {
			errs.add(d.setting, "%s: want more than 0 and at most %s", d.v, maxLifetime)
		}
	}
	for _, r := range o.ReturnURLs {
		if u, err := url.Parse(r); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs.add("return url", "%q: want an absolute http(s) URL", r)
		}
	}
	return errors.Join(errs...)
}

// unjoin returns the errors that errors.Join joined, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Service runs the flows.
type Service struct {
	o Options
}

// skew is the number of time steps accepted either side of now.
const skew = 1

// New fills the zero settings of o from DefaultOptions, checks them with
// Options.Validate and returns a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Ring == nil {
		return nil, errors.New("mfa: Store and Ring are required")
	}
	d := DefaultOptions()
	if o.Policy == "" {
		o.Policy = d.Policy
	}
	if o.Issuer == "" {
		o.Issuer = d.Issuer
	}
	if o.TOTP == (totp.Params{}) {
		o.TOTP = d.TOTP
	}
	if o.Limits == (Limits{}) {
		o.Limits = d.Limits
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.EnrollmentTTL, d.EnrollmentTTL)
	def(&o.PendingTTL, d.PendingTTL)
	def(&o.ActivationTTL, d.ActivationTTL)
	def(&o.FreshVerification, d.FreshVerification)
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{o: o}, nil
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.o.Now() }

// GetUser returns what is known of a user: confirmed factors and lock.
func (s *Service) GetUser(ctx context.Context, userID string) (User, error) {
	if err := checkUserID(userID); err != nil {
		return User{}, err
	}
	return s.o.Store.User(ctx, userID)
}

// EnrollmentRequest is the argument of CreateEnrollment.
type EnrollmentRequest struct {
	UserID      string
	DisplayName string
	ReturnURL   string
	Proof       Proof
}

// NewEnrollment is a created enrolment session and its token.
type NewEnrollment struct {
	Token secret.String
	URL   string
	Enrollment
}

// CreateEnrollment opens an enrolment session, if the policy lets this proof
// enrol anything for this user.
func (s *Service) CreateEnrollment(ctx context.Context, r EnrollmentRequest) (NewEnrollment, error) {
	if err := checkUserID(r.UserID); err != nil {
		return NewEnrollment{}, err
	}
	if err := checkText("display_name", r.DisplayName, MaxDisplayName, false); err != nil {
		return NewEnrollment{}, err
	}
	if err := s.checkReturnURL(r.ReturnURL); err != nil {
		return NewEnrollment{}, err
	}
	now := s.o.Now()
	u, err := s.o.Store.User(ctx, r.UserID)
	if err != nil {
		return NewEnrollment{}, err
	}
	enrolled := len(u.Factors) > 0
	e := Enrollment{
		UserID:      r.UserID,
		DisplayName: r.DisplayName,
		ReturnURL:   r.ReturnURL,
		Proof:       r.Proof,
		CreatedAt:   now,
		ExpiresAt:   now.Add(s.o.EnrollmentTTL),
		FirstFactor: !enrolled,
		Epoch:       u.Epoch,
	}
	if err := s.admit(&e, u, now); err != nil {
		return NewEnrollment{}, err
	}
	tok, err := secret.NewToken(s.o.Rand)
	if err != nil {
		return NewEnrollment{}, err
	}
	e.TokenHash = secret.Hash(tok.Reveal())
	if err := s.o.Store.CreateEnrollment(ctx, e); err != nil {
		return NewEnrollment{}, err
	}
	s.log(ctx, slog.LevelInfo, "enrolment session created", "user_id", r.UserID, "proof", r.Proof,
		"first_factor", e.FirstFactor, "needs_activation", e.NeedsActivation)
	if err := s.record(ctx, Event{UserID: r.UserID, Time: now, Action: ActionEnrollmentCreated, Result: string(r.Proof)}, Client{}); err != nil {
		return NewEnrollment{}, err
	}
	ne := NewEnrollment{Token: tok, Enrollment: e}
	if s.o.EnrollURL != "" {
		ne.URL = s.o.EnrollURL + tok.Reveal()
	}
	return ne, nil
}

// admit applies the enrolment rules to a new session e of user u: whether
// its proof may open a session at all and, for a password-only first
// factor, whether it needs an activation code (set on e). A reset or a
// delete sets LastVerifiedAt to zero in the store, so a verification made
// before one (perhaps with the factor removed) backs nothing after it.
func (s *Service) admit(e *Enrollment, u User, now time.Time) error {
	enrolled := len(u.Factors) > 0
	switch e.Proof {
	case ProofPasswordOnly:
		switch {
		case enrolled:
			return errAlreadyEnrolled
		case s.o.Policy == PolicyStrongOnly:
			return refuse(ReasonPolicyStrongOnly, "enrolment policy strong-only: a first factor needs PROOF_STRONG")
		case s.o.Policy == PolicyActivationCode:
			e.NeedsActivation = true
		}
	case ProofStrong:
		if enrolled {
			return errAlreadyEnrolled
		}
	case ProofExistingFactor:
		if !enrolled {
			return refuse(ReasonNotEnrolled, "PROOF_EXISTING_FACTOR: the user has no factor")
		}
		if u.LastVerifiedAt.IsZero() || now.Sub(u.LastVerifiedAt) > s.o.FreshVerification {
			return refuse(ReasonNoFreshVerification, "PROOF_EXISTING_FACTOR: no verification of the user's factor in the last %s", s.o.FreshVerification)
		}
	default:
		return badField("proof", "must be PROOF_PASSWORD_ONLY, PROOF_STRONG or PROOF_EXISTING_FACTOR")
	}
	return nil
}

func (s *Service) checkReturnURL(u string) error {
	if u == "" {
		return nil
	}
	if len(u) > MaxReturnURL {
		return badField("return_url", "must be at most %d bytes", MaxReturnURL)
	}
	if !slices.Contains(s.o.ReturnURLs, u) {
		return badField("return_url", "is not on the server's allow-list of return URLs")
	}
	return nil
}

// session finds the enrolment session of a token and, if it needs an
// activation code, activates it with the one given. A wrong activation code
// counts as a failed attempt of the user.
func (s *Service) session(ctx context.Context, token, activationCode string) (Enrollment, error) {
	if err := checkToken("enrollment_token", token); err != nil {
		return Enrollment{}, err
	}
	if len(activationCode) > 64 {
		return Enrollment{}, badField("activation_code", "must be at most 64 bytes")
	}
	now := s.o.Now()
	hash := secret.Hash(token)
	e, err := s.o.Store.Enrollment(ctx, hash, now)
	if errors.Is(err, ErrNotFound) {
		return Enrollment{}, errNoSession(err)
	}
	if err != nil {
		return Enrollment{}, err
	}
	if e.Usable() {
		return e, nil
	}
	if activationCode == "" {
		return Enrollment{}, refuse(ReasonNeedsActivationCode, "this enrolment session needs an activation code (from an administrator or sent to the user's registered contact)")
	}
	codeHash, _, ok := secret.HashCode(activationCode)
	if !ok {
		return Enrollment{}, badField("activation_code", "must be letters and digits in groups of four")
	}
	if err := s.activate(ctx, e, codeHash, now); err != nil {
		return Enrollment{}, err
	}
	e.Activated = true
	return e, nil
}

// activate activates session e with the activation code that hashes to
// codeHash, counting the attempt against the user's lock.
func (s *Service) activate(ctx context.Context, e Enrollment, codeHash string, now time.Time) error {
	att, err := s.o.Store.StartAttempt(ctx, e.UserID, now, s.o.Limits)
	if err != nil {
		return err
	}
	if att.Locked {
		if _, err := s.lockedOut(ctx, ActionVerifyActivation, e.UserID, att, Client{}, now); err != nil {
			return err
		}
		return &Error{Kind: ErrLocked, Reason: ReasonLocked,
			Message: fmt.Sprintf("too many failed attempts: retry after %s", att.LockedUntil.Sub(now).Round(time.Second))}
	}
	err = s.o.Store.ActivateEnrollment(ctx, e.TokenHash, e.UserID, codeHash, now)
	switch {
	case errors.Is(err, ErrWrongCode):
		if err := s.failed(ctx, Event{UserID: e.UserID, Time: now, Action: ActionVerifyActivation, Result: ResultRejected}, Client{}, att); err != nil {
			return err
		}
		return failWith(ErrRefused, ReasonWrongActivationCode, err, "the activation code is wrong, expired or already used")
	case errors.Is(err, ErrNotFound):
		return errNoSession(err)
	case err != nil:
		return err
	}
	s.log(ctx, slog.LevelInfo, "enrolment session activated", "user_id", e.UserID)
	return s.record(ctx, Event{UserID: e.UserID, Time: now, Action: ActionEnrollmentActivated, Result: ResultAccepted}, Client{})
}

// factorAdded records a factor that session e confirmed at now.
func (s *Service) factorAdded(ctx context.Context, e Enrollment, f Factor, now time.Time) error {
	s.log(ctx, slog.LevelInfo, "factor added", "user_id", e.UserID, "factor_id", f.ID, "kind", f.Kind,
		"proof", e.Proof, "first_factor", e.FirstFactor)
	return s.record(ctx, Event{UserID: e.UserID, Time: now, Action: ActionFactorAdded, FactorID: f.ID, Result: string(f.Kind)}, Client{})
}

// errNoSession says that the enrolment token names no usable session; cause
// is the store's answer.
func errNoSession(cause error) error {
	return failWith(ErrNotFound, ReasonSessionNotFound, cause, "enrolment session not found (unknown, expired or already used)")
}

// errAlreadyEnrolled refuses a first-factor enrolment to an enrolled user.
var errAlreadyEnrolled = refuse(ReasonAlreadyEnrolled, "the user already has a factor: adding one needs PROOF_EXISTING_FACTOR")

// PendingTOTP is a TOTP factor waiting for its confirming code.
type PendingTOTP struct {
	FactorID  string
	Key       totp.Key
	Params    totp.Params
	ExpiresAt time.Time
}

// BeginTOTPEnrollment creates a pending TOTP factor in an enrolment session.
func (s *Service) BeginTOTPEnrollment(ctx context.Context, token, name, activationCode string) (PendingTOTP, error) {
	if err := checkText("name", name, MaxFactorName, true); err != nil {
		return PendingTOTP{}, err
	}
	e, err := s.session(ctx, token, activationCode)
	if err != nil {
		return PendingTOTP{}, err
	}
	now := s.o.Now()
	id, err := secret.NewID(s.o.Rand)
	if err != nil {
		return PendingTOTP{}, err
	}
	account := e.DisplayName
	if account == "" {
		account = e.UserID
	}
	key, err := totp.NewKey(s.o.Rand, s.o.TOTP, s.o.Issuer, account)
	if err != nil {
		return PendingTOTP{}, err
	}
	keyID, sealed, err := s.o.Ring.Seal(key.Secret, totpAAD(e.UserID, id))
	if err != nil {
		return PendingTOTP{}, err
	}
	f := Factor{
		ID: id, Kind: KindTOTP, Name: name, CreatedAt: now,
		TOTP: &TOTP{
			Algorithm: string(s.o.TOTP.Algorithm), Digits: s.o.TOTP.Digits,
			Period: int(s.o.TOTP.Period / time.Second), KeyID: keyID, Sealed: sealed,
		},
	}
	expires := now.Add(s.o.PendingTTL)
	if err := s.o.Store.PutPendingFactor(ctx, e.UserID, f, expires); err != nil {
		return PendingTOTP{}, err
	}
	return PendingTOTP{FactorID: id, Key: key, Params: s.o.TOTP, ExpiresAt: expires}, nil
}

// FinishTOTPEnrollment confirms a pending TOTP factor with a valid code and
// completes the enrolment session.
// For a user's first factor it returns the new recovery codes, shown this
// once.
func (s *Service) FinishTOTPEnrollment(ctx context.Context, token, factorID, code string) (Factor, []secret.String, error) {
	if err := checkFactorID(factorID); err != nil {
		return Factor{}, nil, err
	}
	if err := checkCode("code", code); err != nil {
		return Factor{}, nil, err
	}
	e, err := s.session(ctx, token, "")
	if err != nil {
		return Factor{}, nil, err
	}
	now := s.o.Now()
	f, err := s.o.Store.PendingFactor(ctx, e.UserID, factorID, now)
	if errors.Is(err, ErrNotFound) {
		return Factor{}, nil, failWith(ErrNotFound, ReasonPendingFactorNotFound, err, "pending factor not found (unknown or expired): begin again")
	}
	if err != nil {
		return Factor{}, nil, err
	}
	if f.TOTP == nil {
		return Factor{}, nil, badField("factor_id", "is not a TOTP factor")
	}
	step, ok, err := s.match(e.UserID, f, code, now)
	if err != nil {
		return Factor{}, nil, err
	}
	if !ok {
		return Factor{}, nil, badField("code", "does not match the pending factor: check the device's clock and type the current code")
	}
	codes, hashes, err := s.firstFactorCodes(e)
	if err != nil {
		return Factor{}, nil, err
	}
	err = s.o.Store.ConfirmFactor(ctx, Confirmation{
		UserID: e.UserID, FactorID: factorID, TokenHash: e.TokenHash,
		FirstFactor: e.FirstFactor, Step: step, Now: now, RecoveryHashes: hashes,
	})
	if err := s.confirmError(err); err != nil {
		return Factor{}, nil, err
	}
	if err := s.factorAdded(ctx, e, f, now); err != nil {
		return Factor{}, nil, err
	}
	return f, codes, nil
}

// Verdict is the answer of a verification.
type Verdict int

// The verdicts.
const (
	Rejected Verdict = iota
	Accepted
	Locked
)

// Result is the answer of a verification.
type Result struct {
	Verdict    Verdict
	RetryAfter time.Duration // for Locked
}

// VerifyTOTP checks a login code. An unknown user, a user without TOTP and a
// wrong or replayed code all answer Rejected. Each verification leaves an
// audit event.
func (s *Service) VerifyTOTP(ctx context.Context, userID, code string, c Client) (Result, error) {
	if err := checkUserID(userID); err != nil {
		return Result{}, err
	}
	if err := checkCode("code", code); err != nil {
		return Result{}, err
	}
	if err := c.check(); err != nil {
		return Result{}, err
	}
	now := s.o.Now()
	att, err := s.o.Store.StartAttempt(ctx, userID, now, s.o.Limits)
	if err != nil {
		return Result{}, err
	}
	if att.Locked {
		return s.lockedOut(ctx, ActionVerifyTOTP, userID, att, c, now)
	}
	e := Event{UserID: userID, Time: now, Action: ActionVerifyTOTP}
	e.FactorID, e.Result, err = s.checkTOTP(ctx, userID, code, att, now)
	if err != nil {
		return Result{}, err
	}
	if e.Result == ResultAccepted {
		return answer(Result{Verdict: Accepted}, s.record(ctx, e, c))
	}
	if e.Result == ResultReplay {
		s.log(ctx, slog.LevelWarn, "totp code replayed: its time step was already used", "user_id", userID, "factor_id", e.FactorID, "client_ip", clientOf(ctx, c).IP)
	}
	return answer(Result{Verdict: Rejected}, s.failed(ctx, e, c, att))
}

// answer is r, or the zero Result with err.
func answer(r Result, err error) (Result, error) {
	if err != nil {
		return Result{}, err
	}
	return r, nil
}

// checkTOTP evaluates code against the user's TOTP factors read by att and,
// if one matches, accepts its step. It returns the factor that matched, if
// any, and ResultAccepted, ResultReplay (a valid code of a step already
// used) or ResultRejected.
func (s *Service) checkTOTP(ctx context.Context, userID, code string, att Attempt, now time.Time) (factorID, result string, err error) {
	evaluated := false
	var matched string
	for _, f := range att.Factors {
		if f.TOTP == nil || !f.SuspendedAt.IsZero() {
			continue
		}
		evaluated = true
		step, ok, err := s.match(userID, f, code, now)
		if err != nil {
			return "", "", err
		}
		if !ok {
			continue
		}
		accepted, err := s.o.Store.AcceptTOTPStep(ctx, userID, f.ID, step, att.Epoch, now)
		if err != nil {
			return "", "", err
		}
		if accepted {
			return f.ID, ResultAccepted, nil
		}
		matched = f.ID
	}
	if !evaluated {
		// Spend the time a real factor would, so that the answer's timing
		// does not tell an unknown user from a wrong code.
		totp.Match(dummySecret[:], s.o.TOTP, code, now, skew)
	}
	if matched == "" {
		return "", ResultRejected, nil
	}
	return s.replayed(ctx, userID, matched, att.Epoch)
}

// replayed tells, for a valid code of factorID that AcceptTOTPStep refused,
// a replay from a factor removed or reset meanwhile.
func (s *Service) replayed(ctx context.Context, userID, factorID string, epoch uint64) (string, string, error) {
	u, err := s.o.Store.User(ctx, userID)
	if err != nil {
		return "", "", err
	}
	if u.Epoch != epoch || factorIndex(u.Factors, factorID) < 0 {
		s.log(ctx, slog.LevelWarn, "totp code refused: the user's factors changed during the verification", "user_id", userID, "factor_id", factorID)
		return factorID, ResultRejected, nil
	}
	return factorID, ResultReplay, nil
}

// lockedOut answers a verification refused by the user's lock, and records it.
func (s *Service) lockedOut(ctx context.Context, a Action, userID string, att Attempt, c Client, now time.Time) (Result, error) {
	s.log(ctx, slog.LevelWarn, "verification refused: user locked", "user_id", userID, "action", a,
		"locked_until", att.LockedUntil, "client_ip", clientOf(ctx, c).IP)
	err := s.record(ctx, Event{UserID: userID, Time: now, Action: a, Result: ResultLocked}, c)
	return answer(Result{Verdict: Locked, RetryAfter: att.LockedUntil.Sub(now)}, err)
}

// failed records e, a failed attempt at a guessable secret counted by
// StartAttempt as att, and, if that very attempt locked the user (only one
// of attempts racing at the limit does), the lock (user.locked).
func (s *Service) failed(ctx context.Context, e Event, c Client, att Attempt) error {
	if e.Result != ResultReplay {
		s.log(ctx, slog.LevelInfo, "verification refused", "user_id", e.UserID, "action", e.Action, "result", e.Result, "client_ip", clientOf(ctx, c).IP)
	}
	if err := s.record(ctx, e, c); err != nil {
		return err
	}
	if att.LockedUntil.IsZero() {
		return nil
	}
	s.log(ctx, slog.LevelWarn, "user locked: too many failed attempts", "user_id", e.UserID,
		"locked_until", att.LockedUntil, "client_ip", clientOf(ctx, c).IP, "actor", OriginFrom(ctx).Actor)
	return s.record(ctx, Event{UserID: e.UserID, Time: e.Time, Action: ActionUserLocked,
		Reason: "too many failed attempts: locked until " + att.LockedUntil.UTC().Format(time.RFC3339)}, c)
}

var dummySecret [totp.SecretSize]byte

// match unseals a TOTP factor and looks for code around now.
func (s *Service) match(userID string, f Factor, code string, now time.Time) (int64, bool, error) {
	key, err := s.o.Ring.Open(f.TOTP.KeyID, f.TOTP.Sealed, totpAAD(userID, f.ID))
	if err != nil {
		return 0, false, fmt.Errorf("totp factor %s of %q: %w", f.ID, userID, err)
	}
	p := totp.Params{Algorithm: totp.Algorithm(f.TOTP.Algorithm), Digits: f.TOTP.Digits, Period: time.Duration(f.TOTP.Period) * time.Second}
	if len(code) != p.Digits {
		return 0, false, nil
	}
	step, ok := totp.Match(key, p, code, now, skew)
	return step, ok, nil
}

// totpAAD binds a sealed TOTP secret to its user and factor.
func totpAAD(userID, factorID string) []byte {
	return []byte("totp\x00" + userID + "\x00" + factorID)
}
