// Package redisstore implements mfa.Store on Redis (standalone, Sentinel or
// Cluster, through a go-redis UniversalClient), for several replicas of the
// service sharing one store.
//
// Every key of a user carries the hash tag {u:<userID>}, so that all of
// them lie in one Cluster slot and each check-and-set runs as one Lua
// script on them:
//
//	{u:ID}:f             hash  factor ID → JSON of a confirmed mfa.Factor
//	{u:ID}:step          hash  factor ID → last accepted TOTP step
//	{u:ID}:wa            hash  factor ID → "count|bs|uv": a WebAuthn credential's
//	                           current sign count, backup state and user
//	                           verification ("1" or "0"); overrides the JSON in f
//	{u:ID}:att           hash  failures, locked_until_ms, lockouts, last_ms (the last counted attempt)
//	{u:ID}:v             string  time of the last accepted verification
//	{u:ID}:used          hash  factor ID → time of its last use
//	{u:ID}:susp          hash  factor ID → time of its suspension (mfa.Factor.SuspendedAt)
//	{u:ID}:epoch         string  the user's epoch (INCR), absent for 0; never expires
//	{u:ID}:op:<nonce>    string  what one call's script did, for a client retry
//	                           of it to find (see opKey); expires after a minute
//	{u:ID}:rc            set   hashes of the unused recovery codes
//	{u:ID}:p:<factorID>  hash  factor (JSON), expires_ms, epoch: a pending factor
//	{u:ID}:act           hash  hash, expires_ms: the activation code
//	{u:ID}:e:<tokenHash> hash  an enrolment session, field by field, with its epoch
//	{u:ID}:bp            hash  the user's bypass codes (see bypass.go)
//	{u:ID}:audit         stream  the user's audit chain: entry <seq>-0, field e = the event's JSON
//	{u:ID}:audit:head    hash  seq, hash, op: the last event appended, and the
//	                           nonce of its call (see opKey)
//	{u:ID}:audit:t       sorted set  the user's events by time (see audit.go)
//	audit:idx            sorted set  every user's events by time (see audit.go)
//	audit:users          sorted set  the users that have a chain
//	e:<tokenHash>        string  user ID: finds a session from its token alone
//	cred:<hex of ID>     string  user ID: reserves a WebAuthn credential ID
//	bp:<ID>, bypass:idx  a bypass's user, and every bypass by time (see bypass.go)
//	ch:<id>              string  JSON of an mfa.Challenge and its expires_ms
//
// The keys without a user's hash tag lie in slots of their own: a script of
// the user cannot touch them on Cluster. A challenge needs none (GETDEL takes
// it atomically). The credential index is written before the user's script,
// as ConfirmFactor explains, and freed after the script that removes a
// credential (ResetUser, DeleteFactor). The audit indexes are written
// before the append, as AppendEvent explains. A user's epoch is read and
// compared inside the scripts that complete what was begun under one.
//
// Times are unix milliseconds of the callers' clock (the now arguments), so
// times are kept to the millisecond. Records that expire carry their expiry
// and every read compares it with the caller's now; Redis key expiry only
// reclaims memory.
//
// Every error of a Redis call goes through storeError, the one place that
// tells an unreachable Redis (mfa.ErrUnavailable) from other failures.
package redisstore

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// Store is an mfa.Store on Redis. It is safe for concurrent use.
type Store struct {
	rdb   redis.UniversalClient
	heads *headCache
}

var _ mfa.Store = (*Store)(nil)

// New returns a Store on rdb. The caller keeps ownership of rdb and closes it.
func New(rdb redis.UniversalClient) *Store {
	return &Store{rdb: rdb, heads: newHeadCache(maxCachedHeads)}
}

// keys names the keys of one user.
type keys string

func userKeys(userID string) keys { return keys("{u:" + userID + "}:") }

func (k keys) factors() string                 { return string(k) + "f" }
func (k keys) steps() string                   { return string(k) + "step" }
func (k keys) webauthn() string                { return string(k) + "wa" }
func (k keys) recovery() string                { return string(k) + "rc" }
func (k keys) attempts() string                { return string(k) + "att" }
func (k keys) verified() string                { return string(k) + "v" }
func (k keys) used() string                    { return string(k) + "used" }
func (k keys) pending(factorID string) string  { return string(k) + "p:" + factorID }
func (k keys) activation() string              { return string(k) + "act" }
func (k keys) session(tokenHash string) string { return string(k) + "e:" + tokenHash }
func (k keys) suspended() string               { return string(k) + "susp" }
func (k keys) epoch() string                   { return string(k) + "epoch" }
func (k keys) op(nonce string) string          { return string(k) + "op:" + nonce }

