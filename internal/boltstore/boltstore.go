// Package boltstore is the embedded mfa.Store: one bbolt file, no server to
// run. It is the default for a single node.
//
// Each user is one record (factors, last TOTP steps, attempt counter,
// pending factors, activation code), so every check-and-set of a user is one
// read-modify-write in one transaction. A user's epoch is kept apart, in a
// bucket that Sweep never empties, so that it outlives the record: an epoch
// that went back to 0 would revive what a reset ended. The audit trail
// (audit.go) has a bucket of chains, one of chain heads and two indexes,
// all written in the append's transaction. Every
// verification writes (the TOTP step advance), and one fsync per
// verification would cap throughput at the disk's sync rate. Writes go
// through a group committer (commit.go): concurrent transactions share one
// commit and one fsync, and a lone one does not wait for company.
package boltstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/secret"
)

var (
	usersBucket       = []byte("users")
	enrollmentsBucket = []byte("enrollments")
	credentialsBucket = []byte("credentials") // WebAuthn credential ID → user ID
	challengesBucket  = []byte("challenges")
	epochsBucket      = []byte("epochs") // user ID → epoch, 8 bytes big-endian; never swept
)

// buckets are the top-level buckets, created by Open.
var buckets = [][]byte{
	usersBucket, enrollmentsBucket, credentialsBucket, challengesBucket, epochsBucket,
	auditBucket, auditHeadsBucket, auditTimeBucket, auditUserBucket,
}

// Store is an mfa.Store in a bbolt file.
type Store struct {
	db *bolt.DB
	w  *committer
}

var _ mfa.Store = (*Store)(nil)

// Open opens or creates the store file at path. It fails at once if another
// process holds the file.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("boltstore: %s is in use by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("boltstore: create buckets: %w", err), db.Close())
	}
	return &Store{db: db, w: newCommitter(db)}, nil
}

// Close closes the file.
func (s *Store) Close() error {
	s.w.close()
	return s.db.Close()
}

// userRec is everything the store keeps of one user.
type userRec struct {
	Factors        []mfa.Factor          `json:"factors,omitempty"`
	Steps          map[string]int64      `json:"steps,omitempty"`
	Failures       int                   `json:"failures,omitempty"`
	LastFailure    time.Time             `json:"last_failure,omitzero"`
	LockedUntil    time.Time             `json:"locked_until,omitzero"`
	Lockouts       int                   `json:"lockouts,omitempty"`
	LastVerifiedAt time.Time             `json:"last_verified,omitzero"`
	Pending        map[string]pendingRec `json:"pending,omitempty"`
	Activation     *activationRec        `json:"activation,omitempty"`
	Recovery       []string              `json:"recovery,omitempty"` // hashes of recovery codes
}

type pendingRec struct {
	Factor    mfa.Factor `json:"factor"`
	ExpiresAt time.Time  `json:"expires_at"`
}

