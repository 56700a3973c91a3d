package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// opKey, {u:ID}:op:<nonce>, lets a script with an effect tell a client
// retry of its call from a new call. go-redis sends a command again when
// the connection fails after it was sent (an EOF for a reply, say), so a
// script may run twice for one call: the second run would find its own
// change made and answer as if another call had come first (a sign count
// used, a factor already gone), and AcceptAssertion would then suspend a
// credential for its own count. So each call draws a nonce, and its script,
// when it changes something, records under the nonce's key what it
// answered, for a minute; a run that finds the key answers that and
// changes nothing.
func newNonce() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ResetUser removes the user's factors and their state in one script, which
// increments the epoch; pending factors, sessions and challenges are left
// to expire, ended by the epoch. Then it frees the removed credentials' IDs,
// which lie in other slots: two round trips, one more per credential.
func (s *Store) ResetUser(ctx context.Context, userID string, now time.Time) (int, error) {
	return s.resetUser(ctx, userID, newNonce())
}

// resetUser is ResetUser, the call named by nonce (see opKey).
func (s *Store) resetUser(ctx context.Context, userID, nonce string) (int, error) {
	k := userKeys(userID)
	removed, err := resetUserScript.Run(ctx, s.rdb,
		[]string{k.factors(), k.steps(), k.webauthn(), k.used(), k.suspended(), k.recovery(), k.activation(), k.attempts(), k.verified(), k.epoch(), k.op(nonce)}).Text()
	if err != nil {
		return 0, storeError("reset user", err)
	}
	if removed == "" {
		return 0, nil
	}
	factors := strings.Split(removed, "\n")
	var errs []error
	for _, js := range factors {
		errs = append(errs, s.freeCredential(ctx, userID, js))
	}
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("redisstore: reset user: done, but %w", err)
	}
	return len(factors), nil
}

// DeleteFactor removes one factor in one script, which increments the
// epoch, then frees its credential ID if it is one.
func (s *Store) DeleteFactor(ctx context.Context, userID, factorID string, now time.Time) error {
	return s.deleteFactor(ctx, userID, factorID, newNonce())
}

// deleteFactor is DeleteFactor, the call named by nonce (see opKey).
func (s *Store) deleteFactor(ctx context.Context, userID, factorID, nonce string) error {
	k := userKeys(userID)
	js, err := deleteFactorScript.Run(ctx, s.rdb,
		[]string{k.factors(), k.steps(), k.webauthn(), k.used(), k.suspended(), k.recovery(), k.verified(), k.epoch(), k.op(nonce)},
		factorID).Text()
	if err != nil {
		return storeError("delete factor", err)
	}
	if js == "" {
		return fmt.Errorf("redisstore: delete factor: %w", mfa.ErrNotFound)
	}
	if err := s.freeCredential(ctx, userID, js); err != nil {
		return fmt.Errorf("redisstore: delete factor: done, but %w", err)
	}
	return nil
}

// freeCredential deletes the reservation of the credential ID of a factor
// removed from userID (its JSON), if it is a WebAuthn credential and the
// reservation still holds userID. Not with ctx, which may end just now: the
// factor is gone, and its ID should be free. If this fails, the ID stays
// reserved, unregistrable: a failure fails closed, as ConfirmFactor's
// unknown outcome does.
func (s *Store) freeCredential(ctx context.Context, userID, factorJSON string) error {
	var f mfa.Factor
	if err := json.Unmarshal([]byte(factorJSON), &f); err != nil {
		return fmt.Errorf("removed factor: %w", err)
	}
	if f.WebAuthn == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	err := releaseCredentialScript.Run(rctx, s.rdb, []string{credentialIndex(f.WebAuthn.CredentialID)}, userID).Err()
	if err != nil {
		return storeError("free credential ID of factor "+f.ID, err)
	}
	return nil
}

// UnlockUser deletes the user's attempt counter: one command.
func (s *Store) UnlockUser(ctx context.Context, userID string) error {
	if err := s.rdb.Del(ctx, userKeys(userID).attempts()).Err(); err != nil {
		return storeError("unlock user", err)
	}
	return nil
}

// SuspendFactor sets or lifts a factor's suspension, in one script.
func (s *Store) SuspendFactor(ctx context.Context, userID, factorID string, at time.Time) error {
	ms := ""
	if !at.IsZero() {
		ms = fmt.Sprint(at.UnixMilli())
	}
	k := userKeys(userID)
	n, err := suspendFactorScript.Run(ctx, s.rdb, []string{k.factors(), k.suspended()}, factorID, ms).Int()
	if err != nil {
		return storeError("suspend factor", err)
	}
	return status("suspend factor", n)
}