// sessionIndex is the key that maps a token hash to its user. It has no hash
// tag of its user: the token alone must find it.
func sessionIndex(tokenHash string) string { return "e:" + tokenHash }

// credentialIndex is the key that reserves a WebAuthn credential ID for one
// user, across all users.
func credentialIndex(credentialID []byte) string { return "cred:" + hex.EncodeToString(credentialID) }

// challengeKey is the key of a WebAuthn ceremony's challenge.
func challengeKey(id string) string { return "ch:" + id }

// User returns a user's confirmed factors, lock, last verification and
// number of recovery codes, in one round trip.
func (s *Store) User(ctx context.Context, userID string) (mfa.User, error) {
	k := userKeys(userID)
	var (
		factors  *redis.MapStringStringCmd
		used     *redis.MapStringStringCmd
		wa       *redis.MapStringStringCmd
		susp     *redis.MapStringStringCmd
		locked   *redis.StringCmd
		verified *redis.StringCmd
		epoch    *redis.StringCmd
		recovery *redis.IntCmd
	)
	cmds, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		factors = p.HGetAll(ctx, k.factors())
		used = p.HGetAll(ctx, k.used())
		wa = p.HGetAll(ctx, k.webauthn())
		susp = p.HGetAll(ctx, k.suspended())
		epoch = p.Get(ctx, k.epoch())
		locked = p.HGet(ctx, k.attempts(), "locked_until_ms")
		verified = p.Get(ctx, k.verified())
		recovery = p.SCard(ctx, k.recovery())
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return mfa.User{}, storeError("user", err)
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return mfa.User{}, storeError("user", err)
		}
	}
	u := mfa.User{ID: userID, RecoveryCodes: int(recovery.Val())}
	if u.Factors, err = decodeFactors(factors.Val(), used.Val(), wa.Val(), susp.Val()); err != nil {
		return mfa.User{}, fmt.Errorf("redisstore: user: %w", err)
	}
	if u.Epoch, err = parseEpoch(epoch.Val()); err != nil {
		return mfa.User{}, fmt.Errorf("redisstore: user: %w", err)
	}
	if u.LockedUntil, err = optionalTime(locked); err != nil {
		return mfa.User{}, fmt.Errorf("redisstore: user: lock: %w", err)
	}
	if u.LastVerifiedAt, err = optionalTime(verified); err != nil {
		return mfa.User{}, fmt.Errorf("redisstore: user: last verification: %w", err)
	}
	return u, nil
}

// StartAttempt counts one attempt, in one script that also returns the
// user's factors: one round trip.
func (s *Store) StartAttempt(ctx context.Context, userID string, now time.Time, lim mfa.Limits) (mfa.Attempt, error) {
	if err := lim.Validate(); err != nil {
		return mfa.Attempt{}, fmt.Errorf("redisstore: start attempt: invalid limits: %w", err)
	}
	args := []any{now.UnixMilli(), lim.MaxFailures, ceilMilli(lim.FailureTTL)}
	// The lock lengths by number of previous lockouts, up to the first that
	// reaches the maximum: the script takes the last one beyond.
	for n := 0; ; n++ {
		b := lim.Backoff(n)
		args = append(args, ceilMilli(b))
		if b >= lim.MaxLockout || n == 63 {
			break
		}
	}
	k := userKeys(userID)
	res, err := startAttemptScript.Run(ctx, s.rdb,
		[]string{k.attempts(), k.factors(), k.used(), k.webauthn(), k.suspended(), k.epoch()}, args...).Slice()
	if err != nil {
		return mfa.Attempt{}, storeError("start attempt", err)
	}
	a, err := decodeAttempt(res)
	if err != nil {
		return mfa.Attempt{}, fmt.Errorf("redisstore: start attempt: %w", err)
	}
	return a, nil
}

