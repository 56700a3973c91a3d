package mfa

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/secondfactor/secondfactor/internal/secret"
)

// The administrators' flows. Each change needs a reason, is logged with the
// caller and request id of ctx's Origin and leaves an audit event. None
// reads or sets a secret, but IssueActivationCode returns the code it makes.

// checkAdmin checks the arguments every administrator's change has.
func checkAdmin(userID, reason string) error {
	if err := checkUserID(userID); err != nil {
		return err
	}
	return checkText("reason", reason, MaxReason, true)
}

// adminChange records an administrator's change made at now: a log line
// and an audit event.
func (s *Service) adminChange(ctx context.Context, e Event, msg string, args ...any) error {
	args = append(args, "user_id", e.UserID, "actor", OriginFrom(ctx).Actor, "reason", e.Reason)
	if e.FactorID != "" {
		args = append(args, "factor_id", e.FactorID)
	}
	s.log(ctx, slog.LevelWarn, msg, args...)
	return s.record(ctx, e, Client{})
}

// ResetUser removes all of a user's factors, pending factors, recovery
// codes, activation code and failed attempts, and ends every session,
// challenge and verification begun before, in one step (Store.ResetUser).
// It returns how many confirmed factors it removed. A user with nothing to
// remove is reset too.
func (s *Service) ResetUser(ctx context.Context, userID, reason string) (removed int, err error) {
	if err := checkAdmin(userID, reason); err != nil {
		return 0, err
	}
	now := s.o.Now()
	removed, err = s.o.Store.ResetUser(ctx, userID, now)
	if err != nil {
		return 0, err
	}
	e := Event{UserID: userID, Time: now, Action: ActionUserReset, Reason: reason}
	if err := s.adminChange(ctx, e, "user reset: every factor removed", "removed", removed); err != nil {
		return 0, err
	}
	return removed, nil
}

// DeleteFactor removes one of a user's confirmed factors and ends every
// session, challenge and verification of the user begun before
// (Store.DeleteFactor). Removing the last factor removes the recovery codes
// too.
func (s *Service) DeleteFactor(ctx context.Context, userID, factorID, reason string) error {
	if err := checkAdmin(userID, reason); err != nil {
		return err
	}
	if err := checkFactorID(factorID); err != nil {
		return err
	}
	now := s.o.Now()
	if err := s.o.Store.DeleteFactor(ctx, userID, factorID, now); err != nil {
		return factorError(err)
	}
	e := Event{UserID: userID, Time: now, Action: ActionFactorRemoved, FactorID: factorID, Reason: reason}
	return s.adminChange(ctx, e, "factor removed")
}

// UnlockUser lifts a user's failed-attempt lock and forgets the failures
// counted, as a success would. A user who is not locked is unlocked too:
// the failures counted so far are forgotten.
func (s *Service) UnlockUser(ctx context.Context, userID, reason string) error {
	if err := checkAdmin(userID, reason); err != nil {
		return err
	}
	if err := s.o.Store.UnlockUser(ctx, userID); err != nil {
		return err
	}
	e := Event{UserID: userID, Time: s.o.Now(), Action: ActionUserUnlocked, Reason: reason}
	return s.adminChange(ctx, e, "user unlocked")
}

// EnableFactor lifts the suspension of a user's factor (a security key
// whose sign count went backwards), so that it verifies again. A factor
// that is not suspended is refused (ReasonFactorNotSuspended).
func (s *Service) EnableFactor(ctx context.Context, userID, factorID, reason string) error {
	if err := checkAdmin(userID, reason); err != nil {
		return err
	}
	if err := checkFactorID(factorID); err != nil {
		return err
	}
	u, err := s.o.Store.User(ctx, userID)
	if err != nil {
		return err
	}
	i := factorIndex(u.Factors, factorID)
	switch {
	case i < 0:
		return errFactorNotFound(nil)
	case u.Factors[i].SuspendedAt.IsZero():
		return refuse(ReasonFactorNotSuspended, "the factor is not suspended: there is nothing to enable")
	}
	if err := s.o.Store.SuspendFactor(ctx, userID, factorID, time.Time{}); err != nil {
		return factorError(err)
	}
	e := Event{UserID: userID, Time: s.o.Now(), Action: ActionFactorEnabled, FactorID: factorID, Reason: reason}
	return s.adminChange(ctx, e, "factor enabled: suspension lifted", "suspended_at", u.Factors[i].SuspendedAt)
}

// IssueActivationCode makes a user's activation code and returns it, the
// only time it is seen; the store keeps its hash, replacing any previous
// code. The administrator is the Actor of ctx's Origin.
func (s *Service) IssueActivationCode(ctx context.Context, userID, reason string) (secret.String, time.Time, error) {
	if err := checkAdmin(userID, reason); err != nil {
		return "", time.Time{}, err
	}
	code, err := secret.NewCode(s.o.Rand, 3)
	if err != nil {
		return "", time.Time{}, err
	}
	hash, _, _ := secret.HashCode(code.Reveal())
	now := s.o.Now()
	expires := now.Add(s.o.ActivationTTL)
	if err := s.o.Store.PutActivationCode(ctx, userID, hash, expires); err != nil {
		return "", time.Time{}, err
	}
	e := Event{UserID: userID, Time: now, Action: ActionActivationIssued, Reason: reason}
	if err := s.adminChange(ctx, e, "activation code issued", "expires_at", expires); err != nil {
		return "", time.Time{}, err
	}
	return code, expires, nil
}

// factorIndex returns the index of the factor id in fs, -1 if none.
func factorIndex(fs []Factor, id string) int {
	for i := range fs {
		if fs[i].ID == id {
			return i
		}
	}
	return -1
}

// factorError translates a store's ErrNotFound about a user's factor.
func factorError(err error) error {
	if errors.Is(err, ErrNotFound) {
		return errFactorNotFound(err)
	}
	return err
}

func errFactorNotFound(cause error) error {
	return failWith(ErrNotFound, ReasonFactorNotFound, cause, "the user has no factor with this id")
}
