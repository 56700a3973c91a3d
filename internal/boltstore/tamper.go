package boltstore

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// This file exists for tests of audit chain verification (package mfa, the
// CLI's audit verify): it changes a stored event behind the append-only
// rule, as someone who can write the store's file could. Nothing in the
// service calls it, so the linker leaves it out of the binaries.

// TamperEvent rewrites the stored event seq of userID's audit chain with
// edit, in place: its hash and the indexes are left as they were, as a
// forger would. ErrNotFound if there is no such event.
func TamperEvent(ctx context.Context, s *Store, userID string, seq uint64, edit func(*mfa.Event)) error {
	err := s.w.write(ctx, func(tx *bolt.Tx) error {
		e, found, err := getEvent(tx, userID, seq)
		if err != nil || !found {
			return fmt.Errorf("event %d: %w", seq, orNotFound(err))
		}
		edit(&e)
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return tx.Bucket(auditBucket).Put(chainKey(userID, seq), b)
	})
	if err != nil {
		return fmt.Errorf("boltstore: tamper event: %w", err)
	}
	return nil
}

// RemoveEvent deletes the stored event seq of userID's audit chain, and
// nothing else. ErrNotFound if there is no such event.
func RemoveEvent(ctx context.Context, s *Store, userID string, seq uint64) error {
	err := s.w.write(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(auditBucket)
		if b.Get(chainKey(userID, seq)) == nil {
			return fmt.Errorf("event %d: %w", seq, mfa.ErrNotFound)
		}
		return b.Delete(chainKey(userID, seq))
	})
	if err != nil {
		return fmt.Errorf("boltstore: remove event: %w", err)
	}
	return nil
}

// orNotFound is err, or mfa.ErrNotFound if err is nil.
func orNotFound(err error) error {
	if err == nil {
		return mfa.ErrNotFound
	}
	return err
}