func decodeAttempt(res []any) (mfa.Attempt, error) {
	if len(res) == 3 && res[0] == int64(1) {
		ms, err := strconv.ParseInt(fmt.Sprint(res[1]), 10, 64)
		if err != nil {
			return mfa.Attempt{}, fmt.Errorf("lock: %w", err)
		}
		epoch, err := parseEpoch(fmt.Sprint(res[2]))
		if err != nil {
			return mfa.Attempt{}, err
		}
		return mfa.Attempt{Locked: true, LockedUntil: time.UnixMilli(ms).UTC(), Epoch: epoch}, nil
	}
	if len(res) != 7 || res[0] != int64(0) {
		return mfa.Attempt{}, fmt.Errorf("unexpected script result of %d elements", len(res))
	}
	var hashes [4]map[string]string // f, used, wa, susp
	for i := range hashes {
		var err error
		if hashes[i], err = pairs(res[1+i]); err != nil {
			return mfa.Attempt{}, err
		}
	}
	fs, err := decodeFactors(hashes[0], hashes[1], hashes[2], hashes[3])
	if err != nil {
		return mfa.Attempt{}, err
	}
	epoch, err := parseEpoch(fmt.Sprint(res[5]))
	if err != nil {
		return mfa.Attempt{}, err
	}
	a := mfa.Attempt{Factors: fs, Epoch: epoch}
	ms, err := strconv.ParseInt(fmt.Sprint(res[6]), 10, 64)
	if err != nil {
		return mfa.Attempt{}, fmt.Errorf("lock: %w", err)
	}
	if ms != 0 {
		a.LockedUntil = time.UnixMilli(ms).UTC()
	}
	return a, nil
}

// parseEpoch reads an epoch as the epoch key holds it; "" is 0.
func parseEpoch(v string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("corrupt epoch %q: %w", v, err)
	}
	return n, nil
}

// AcceptTOTPStep advances a factor's last accepted step, in one script.
func (s *Store) AcceptTOTPStep(ctx context.Context, userID, factorID string, step int64, epoch uint64, now time.Time) (bool, error) {
	if step < 0 || step > mfa.MaxStep {
		return false, fmt.Errorf("redisstore: accept totp step: step %d out of range", step)
	}
	return s.acceptTOTPStep(ctx, userID, factorID, step, epoch, now, newNonce())
}

// acceptTOTPStep is AcceptTOTPStep, the call named by nonce (see opKey).
func (s *Store) acceptTOTPStep(ctx context.Context, userID, factorID string, step int64, epoch uint64, now time.Time, nonce string) (bool, error) {
	k := userKeys(userID)
	n, err := acceptTOTPStepScript.Run(ctx, s.rdb,
		[]string{k.factors(), k.steps(), k.attempts(), k.verified(), k.used(), k.suspended(), k.epoch(), k.op(nonce)},
		factorID, step, now.UnixMilli(), epoch).Int()
	if err != nil {
		return false, storeError("accept totp step", err)
	}
	return n == 1, nil
}

// CreateEnrollment stores a session in one MULTI, then its index, which
// lies in another slot: two round trips. A session whose index failed to be
// written is found by nobody and expires.
func (s *Store) CreateEnrollment(ctx context.Context, e mfa.Enrollment) error {
	if e.TokenHash == "" {
		return errors.New("redisstore: create enrollment: empty token hash")
	}
	k := userKeys(e.UserID).session(e.TokenHash)
	keep := keepFor(e.ExpiresAt, e.CreatedAt)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, k)
		p.HSet(ctx, k,
			"user_id", e.UserID,
			"display_name", e.DisplayName,
			"return_url", e.ReturnURL,
			"proof", string(e.Proof),
			"created_ms", e.CreatedAt.UnixMilli(),
			"expires_ms", e.ExpiresAt.UnixMilli(),
			"first_factor", flag(e.FirstFactor),
			"needs_activation", flag(e.NeedsActivation),
			"activated", flag(e.Activated),
			"epoch", e.Epoch,
		)
		p.PExpire(ctx, k, keep)
		return nil
	})
	if err == nil {
		err = s.rdb.Set(ctx, sessionIndex(e.TokenHash), e.UserID, keep).Err()
	}
	if err != nil {
		return storeError("create enrollment", err)
	}
	return nil
}

