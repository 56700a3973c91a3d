package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// getEpoch returns a user's epoch (mfa.Store), 0 for a user never reset.
func getEpoch(tx *bolt.Tx, userID string) uint64 {
	v := tx.Bucket(epochsBucket).Get([]byte(userID))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// bumpEpoch increments a user's epoch.
func bumpEpoch(tx *bolt.Tx, userID string) error {
	return tx.Bucket(epochsBucket).Put([]byte(userID), binary.BigEndian.AppendUint64(nil, getEpoch(tx, userID)+1))
}

// freeCredential deletes the reservation of a removed WebAuthn factor's
// credential ID, so that it may be registered again.
func freeCredential(tx *bolt.Tx, userID string, f mfa.Factor) error {
	if f.WebAuthn == nil {
		return nil
	}
	creds := tx.Bucket(credentialsBucket)
	if string(creds.Get(f.WebAuthn.CredentialID)) != userID {
		return nil
	}
	return creds.Delete(f.WebAuthn.CredentialID)
}

// ResetUser implements mfa.Store. The user's record goes; enrolment
// sessions and challenges stay until they expire, ended by the new epoch.
func (s *Store) ResetUser(ctx context.Context, userID string, _ time.Time) (removed int, err error) {
	err = s.update(ctx, "reset user", userID, func(tx *bolt.Tx, u *userRec) (bool, error) {
		removed = len(u.Factors)
		for _, f := range u.Factors {
			if err := freeCredential(tx, userID, f); err != nil {
				return false, err
			}
		}
		if err := bumpEpoch(tx, userID); err != nil {
			return false, err
		}
		return false, tx.Bucket(usersBucket).Delete([]byte(userID))
	})
	if err != nil {
		return 0, err
	}
	return removed, nil
}

// DeleteFactor implements mfa.Store. The user's pending factors and last
// verification go too: they belong to the epoch it ends.
func (s *Store) DeleteFactor(ctx context.Context, userID, factorID string, _ time.Time) error {
	var result error
	err := s.update(ctx, "delete factor", userID, func(tx *bolt.Tx, u *userRec) (bool, error) {
		result = nil
		i := u.factor(factorID)
		if i < 0 {
			result = fmt.Errorf("boltstore: delete factor: %w", mfa.ErrNotFound)
			return false, nil
		}
		if err := freeCredential(tx, userID, u.Factors[i]); err != nil {
			return false, err
		}
		u.Factors = slices.Delete(u.Factors, i, i+1)
		delete(u.Steps, factorID)
		u.Pending = nil
		u.LastVerifiedAt = time.Time{}
		if len(u.Factors) == 0 {
			u.Recovery = nil
		}
		return true, bumpEpoch(tx, userID)
	})
	if err != nil {
		return err
	}
	return result
}

// UnlockUser implements mfa.Store.
func (s *Store) UnlockUser(ctx context.Context, userID string) error {
	return s.update(ctx, "unlock user", userID, func(_ *bolt.Tx, u *userRec) (bool, error) {
		if u.Failures == 0 && u.Lockouts == 0 && u.LockedUntil.IsZero() && u.LastFailure.IsZero() {
			return false, nil
		}
		u.Failures, u.Lockouts, u.LockedUntil, u.LastFailure = 0, 0, time.Time{}, time.Time{}
		return true, nil
	})
}

// SuspendFactor implements mfa.Store.
func (s *Store) SuspendFactor(ctx context.Context, userID, factorID string, at time.Time) error {
	var result error
	err := s.update(ctx, "suspend factor", userID, func(_ *bolt.Tx, u *userRec) (bool, error) {
		result = nil
		i := u.factor(factorID)
		if i < 0 {
			result = fmt.Errorf("boltstore: suspend factor: %w", mfa.ErrNotFound)
			return false, nil
		}
		u.Factors[i].SuspendedAt = at
		return true, nil
	})
	if err != nil {
		return err
	}
	return result
}