type activationRec struct {
	Hash      string    `json:"hash"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (u *userRec) factor(id string) int {
	return slices.IndexFunc(u.Factors, func(f mfa.Factor) bool { return f.ID == id })
}

// pending returns the user's pending factor id, if it has not expired at now.
func (u *userRec) pending(id string, now time.Time) (mfa.Factor, bool) {
	p, ok := u.Pending[id]
	if !ok || !now.Before(p.ExpiresAt) {
		return mfa.Factor{}, false
	}
	return p.Factor, true
}

// dropExpired deletes the pending factors and the activation code that have
// expired at now, and reports whether it deleted any.
func (u *userRec) dropExpired(now time.Time) (changed bool) {
	for id, p := range u.Pending {
		if !now.Before(p.ExpiresAt) {
			delete(u.Pending, id)
			changed = true
		}
	}
	if u.Activation != nil && !now.Before(u.Activation.ExpiresAt) {
		u.Activation = nil
		changed = true
	}
	return changed
}

// succeeded records a verification at now: failures and lock are reset.
func (u *userRec) succeeded(now time.Time) {
	u.Failures, u.Lockouts, u.LockedUntil, u.LastFailure = 0, 0, time.Time{}, time.Time{}
	u.LastVerifiedAt = now
}

// forgotten reports whether the counted attempts are forgotten at now: the
// last was lim.FailureTTL or more before (mfa.Store.StartAttempt).
func (u *userRec) forgotten(now time.Time, failureTTL time.Duration) bool {
	return now.Sub(u.LastFailure) >= failureTTL
}

// empty reports whether the record holds nothing worth keeping at now.
func (u *userRec) empty(now time.Time, failureTTL time.Duration) bool {
	return len(u.Factors) == 0 && len(u.Pending) == 0 && u.Activation == nil && len(u.Recovery) == 0 &&
		!now.Before(u.LockedUntil) && (u.Failures == 0 || u.forgotten(now, failureTTL))
}

func getUser(tx *bolt.Tx, id string) (*userRec, error) {
	u := &userRec{}
	if b := tx.Bucket(usersBucket).Get([]byte(id)); b != nil {
		if err := json.Unmarshal(b, u); err != nil {
			return nil, fmt.Errorf("user record %q: %w", id, err)
		}
	}
	// Factors are kept in the order they were confirmed.
	slices.SortStableFunc(u.Factors, olderFactor)
	return u, nil
}

// olderFactor orders factors as mfa.User.Factors: by CreatedAt, then by ID.
func olderFactor(a, b mfa.Factor) int {
	return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
}

// recoverySet returns hashes without repeats, in their order: recovery
// codes are a set.
func recoverySet(hashes []string) []string {
	var set []string
	seen := make(map[string]bool, len(hashes))
	for _, h := range hashes {
		if !seen[h] {
			seen[h] = true
			set = append(set, h)
		}
	}
	return set
}

// checkLimits refuses the limits that mfa.Store.StartAttempt does not allow.
func checkLimits(lim mfa.Limits) error {
	if err := lim.Validate(); err != nil {
		return fmt.Errorf("invalid limits: %w", err)
	}
	return nil
}

// errPendingWebAuthn refuses to confirm a pending WebAuthn factor, whose
// credential ID would escape the check that it is free.
var errPendingWebAuthn = errors.New("a pending WebAuthn factor cannot be confirmed: give the factor in Confirmation.Factor")

func putUser(tx *bolt.Tx, id string, u *userRec) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return tx.Bucket(usersBucket).Put([]byte(id), b)
}

// update runs fn on a user's record in a group-committed transaction and writes the
// record back if fn reports a change. fn may run more than once (group
// commit retries), so it must only touch the record and its own results.
func (s *Store) update(ctx context.Context, op, userID string, fn func(tx *bolt.Tx, u *userRec) (changed bool, err error)) error {
	err := s.w.write(ctx, func(tx *bolt.Tx) error {
		u, err := getUser(tx, userID)
		if err != nil {
			return err
		}
		changed, err := fn(tx, u)
		if err != nil || !changed {
			return err
		}
		return putUser(tx, userID, u)
	})
	if err != nil {
		return fmt.Errorf("boltstore: %s: %w", op, err)
	}
	return nil
}

// view runs fn in a read transaction, unless ctx is done.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// User implements mfa.Store.
func (s *Store) User(ctx context.Context, userID string) (mfa.User, error) {
	out := mfa.User{ID: userID}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		u, err := getUser(tx, userID)
		if err != nil {
			return err
		}
		out.Factors, out.LockedUntil, out.LastVerifiedAt = u.Factors, u.LockedUntil, u.LastVerifiedAt
		out.RecoveryCodes = len(u.Recovery)
		out.Epoch = getEpoch(tx, userID)
		return nil
	})
	if err != nil {
		return mfa.User{}, fmt.Errorf("boltstore: user: %w", err)
	}
	return out, nil
}

// StartAttempt implements mfa.Store.
func (s *Store) StartAttempt(ctx context.Context, userID string, now time.Time, lim mfa.Limits) (mfa.Attempt, error) {
	if err := checkLimits(lim); err != nil {
		return mfa.Attempt{}, fmt.Errorf("boltstore: start attempt: %w", err)
	}
	var a mfa.Attempt
	err := s.update(ctx, "start attempt", userID, func(tx *bolt.Tx, u *userRec) (bool, error) {
		a = mfa.Attempt{Epoch: getEpoch(tx, userID)}
		if now.Before(u.LockedUntil) {
			a.Locked, a.LockedUntil = true, u.LockedUntil
			return false, nil
		}
		if u.Failures > 0 && u.forgotten(now, lim.FailureTTL) {
			u.Failures, u.Lockouts = 0, 0
		}
		u.Failures++
		u.LastFailure = now
		u.LockedUntil = time.Time{}
		if u.Failures >= lim.MaxFailures {
			u.LockedUntil = now.Add(lim.Backoff(u.Lockouts))
			u.Lockouts++
		}
		a.Factors, a.LockedUntil = u.Factors, u.LockedUntil
		return true, nil
	})
	return a, err
}

// AcceptTOTPStep implements mfa.Store.
func (s *Store) AcceptTOTPStep(ctx context.Context, userID, factorID string, step int64, epoch uint64, now time.Time) (bool, error) {
	if step < 0 || step > mfa.MaxStep {
		return false, fmt.Errorf("boltstore: accept totp step: step %d out of range", step)
	}
	var accepted bool
	err := s.update(ctx, "accept totp step", userID, func(tx *bolt.Tx, u *userRec) (bool, error) {
		accepted = false
		i := u.factor(factorID)
		if i < 0 || !u.Factors[i].SuspendedAt.IsZero() || getEpoch(tx, userID) != epoch {
			return false, nil
		}
		// Every TOTP factor has a last step from its confirmation, and no
		// other factor has one.
		if last, ok := u.Steps[factorID]; !ok || step <= last {
			return false, nil
		}
		u.Steps[factorID] = step
		u.succeeded(now)
		u.Factors[i].LastUsedAt = now
		accepted = true
		return true, nil
	})
	return accepted, err
}

// CreateEnrollment implements mfa.Store.
func (s *Store) CreateEnrollment(ctx context.Context, e mfa.Enrollment) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("boltstore: create enrollment: %w", err)
	}
	err = s.w.write(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(enrollmentsBucket).Put([]byte(e.TokenHash), b)
	})
	if err != nil {
		return fmt.Errorf("boltstore: create enrollment: %w", err)
	}
	return nil
}

func getEnrollment(tx *bolt.Tx, tokenHash string, now time.Time) (mfa.Enrollment, error) {
	b := tx.Bucket(enrollmentsBucket).Get([]byte(tokenHash))
	if b == nil {
		return mfa.Enrollment{}, mfa.ErrNotFound
	}
	var e mfa.Enrollment
	if err := json.Unmarshal(b, &e); err != nil {
		return mfa.Enrollment{}, fmt.Errorf("enrollment record: %w", err)
	}
	// A session of an earlier epoch was ended by a reset or a delete.
	if !now.Before(e.ExpiresAt) || e.Epoch != getEpoch(tx, e.UserID) {
		return mfa.Enrollment{}, mfa.ErrNotFound
	}
	e.TokenHash = tokenHash
	return e, nil
}

// userEnrollment is getEnrollment for the session of one user: another
// user's session is mfa.ErrNotFound too.
func userEnrollment(tx *bolt.Tx, tokenHash, userID string, now time.Time) (mfa.Enrollment, error) {
	e, err := getEnrollment(tx, tokenHash, now)
	if err == nil && e.UserID != userID {
		return mfa.Enrollment{}, mfa.ErrNotFound
	}
	return e, err
}

// Enrollment implements mfa.Store.
func (s *Store) Enrollment(ctx context.Context, tokenHash string, now time.Time) (mfa.Enrollment, error) {
	var e mfa.Enrollment
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		e, err = getEnrollment(tx, tokenHash, now)
		return err
	})
	if err != nil {
		return mfa.Enrollment{}, fmt.Errorf("boltstore: enrollment: %w", err)
	}
	return e, nil
}

// PutActivationCode implements mfa.Store.
func (s *Store) PutActivationCode(ctx context.Context, userID, codeHash string, expiresAt time.Time) error {
	return s.update(ctx, "put activation code", userID, func(_ *bolt.Tx, u *userRec) (bool, error) {
		u.Activation = &activationRec{Hash: codeHash, ExpiresAt: expiresAt}
		return true, nil
	})
}

// ActivateEnrollment implements mfa.Store.
func (s *Store) ActivateEnrollment(ctx context.Context, tokenHash, userID, codeHash string, now time.Time) error {
	// Outcomes are returned through result, not as the batch function's
	// error: an error makes the group commit roll back and rerun its group.
	var result error
	err := s.update(ctx, "activate enrollment", userID, func(tx *bolt.Tx, u *userRec) (bool, error) {
		result = nil
		e, err := userEnrollment(tx, tokenHash, userID, now)
		if errors.Is(err, mfa.ErrNotFound) {
			result = mfa.ErrNotFound
			return false, nil
		}
		if err != nil {
			return false, err
		}
		a := u.Activation
		if a == nil || !now.Before(a.ExpiresAt) || !secret.Equal(a.Hash, codeHash) {
			result = mfa.ErrWrongCode
			return false, nil
		}
		u.Activation = nil
		e.Activated = true
		b, err := json.Marshal(e)
		if err != nil {
			return false, err
		}
		return true, tx.Bucket(enrollmentsBucket).Put([]byte(tokenHash), b)
	})
	if err != nil {
		return err
	}
	return result
}

// PutPendingFactor implements mfa.Store.
func (s *Store) PutPendingFactor(ctx context.Context, userID string, f mfa.Factor, expiresAt time.Time) error {
	return s.update(ctx, "put pending factor", userID, func(_ *bolt.Tx, u *userRec) (bool, error) {
		if u.Pending == nil {
			u.Pending = map[string]pendingRec{}
		}
		u.Pending[f.ID] = pendingRec{Factor: f, ExpiresAt: expiresAt}
		return true, nil
	})
}

// PendingFactor implements mfa.Store.
func (s *Store) PendingFactor(ctx context.Context, userID, factorID string, now time.Time) (mfa.Factor, error) {
	var f mfa.Factor
	err := s.view(ctx, func(tx *bolt.Tx) error {
		u, err := getUser(tx, userID)
		if err != nil {
			return err
		}
		p, ok := u.pending(factorID, now)
		if !ok {
			return mfa.ErrNotFound
		}
		f = p
		return nil
	})
	if err != nil {
		return mfa.Factor{}, fmt.Errorf("boltstore: pending factor: %w", err)
	}
	return f, nil
}

// ConfirmFactor implements mfa.Store. Its checks and its changes are one
// transaction: confirmable, then confirm.
func (s *Store) ConfirmFactor(ctx context.Context, c mfa.Confirmation) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("boltstore: confirm factor: %w", err)
	}
	// A refusal is returned through result, not as the batch function's
	// error: an error makes the group commit roll back and rerun its group.
	var result error
	err := s.update(ctx, "confirm factor", c.UserID, func(tx *bolt.Tx, u *userRec) (bool, error) {
		f, refusal, err := confirmable(tx, u, c)
		result = refusal
		if err != nil || refusal != nil {
			return false, err
		}
		return true, confirm(tx, u, c, f)
	})
	if err != nil {
		return err
	}
	if result != nil {
		return fmt.Errorf("boltstore: confirm factor: %w", result)
	}
	return nil
}

// confirmable checks in tx that c may confirm a factor of u, which is u's
// record in tx, and returns the factor: c.Factor or the pending factor
// c.FactorID. If c may not, it returns the refusal that
// mfa.Store.ConfirmFactor documents; err is a failure of the transaction.
func confirmable(tx *bolt.Tx, u *userRec, c mfa.Confirmation) (f *mfa.Factor, refusal, err error) {
	if w := c.Factor; w != nil && w.WebAuthn != nil && tx.Bucket(credentialsBucket).Get(w.WebAuthn.CredentialID) != nil {
		return nil, mfa.ErrDuplicate, nil
	}
	e, err := userEnrollment(tx, c.TokenHash, c.UserID, c.Now)
	if errors.Is(err, mfa.ErrNotFound) {
		return nil, fmt.Errorf("enrolment session: %w", mfa.ErrNotFound), nil
	}
	if err != nil {
		return nil, nil, err
	}
	f = c.Factor
	if f == nil {
		if p, ok := u.pending(c.FactorID, c.Now); ok {
			f = &p
		}
	}
	if refusal := refuseConfirmation(c, e, u, f); refusal != nil {
		return nil, refusal, nil
	}
	return f, nil, nil
}

// refuseConfirmation returns why c may not confirm f (nil if there is no
// such factor) with session e for the user u, or nil if it may.
func refuseConfirmation(c mfa.Confirmation, e mfa.Enrollment, u *userRec, f *mfa.Factor) error {
	switch {
	case !e.Usable():
		return fmt.Errorf("enrolment session not activated: %w", mfa.ErrConflict)
	case f == nil:
		return fmt.Errorf("pending factor: %w", mfa.ErrNotFound)
	case c.Factor == nil && (f.Kind == mfa.KindWebAuthn || f.WebAuthn != nil):
		return errPendingWebAuthn
	case (c.FirstFactor || e.FirstFactor) && len(u.Factors) > 0:
		return fmt.Errorf("user already has a factor: %w", mfa.ErrConflict)
	}
	return nil
}

// confirm adds f, which confirmable returned, to u with its TOTP step and
// its credential ID, replaces u's recovery codes if c gives any, and
// deletes the enrolment session, all in tx.
func confirm(tx *bolt.Tx, u *userRec, c mfa.Confirmation, f *mfa.Factor) error {
	delete(u.Pending, f.ID)
	u.Factors = append(u.Factors, *f)
	if f.Kind == mfa.KindTOTP {
		if u.Steps == nil {
			u.Steps = map[string]int64{}
		}
		u.Steps[f.ID] = c.Step
	}
	if f.WebAuthn != nil {
		if err := tx.Bucket(credentialsBucket).Put(f.WebAuthn.CredentialID, []byte(c.UserID)); err != nil {
			return err
		}
	}
	if len(c.RecoveryHashes) > 0 {
		u.Recovery = recoverySet(c.RecoveryHashes)
	}
	return tx.Bucket(enrollmentsBucket).Delete([]byte(c.TokenHash))
}

type challengeRec struct {
	mfa.Challenge
	ExpiresAt time.Time `json:"expires_at"`
}

// PutChallenge implements mfa.Store.
func (s *Store) PutChallenge(ctx context.Context, id string, c mfa.Challenge, expiresAt time.Time) error {
	b, err := json.Marshal(challengeRec{Challenge: c, ExpiresAt: expiresAt})
	if err == nil {
		err = s.w.write(ctx, func(tx *bolt.Tx) error { return tx.Bucket(challengesBucket).Put([]byte(id), b) })
	}
	if err != nil {
		return fmt.Errorf("boltstore: put challenge: %w", err)
	}
	return nil
}

// TakeChallenge implements mfa.Store.
func (s *Store) TakeChallenge(ctx context.Context, id string, now time.Time) (mfa.Challenge, error) {
	var rec *challengeRec
	err := s.w.write(ctx, func(tx *bolt.Tx) error {
		rec = nil
		b := tx.Bucket(challengesBucket)
		v := b.Get([]byte(id))
		if v == nil {
			return nil
		}
		var r challengeRec
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("challenge record: %w", err)
		}
		rec = &r
		return b.Delete([]byte(id))
	})
	if err != nil {
		return mfa.Challenge{}, fmt.Errorf("boltstore: take challenge: %w", err)
	}
	if rec == nil || !now.Before(rec.ExpiresAt) {
		return mfa.Challenge{}, fmt.Errorf("boltstore: take challenge: %w", mfa.ErrNotFound)
	}
	return rec.Challenge, nil
}

// AcceptAssertion implements mfa.Store.
func (s *Store) AcceptAssertion(ctx context.Context, userID, factorID string, use mfa.AssertionUse, epoch uint64, now time.Time) (mfa.AssertionOutcome, error) {
	var outcome mfa.AssertionOutcome
	err := s.update(ctx, "accept assertion", userID, func(tx *bolt.Tx, u *userRec) (bool, error) {
		outcome = mfa.AssertionRefused
		i := u.factor(factorID)
		if i < 0 || u.Factors[i].WebAuthn == nil || !u.Factors[i].SuspendedAt.IsZero() || getEpoch(tx, userID) != epoch {
			return false, nil
		}
		w := u.Factors[i].WebAuthn
		if use.SignCount <= w.SignCount && (use.SignCount != 0 || w.SignCount != 0) {
			// A cloned authenticator or a replay: suspended until an
			// administrator acts.
			u.Factors[i].SuspendedAt = now
			outcome = mfa.AssertionCloned
			return true, nil
		}
		w.SignCount, w.BackupState, w.UserVerified = use.SignCount, use.BackupState, use.UserVerified
		u.Factors[i].LastUsedAt = now
		u.succeeded(now)
		outcome = mfa.AssertionAccepted
		return true, nil
	})
	return outcome, err
}

// ConsumeRecoveryCode implements mfa.Store.
func (s *Store) ConsumeRecoveryCode(ctx context.Context, userID, codeHash string, now time.Time) (ok bool, remaining int, err error) {
	err = s.update(ctx, "consume recovery code", userID, func(_ *bolt.Tx, u *userRec) (bool, error) {
		ok, remaining = false, len(u.Recovery)
		i := slices.IndexFunc(u.Recovery, func(h string) bool { return secret.Equal(h, codeHash) })
		if i < 0 {
			return false, nil
		}
		u.Recovery = slices.Delete(u.Recovery, i, i+1)
		u.succeeded(now)
		ok, remaining = true, len(u.Recovery)
		return true, nil
	})
	return ok, remaining, err
}

// ReplaceRecoveryCodes implements mfa.Store.
func (s *Store) ReplaceRecoveryCodes(ctx context.Context, tokenHash, userID string, hashes []string, now time.Time) error {
	if len(hashes) > mfa.MaxRecoveryHashes {
		return fmt.Errorf("boltstore: replace recovery codes: %d codes, at most %d", len(hashes), mfa.MaxRecoveryHashes)
	}
	var result error
	err := s.update(ctx, "replace recovery codes", userID, func(tx *bolt.Tx, u *userRec) (bool, error) {
		result = nil
		e, err := userEnrollment(tx, tokenHash, userID, now)
		if errors.Is(err, mfa.ErrNotFound) {
			result = fmt.Errorf("enrolment session: %w", mfa.ErrNotFound)
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !e.Usable() || e.FirstFactor || len(u.Factors) == 0 {
			result = fmt.Errorf("enrolment session cannot replace recovery codes: %w", mfa.ErrConflict)
			return false, nil
		}
		u.Recovery = recoverySet(hashes)
		return true, tx.Bucket(enrollmentsBucket).Delete([]byte(tokenHash))
	})
	if err != nil {
		return err
	}
	return result
}

// Sweep deletes what has expired at now: enrolment sessions, pending
// factors, activation codes, and user records left with nothing but
// forgotten failures. The server runs it periodically; expired records are
// already invisible to every other method.
func (s *Store) Sweep(now time.Time, failureTTL time.Duration) (deleted int, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		sessions, err := sweepBucket(tx.Bucket(enrollmentsBucket), func(v []byte) bool {
			var e mfa.Enrollment
			return json.Unmarshal(v, &e) != nil || !now.Before(e.ExpiresAt)
		})
		if err != nil {
			return err
		}
		challenges, err := sweepBucket(tx.Bucket(challengesBucket), func(v []byte) bool {
			var c challengeRec
			return json.Unmarshal(v, &c) != nil || !now.Before(c.ExpiresAt)
		})
		if err != nil {
			return err
		}
		users, err := sweepUsers(tx.Bucket(usersBucket), now, failureTTL)
		if err != nil {
			return err
		}
		deleted = sessions + challenges + users
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: sweep: %w", err)
	}
	return deleted, nil
}

// sweepBucket deletes the records of b whose value is expired, and returns
// how many it deleted.
func sweepBucket(b *bolt.Bucket, expired func(v []byte) bool) (deleted int, err error) {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if expired(v) {
			if err := c.Delete(); err != nil {
				return deleted, err
			}
			deleted++
		}
	}
	return deleted, nil
}

// sweepUsers deletes from the user records of b the pending factors and
// activation codes expired at now, and deletes the records left empty. It
// returns how many records it deleted.
func sweepUsers(b *bolt.Bucket, now time.Time, failureTTL time.Duration) (deleted int, err error) {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var u userRec
		if err := json.Unmarshal(v, &u); err != nil {
			return deleted, fmt.Errorf("user record %q: %w", k, err)
		}
		changed := u.dropExpired(now)
		switch {
		case u.empty(now, failureTTL):
			if err := c.Delete(); err != nil {
				return deleted, err
			}
			deleted++
		case changed:
			rec, err := json.Marshal(&u)
			if err != nil {
				return deleted, err
			}
			// Put during iteration is allowed for the current key.
			if err := b.Put(k, rec); err != nil {
				return deleted, err
			}
		}
	}
	return deleted, nil
}