// Enrollment finds a session: the index gives its user, then the session
// is read under the user's hash tag (two round trips).
func (s *Store) Enrollment(ctx context.Context, tokenHash string, now time.Time) (mfa.Enrollment, error) {
	userID, err := s.rdb.Get(ctx, sessionIndex(tokenHash)).Result()
	if errors.Is(err, redis.Nil) {
		return mfa.Enrollment{}, fmt.Errorf("redisstore: enrollment: %w", mfa.ErrNotFound)
	}
	if err != nil {
		return mfa.Enrollment{}, storeError("enrollment", err)
	}
	k := userKeys(userID)
	var (
		session *redis.MapStringStringCmd
		current *redis.StringCmd
	)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		session = p.HGetAll(ctx, k.session(tokenHash))
		current = p.Get(ctx, k.epoch())
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return mfa.Enrollment{}, storeError("enrollment", err)
	}
	h := session.Val()
	if len(h) == 0 {
		return mfa.Enrollment{}, fmt.Errorf("redisstore: enrollment: %w", mfa.ErrNotFound)
	}
	created, err1 := strconv.ParseInt(h["created_ms"], 10, 64)
	expires, err2 := strconv.ParseInt(h["expires_ms"], 10, 64)
	epoch, err3 := parseEpoch(h["epoch"])
	userEpoch, err4 := parseEpoch(current.Val())
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return mfa.Enrollment{}, fmt.Errorf("redisstore: enrollment: corrupt session: %w", err)
	}
	// A session of an earlier epoch was ended by a reset or a delete.
	if now.UnixMilli() >= expires || epoch != userEpoch {
		return mfa.Enrollment{}, fmt.Errorf("redisstore: enrollment: %w", mfa.ErrNotFound)
	}
	return mfa.Enrollment{
		TokenHash:       tokenHash,
		UserID:          h["user_id"],
		DisplayName:     h["display_name"],
		ReturnURL:       h["return_url"],
		Proof:           mfa.Proof(h["proof"]),
		CreatedAt:       time.UnixMilli(created).UTC(),
		ExpiresAt:       time.UnixMilli(expires).UTC(),
		FirstFactor:     h["first_factor"] == "1",
		NeedsActivation: h["needs_activation"] == "1",
		Activated:       h["activated"] == "1",
		Epoch:           epoch,
	}, nil
}

// PutActivationCode stores a user's activation code hash, replacing any
// previous one.
func (s *Store) PutActivationCode(ctx context.Context, userID, codeHash string, expiresAt time.Time) error {
	k := userKeys(userID).activation()
	// No now argument here: Redis keeps the code by the wall clock, with a
	// floor (see keepFor); ActivateEnrollment checks expiresAt with its now.
	keep := keepFor(expiresAt, time.Time{})
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, k)
		p.HSet(ctx, k, "hash", codeHash, "expires_ms", expiresAt.UnixMilli())
		p.PExpire(ctx, k, keep)
		return nil
	})
	if err != nil {
		return storeError("put activation code", err)
	}
	return nil
}

// ActivateEnrollment consumes the activation code, in one script.
func (s *Store) ActivateEnrollment(ctx context.Context, tokenHash, userID, codeHash string, now time.Time) error {
	k := userKeys(userID)
	n, err := activateEnrollmentScript.Run(ctx, s.rdb,
		[]string{k.session(tokenHash), k.activation(), k.epoch()}, codeHash, now.UnixMilli()).Int()
	if err != nil {
		return storeError("activate enrollment", err)
	}
	return status("activate enrollment", n)
}

// PutPendingFactor stores an unconfirmed factor with the user's epoch, in
// one script: a reset or a delete, which increments the epoch, ends it.
func (s *Store) PutPendingFactor(ctx context.Context, userID string, f mfa.Factor, expiresAt time.Time) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("redisstore: put pending factor: %w", err)
	}
	k := userKeys(userID)
	keep := keepFor(expiresAt, f.CreatedAt)
	err = putPendingFactorScript.Run(ctx, s.rdb, []string{k.pending(f.ID), k.epoch()},
		b, expiresAt.UnixMilli(), keep.Milliseconds()).Err()
	if err != nil {
		return storeError("put pending factor", err)
	}
	return nil
}

