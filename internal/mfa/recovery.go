package mfa

import (
	"context"
	"errors"
	"log/slog"

	"github.com/secondfactor/secondfactor/internal/secret"
)

// Recovery codes: RecoveryCodeCount codes of 16 Crockford base32 characters
// (80 bits) in groups of four, easy to read aloud and to type. Only their
// hashes are stored; each works once.
const (
	RecoveryCodeCount  = 10
	recoveryCodeGroups = 4
)

// newRecoveryCodes makes a set of codes and their hashes.
func (s *Service) newRecoveryCodes() ([]secret.String, []string, error) {
	codes := make([]secret.String, RecoveryCodeCount)
	hashes := make([]string, RecoveryCodeCount)
	for i := range codes {
		c, err := secret.NewCode(s.o.Rand, recoveryCodeGroups)
		if err != nil {
			return nil, nil, err
		}
		codes[i] = c
		hashes[i], _, _ = secret.HashCode(c.Reveal())
	}
	return codes, hashes, nil
}

// firstFactorCodes makes recovery codes when a session enrols a user's first
// factor, and none otherwise.
func (s *Service) firstFactorCodes(e Enrollment) ([]secret.String, []string, error) {
	if !e.FirstFactor {
		return nil, nil, nil
	}
	return s.newRecoveryCodes()
}

// RecoveryResult is the answer of VerifyRecoveryCode.
type RecoveryResult struct {
	Result
	Remaining int
	// Bypass: the code accepted was the user's bypass code (bypass.go),
	// not a recovery code.
	Bypass bool
}

// VerifyRecoveryCode consumes one of the user's recovery codes or, if the
// code is none of them, the user's bypass code (IssueBypassCode; then the
// result says Bypass). Attempts count against the same failure lock as
// TOTP: a wrong code is one failure, whichever it was meant to be.
func (s *Service) VerifyRecoveryCode(ctx context.Context, userID, code string, c Client) (RecoveryResult, error) {
	if err := checkUserID(userID); err != nil {
		return RecoveryResult{}, err
	}
	hash, n, ok := secret.HashCode(code)
	if !ok || n != 4*recoveryCodeGroups {
		return RecoveryResult{}, badField("code", "must be %d letters and digits, dashes allowed", 4*recoveryCodeGroups)
	}
	if err := c.check(); err != nil {
		return RecoveryResult{}, err
	}
	now := s.o.Now()
	att, err := s.o.Store.StartAttempt(ctx, userID, now, s.o.Limits)
	if err != nil {
		return RecoveryResult{}, err
	}
	if att.Locked {
		r, err := s.lockedOut(ctx, ActionVerifyRecovery, userID, att, c, now)
		return RecoveryResult{Result: r}, err
	}
	ok, remaining, err := s.o.Store.ConsumeRecoveryCode(ctx, userID, hash, now)
	if err != nil {
		return RecoveryResult{}, err
	}
	e := Event{UserID: userID, Time: now, Action: ActionVerifyRecovery, Result: ResultRejected}
	if !ok {
		bypassed, err := s.tryBypass(ctx, userID, hash, c, now)
		if err != nil {
			return RecoveryResult{}, err
		}
		if bypassed {
			return RecoveryResult{Result: Result{Verdict: Accepted}, Remaining: remaining, Bypass: true}, nil
		}
		if err := s.failed(ctx, e, c, att); err != nil {
			return RecoveryResult{}, err
		}
		return RecoveryResult{Result: Result{Verdict: Rejected}}, nil
	}
	s.log(ctx, slog.LevelWarn, "recovery code used", "user_id", userID, "remaining", remaining, "client_ip", clientOf(ctx, c).IP)
	e.Result = ResultAccepted
	if err := s.record(ctx, e, c); err != nil {
		return RecoveryResult{}, err
	}
	return RecoveryResult{Result: Result{Verdict: Accepted}, Remaining: remaining}, nil
}

// RegenerateRecoveryCodes replaces all of a user's recovery codes. The
// enrolment session must be backed by an existing factor
// (PROOF_EXISTING_FACTOR); it is completed by this call.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, token string) ([]secret.String, error) {
	e, err := s.session(ctx, token, "")
	if err != nil {
		return nil, err
	}
	if e.FirstFactor {
		return nil, refuse(ReasonNeedsExistingFactor, "regenerating recovery codes needs a session created with PROOF_EXISTING_FACTOR")
	}
	codes, hashes, err := s.newRecoveryCodes()
	if err != nil {
		return nil, err
	}
	now := s.o.Now()
	err = s.o.Store.ReplaceRecoveryCodes(ctx, e.TokenHash, e.UserID, hashes, now)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, errNoSession(err)
	case errors.Is(err, ErrConflict):
		return nil, failWith(ErrRefused, ReasonFactorsChanged, err, "the user's factors changed meanwhile: start again")
	case err != nil:
		return nil, err
	}
	s.log(ctx, slog.LevelInfo, "recovery codes regenerated", "user_id", e.UserID)
	ev := Event{UserID: e.UserID, Time: now, Action: ActionRecoveryRegenerated}
	if err := s.record(ctx, ev, Client{}); err != nil {
		return nil, err
	}
	return codes, nil
}