// PendingFactor returns an unconfirmed factor of the user's epoch.
func (s *Store) PendingFactor(ctx context.Context, userID, factorID string, now time.Time) (mfa.Factor, error) {
	k := userKeys(userID)
	var (
		pending *redis.SliceCmd
		current *redis.StringCmd
	)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		pending = p.HMGet(ctx, k.pending(factorID), "factor", "expires_ms", "epoch")
		current = p.Get(ctx, k.epoch())
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return mfa.Factor{}, storeError("pending factor", err)
	}
	v := pending.Val()
	js, ok1 := v[0].(string)
	exp, ok2 := v[1].(string)
	epoch, _ := v[2].(string)
	if !ok1 || !ok2 || cmp.Or(epoch, "0") != cmp.Or(current.Val(), "0") {
		return mfa.Factor{}, fmt.Errorf("redisstore: pending factor: %w", mfa.ErrNotFound)
	}
	expires, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return mfa.Factor{}, fmt.Errorf("redisstore: pending factor: corrupt expiry: %w", err)
	}
	if now.UnixMilli() >= expires {
		return mfa.Factor{}, fmt.Errorf("redisstore: pending factor: %w", mfa.ErrNotFound)
	}
	var f mfa.Factor
	if err := json.Unmarshal([]byte(js), &f); err != nil {
		return mfa.Factor{}, fmt.Errorf("redisstore: pending factor %s: %w", factorID, err)
	}
	return f, nil
}

// mfa.MaxRecoveryHashes suits the scripts: they pass the hashes to SADD
// through Lua's unpack, which takes a few thousand at most.

// ConfirmFactor confirms a factor and completes its session, in one script;
// then it deletes the session's index, which lies in another slot.
//
// A WebAuthn credential (c.Factor with WebAuthn set) is first reserved by
// SET cred:<hex of its ID> <user> NX, which is the atomic check that no one
// has the ID: it fails with ErrDuplicate, nothing changed, if the key exists.
// The key lies in its own slot, so it cannot be set inside the user's script
// on Cluster. Only then does the script check the session and the user and
// change the user's state, all at once. So two confirmations of one ID,
// whatever the users, cannot both pass the reservation; and the user's state
// changes only in the script, so a failed confirmation changes nothing of
// the user. If the script refuses (ErrNotFound, ErrConflict), the reservation
// is deleted, if it still holds this user, so that the ID can be registered
// later. So a credential takes two round trips (three when refused), any
// other factor one, besides the best-effort deletion of the session's index.
//
// If the script's outcome is unknown (a connection lost or a deadline passed
// after it was sent, a server error), the reservation is kept: the script may
// have confirmed the factor, and deleting the reservation of a registered ID
// would let another user register it. A reservation kept without a factor
// (this case, or a crash between the two steps) only makes that one ID
// unregistrable, and a new registration ceremony makes a new ID: it fails
// closed. The index therefore says which IDs are taken, not who owns a
// credential: that is the user's factors.
func (s *Store) ConfirmFactor(ctx context.Context, c mfa.Confirmation) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("redisstore: confirm factor: %w", err)
	}
	factorID, args, err := confirmArgs(c)
	if err != nil {
		return fmt.Errorf("redisstore: confirm factor: %w", err)
	}
	cred, err := s.reserveCredential(ctx, c)
	if err != nil {
		return err
	}
	return s.confirm(ctx, c, factorID, args, cred, newNonce())
}

// confirm runs the script of ConfirmFactor, the call named by nonce (see
// opKey), and releases the credential ID cred if it refuses.
func (s *Store) confirm(ctx context.Context, c mfa.Confirmation, factorID string, args []any, cred, nonce string) error {
	k := userKeys(c.UserID)
	n, err := confirmFactorScript.Run(ctx, s.rdb,
		[]string{k.session(c.TokenHash), k.pending(factorID), k.factors(), k.steps(), k.webauthn(), k.recovery(), k.epoch(), k.op(nonce)},
		args...).Int()
	if err != nil {
		// The outcome is unknown: keep any reservation (see above).
		return storeError("confirm factor", err)
	}
	if err := status("confirm factor", n); err != nil {
		// The script changed nothing: give the credential ID back.
		if rerr := s.releaseCredential(ctx, cred, c.UserID); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	// Best effort: an index without its session finds nothing, and expires.
	s.rdb.Del(ctx, sessionIndex(c.TokenHash))
	return nil
}

// confirmArgs returns the ID of the factor that c confirms and the ARGV of
// confirmFactorScript for c, which Confirmation.Validate accepted.
func confirmArgs(c mfa.Confirmation) (factorID string, args []any, err error) {
	factorID, factorJSON, wa := c.FactorID, "", ""
	if f := c.Factor; f != nil {
		b, err := json.Marshal(f)
		if err != nil {
			return "", nil, err
		}
		factorID, factorJSON = f.ID, string(b)
		if w := f.WebAuthn; w != nil {
			wa = webauthnState(w.SignCount, w.BackupState, w.UserVerified)
		}
	}
	args = make([]any, 0, 6+len(c.RecoveryHashes))
	args = append(args, factorID, c.Step, c.Now.UnixMilli(), flag(c.FirstFactor), factorJSON, wa)
	for _, h := range c.RecoveryHashes {
		args = append(args, h)
	}
	return factorID, args, nil
}

// reserveCredential reserves the credential ID of c.Factor for c.UserID, if
// it is a WebAuthn credential, and returns the key of the reservation ("" if
// none). It fails with mfa.ErrDuplicate if the ID is taken.
func (s *Store) reserveCredential(ctx context.Context, c mfa.Confirmation) (cred string, err error) {
	if c.Factor == nil || c.Factor.WebAuthn == nil {
		return "", nil
	}
	cred = credentialIndex(c.Factor.WebAuthn.CredentialID)
	ok, err := s.rdb.SetNX(ctx, cred, c.UserID, 0).Result()
	if err != nil {
		return "", storeError("confirm factor: reserve credential", err)
	}
	if !ok {
		return "", fmt.Errorf("redisstore: confirm factor: %w", mfa.ErrDuplicate)
	}
	return cred, nil
}

// releaseCredential deletes the reservation cred ("" for none) that
// reserveCredential made for userID, if it still holds userID. Not with
// ctx, which may end just now; a failure only keeps the ID reserved.
func (s *Store) releaseCredential(ctx context.Context, cred, userID string) error {
	if cred == "" {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := releaseCredentialScript.Run(rctx, s.rdb, []string{cred}, userID).Err(); err != nil {
		return storeError("confirm factor: release credential", err)
	}
	return nil
}

// releaseTimeout bounds the release of a credential ID after a refused
// confirmation.
const releaseTimeout = 5 * time.Second

// PutChallenge stores a challenge under its own key: one round trip.
func (s *Store) PutChallenge(ctx context.Context, id string, c mfa.Challenge, expiresAt time.Time) error {
	b, err := json.Marshal(storedChallenge{Challenge: c, ExpiresMS: expiresAt.UnixMilli()})
	if err != nil {
		return fmt.Errorf("redisstore: put challenge: %w", err)
	}
	// No now argument here, as for PutActivationCode: Redis keeps the
	// challenge by the wall clock, with a floor; TakeChallenge checks
	// expiresAt with its now.
	if err := s.rdb.Set(ctx, challengeKey(id), b, keepFor(expiresAt, time.Time{})).Err(); err != nil {
		return storeError("put challenge", err)
	}
	return nil
}

// storedChallenge is the value of a challenge's key.
type storedChallenge struct {
	mfa.Challenge
	ExpiresMS int64 `json:"expires_ms"`
}

// TakeChallenge gets and deletes a challenge with GETDEL (atomic, Redis 6.2
// or later), then checks its expiry: one round trip.
func (s *Store) TakeChallenge(ctx context.Context, id string, now time.Time) (mfa.Challenge, error) {
	b, err := s.rdb.GetDel(ctx, challengeKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return mfa.Challenge{}, fmt.Errorf("redisstore: take challenge: %w", mfa.ErrNotFound)
	}
	if err != nil {
		return mfa.Challenge{}, storeError("take challenge", err)
	}
	var c storedChallenge
	if err := json.Unmarshal(b, &c); err != nil {
		return mfa.Challenge{}, fmt.Errorf("redisstore: take challenge: corrupt challenge: %w", err)
	}
	if now.UnixMilli() >= c.ExpiresMS {
		return mfa.Challenge{}, fmt.Errorf("redisstore: take challenge: %w", mfa.ErrNotFound)
	}
	return c.Challenge, nil
}

// AcceptAssertion records a WebAuthn assertion, or suspends a cloned
// credential, in one script.
func (s *Store) AcceptAssertion(ctx context.Context, userID, factorID string, use mfa.AssertionUse, epoch uint64, now time.Time) (mfa.AssertionOutcome, error) {
	return s.acceptAssertion(ctx, userID, factorID, use, epoch, now, newNonce())
}

// acceptAssertion is AcceptAssertion, the call named by nonce (see opKey).
func (s *Store) acceptAssertion(ctx context.Context, userID, factorID string, use mfa.AssertionUse, epoch uint64, now time.Time, nonce string) (mfa.AssertionOutcome, error) {
	k := userKeys(userID)
	n, err := acceptAssertionScript.Run(ctx, s.rdb,
		[]string{k.factors(), k.webauthn(), k.attempts(), k.verified(), k.used(), k.suspended(), k.epoch(), k.op(nonce)},
		factorID, use.SignCount, flag(use.BackupState), flag(use.UserVerified), now.UnixMilli(), epoch).Text()
	if err != nil {
		return mfa.AssertionRefused, storeError("accept assertion", err)
	}
	switch n {
	case assertionAccepted:
		return mfa.AssertionAccepted, nil
	case assertionCloned:
		return mfa.AssertionCloned, nil
	case assertionRefused:
		return mfa.AssertionRefused, nil
	}
	return mfa.AssertionRefused, fmt.Errorf("redisstore: accept assertion: unexpected script result %q", n)
}

// ConsumeRecoveryCode removes a recovery code, in one script.
func (s *Store) ConsumeRecoveryCode(ctx context.Context, userID, codeHash string, now time.Time) (bool, int, error) {
	k := userKeys(userID)
	res, err := consumeRecoveryCodeScript.Run(ctx, s.rdb,
		[]string{k.recovery(), k.attempts(), k.verified()}, codeHash, now.UnixMilli()).Int64Slice()
	if err != nil {
		return false, 0, storeError("consume recovery code", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("redisstore: consume recovery code: unexpected script result of %d elements", len(res))
	}
	return res[0] == 1, int(res[1]), nil
}

// ReplaceRecoveryCodes replaces the recovery codes and completes the
// session, in one script; then it deletes the session's index, which lies in
// another slot (best effort, as ConfirmFactor).
func (s *Store) ReplaceRecoveryCodes(ctx context.Context, tokenHash, userID string, hashes []string, now time.Time) error {
	if len(hashes) > mfa.MaxRecoveryHashes {
		return fmt.Errorf("redisstore: replace recovery codes: %d codes, at most %d", len(hashes), mfa.MaxRecoveryHashes)
	}
	k := userKeys(userID)
	args := make([]any, 0, 2+len(hashes))
	args = append(args, userID, now.UnixMilli())
	for _, h := range hashes {
		args = append(args, h)
	}
	n, err := replaceRecoveryCodesScript.Run(ctx, s.rdb,
		[]string{k.session(tokenHash), k.factors(), k.recovery(), k.epoch()}, args...).Int()
	if err != nil {
		return storeError("replace recovery codes", err)
	}
	if err := status("replace recovery codes", n); err != nil {
		return err
	}
	s.rdb.Del(ctx, sessionIndex(tokenHash))
	return nil
}

// storeError wraps the error of a Redis call made for op. If it says that
// Redis cannot be reached now, it wraps mfa.ErrUnavailable too.
func storeError(op string, err error) error {
	if unreachable(err) {
		return fmt.Errorf("redisstore: %s: %w: %w", op, mfa.ErrUnavailable, err)
	}
	return fmt.Errorf("redisstore: %s: %w", op, err)
}

// unreachable reports whether err says that Redis cannot be reached or did
// not answer in time: a network error (connection refused or reset, a dial,
// read or write timeout), a connection closed under the client (EOF), no
// free connection in the pool in time, a client closed, or a deadline of the
// caller that passed first. A cancelled context is not one: the caller gave
// up, the store did not fail.
func unreachable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded)
}

// status turns a script's status code into the error that mfa.Store documents.
func status(op string, n int) error {
	switch n {
	case statusOK:
		return nil
	case statusNotFound:
		return fmt.Errorf("redisstore: %s: %w", op, mfa.ErrNotFound)
	case statusConflict:
		return fmt.Errorf("redisstore: %s: %w", op, mfa.ErrConflict)
	case statusWrongCode:
		return fmt.Errorf("redisstore: %s: %w", op, mfa.ErrWrongCode)
	case statusUnsupported:
		return fmt.Errorf("redisstore: %s: a pending WebAuthn factor cannot be confirmed: give the factor in Confirmation.Factor", op)
	}
	return fmt.Errorf("redisstore: %s: unexpected script status %d", op, n)
}

// decodeFactors decodes the hash of confirmed factors, sets their last use
// from the hash used, their WebAuthn state from the hash wa and their
// suspension from the hash susp, and sorts them oldest first.
func decodeFactors(factors, used, wa, susp map[string]string) ([]mfa.Factor, error) {
	fs := make([]mfa.Factor, 0, len(factors))
	for id, js := range factors {
		var f mfa.Factor
		if err := json.Unmarshal([]byte(js), &f); err != nil {
			return nil, fmt.Errorf("factor %s: %w", id, err)
		}
		if v, ok := used[id]; ok {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("factor %s: last use: %w", id, err)
			}
			f.LastUsedAt = time.UnixMilli(ms).UTC()
		}
		if v, ok := wa[id]; ok && f.WebAuthn != nil {
			if err := parseWebAuthnState(v, f.WebAuthn); err != nil {
				return nil, fmt.Errorf("factor %s: %w", id, err)
			}
		}
		if v, ok := susp[id]; ok {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("factor %s: suspension: %w", id, err)
			}
			f.SuspendedAt = time.UnixMilli(ms).UTC()
		}
		fs = append(fs, f)
	}
	slices.SortFunc(fs, func(a, b mfa.Factor) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return fs, nil
}

// webauthnState is the value of a credential in the hash wa.
func webauthnState(signCount uint32, backupState, userVerified bool) string {
	return strconv.FormatUint(uint64(signCount), 10) + "|" + flag(backupState) + "|" + flag(userVerified)
}

// parseWebAuthnState sets w's current state from its value in the hash wa.
func parseWebAuthnState(v string, w *mfa.WebAuthn) error {
	parts := strings.Split(v, "|")
	if len(parts) != 3 {
		return errors.New("corrupt WebAuthn state")
	}
	count, err := strconv.ParseUint(parts[0], 10, 32)
	if err != nil {
		return fmt.Errorf("corrupt sign count: %w", err)
	}
	w.SignCount = uint32(count)
	w.BackupState = parts[1] == "1"
	w.UserVerified = parts[2] == "1"
	return nil
}

// pairs turns the reply of HGETALL inside a script, a flat list of field
// and value, into a map.
func pairs(v any) (map[string]string, error) {
	list, ok := v.([]any)
	if !ok || len(list)%2 != 0 {
		return nil, fmt.Errorf("unexpected HGETALL reply %T", v)
	}
	m := make(map[string]string, len(list)/2)
	for i := 0; i < len(list); i += 2 {
		k, ok1 := list[i].(string)
		v, ok2 := list[i+1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("unexpected HGETALL reply element %T", list[i])
		}
		m[k] = v
	}
	return m, nil
}

// optionalTime reads a time in unix ms; missing, empty or 0 is the zero time.
func optionalTime(c *redis.StringCmd) (time.Time, error) {
	v, err := c.Result()
	if errors.Is(err, redis.Nil) || v == "" || v == "0" {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms).UTC(), nil
}

// minKeep is the shortest time Redis keeps a record that expires.
const minKeep = time.Minute

// keepFor is how long Redis keeps a record that expires at expiresAt, from
// the caller's now (created), or from the wall clock if created is zero.
// Redis expiry only reclaims memory: reads compare the stored expiry with
// the caller's now, which tests inject. The floor minKeep keeps a record
// whose expiry, by a caller's clock behind the wall clock (a test clock),
// is still to come.
func keepFor(expiresAt, created time.Time) time.Duration {
	if created.IsZero() {
		created = time.Now()
	}
	return max(expiresAt.Sub(created), minKeep)
}

// ceilMilli is d in milliseconds, rounded up.
func ceilMilli(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
