package mfa

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"slices"
	"strconv"
	"time"
)

// The audit actions. What each event holds beside its time, user, caller,
// request id and client:
//
//	enrollment.created    Result: the session's proof (password-only, strong, existing-factor)
//	enrollment.activated  Result accepted: an activation code activated the session
//	factor.added          FactorID; Result: the factor's kind (totp, webauthn)
//	factor.removed        FactorID, Reason (an administrator's DeleteFactor)
//	factor.suspended      FactorID, Result suspended, Reason: why (a sign count that went backwards)
//	factor.enabled        FactorID, Reason (an administrator lifted the suspension)
//	user.reset            Reason (an administrator's ResetUser)
//	user.locked           Reason: until when; the client of the attempt that locked
//	user.unlocked         Reason (an administrator's UnlockUser)
//	verify.totp           Result accepted, rejected, locked or replay; FactorID when one matched
//	verify.webauthn       Result accepted, rejected, replay (a sign count already used:
//	                      the factor is then suspended) or suspended; FactorID when known
//	verify.recovery       Result accepted, rejected or locked
//	verify.activation     Result rejected or locked: a wrong activation code, or one
//	                      given while the user is locked (an accepted one is enrollment.activated)
//	activation.issued     Reason (an administrator's IssueActivationCode)
//	recovery.regenerated  the user replaced their recovery codes
//	bypass.issued         FactorID: the bypass's ID; Reason (an administrator's IssueBypassCode)
//	verify.bypass         FactorID: the bypass's ID; Result accepted (a wrong or locked code is verify.recovery)
//	bypass.reviewed       FactorID: the bypass's ID; Reason: the reviewer's note (ReviewBypass)
//
// No event holds a secret: no code, token, key or hash of one.
const (
	ActionEnrollmentCreated   Action = "enrollment.created"
	ActionEnrollmentActivated Action = "enrollment.activated"
	ActionFactorAdded         Action = "factor.added"
	ActionFactorRemoved       Action = "factor.removed"
	ActionFactorSuspended     Action = "factor.suspended"
	ActionFactorEnabled       Action = "factor.enabled"
	ActionUserReset           Action = "user.reset"
	ActionUserLocked          Action = "user.locked"
	ActionUserUnlocked        Action = "user.unlocked"
	ActionVerifyTOTP          Action = "verify.totp"
	ActionVerifyWebAuthn      Action = "verify.webauthn"
	ActionVerifyRecovery      Action = "verify.recovery"
	ActionVerifyActivation    Action = "verify.activation"
	ActionActivationIssued    Action = "activation.issued"
	ActionRecoveryRegenerated Action = "recovery.regenerated"
)

// Actions returns every audit action, for the edges to list and for
// EventQuery.Actions to be checked against.
func Actions() []Action {
	return []Action{
		ActionEnrollmentCreated, ActionEnrollmentActivated, ActionFactorAdded, ActionFactorRemoved,
		ActionFactorSuspended, ActionFactorEnabled, ActionUserReset, ActionUserLocked, ActionUserUnlocked,
		ActionVerifyTOTP, ActionVerifyWebAuthn, ActionVerifyRecovery, ActionVerifyActivation,
		ActionActivationIssued, ActionRecoveryRegenerated,
		ActionBypassIssued, ActionVerifyBypass, ActionBypassReviewed,
	}
}

// The results of verification events (Event.Result).
const (
	ResultAccepted = "accepted"
	ResultRejected = "rejected"
	// ResultLocked: the user was locked; nothing was evaluated.
	ResultLocked = "locked"
	// ResultReplay: a valid code of a time step the factor had already
	// accepted, or an assertion whose sign count the key had already used.
	ResultReplay = "replay"
	// ResultSuspended: the factor is suspended; nothing was accepted.
	ResultSuspended = "suspended"
)

// EventHash is the hex SHA-256 of every field of e but Hash, each written
// with its length in a fixed order, so that two different events never
// share an encoding. Time counts in whole milliseconds, the precision a
// store keeps.
func EventHash(e Event) string {
	h := sha256.New()
	put := func(h hash.Hash, s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], e.Seq)
	binary.BigEndian.PutUint64(n[8:], uint64(e.Time.UnixMilli()))
	h.Write([]byte("secondfactor audit event v1\x00"))
	h.Write(n[:])
	for _, s := range []string{e.UserID, string(e.Action), e.Result, e.FactorID, e.Actor, e.Reason, e.ClientIP, e.UserAgent, e.RequestID, e.PrevHash} {
		put(h, s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ID names an event: "<user_id>/<seq>", its place in its user's chain.
func (e Event) ID() string { return e.UserID + "/" + strconv.FormatUint(e.Seq, 10) }

// Origin is who and what caused a call: the API caller (Actor), the
// request id the edge gave the call, and the address and user agent the
// request came from. The edge sets it in the context (WithOrigin); the
// flows write it into audit events and log lines.
type Origin struct {
	Actor     string
	ClientIP  string
	UserAgent string
	RequestID string
}

type originKey struct{}

// WithOrigin returns a context that carries o.
func WithOrigin(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

// OriginFrom returns the Origin that ctx carries, the zero Origin if none.
func OriginFrom(ctx context.Context) Origin {
	o, _ := ctx.Value(originKey{}).(Origin)
	return o
}

// auditTimeout bounds the append of an event once the change it records
// is made: the append does not end with the caller's context, so that a
// caller who goes away does not leave a change without its event.
const auditTimeout = 5 * time.Second

// record appends e to its user's audit chain, after the change it records.
// It fills in the caller and request id from ctx's Origin, and the client:
// c if the portal gave one, else the Origin's. An event that cannot be
// written fails the call (the change is made, but the caller is not told
// it succeeded) and is logged, since the trail now misses it.
func (s *Service) record(ctx context.Context, e Event, c Client) error {
	o := OriginFrom(ctx)
	e.Actor, e.RequestID = o.Actor, o.RequestID
	c = clientOf(ctx, c)
	e.ClientIP, e.UserAgent = c.IP, c.UserAgent
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	stored, err := s.o.Store.AppendEvent(actx, e)
	if err != nil {
		s.log(ctx, slog.LevelError, "audit event not written: the change is made but the trail misses it",
			"user_id", e.UserID, "action", e.Action, "result", e.Result, "factor_id", e.FactorID, "error", err)
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	if s.o.OnEvent != nil {
		s.o.OnEvent(stored)
	}
	return nil
}

// clientOf is the end user's client: c if the portal gave one, else the
// address and user agent of ctx's Origin.
func clientOf(ctx context.Context, c Client) Client {
	if c != (Client{}) {
		return c
	}
	o := OriginFrom(ctx)
	return Client{IP: o.ClientIP, UserAgent: o.UserAgent}
}

// log writes a line with the request id of ctx's Origin.
func (s *Service) log(ctx context.Context, level slog.Level, msg string, args ...any) {
	if id := OriginFrom(ctx).RequestID; id != "" {
		args = append(args, "request_id", id)
	}
	s.o.Logger.Log(ctx, level, msg, args...)
}

// Listing limits of ListAuditEvents.
const (
	DefaultEventLimit = 100
	MaxEventLimit     = 1000
	MaxCursor         = 512
)

// ListAuditEvents returns the audit events that q selects, newest first,
// and the cursor of the next page ("" after the last). q.Limit 0 lists
// DefaultEventLimit; more than MaxEventLimit, an unknown action, a bad
// user id or cursor, or an Until not after Since are bad input.
func (s *Service) ListAuditEvents(ctx context.Context, q EventQuery) ([]Event, string, error) {
	if err := checkQuery(&q); err != nil {
		return nil, "", err
	}
	events, next, err := s.o.Store.Events(ctx, q)
	if errors.Is(err, ErrNotFound) {
		return nil, "", badField("cursor", "is not a cursor of this listing: start again without one")
	}
	if err != nil {
		return nil, "", err
	}
	return events, next, nil
}

// checkQuery checks q and sets its default limit.
func checkQuery(q *EventQuery) error {
	if q.UserID != "" {
		if err := checkUserID(q.UserID); err != nil {
			return err
		}
	}
	if q.Limit == 0 {
		q.Limit = DefaultEventLimit
	}
	if q.Limit < 1 || q.Limit > MaxEventLimit {
		return badField("limit", "must be 1 to %d (0 for %d)", MaxEventLimit, DefaultEventLimit)
	}
	known := Actions()
	for _, a := range q.Actions {
		if !slices.Contains(known, a) {
			return badField("actions", "must be among %v", known)
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return badField("until", "must be after since")
	}
	if len(q.Cursor) > MaxCursor {
		return badField("cursor", "must be at most %d bytes", MaxCursor)
	}
	for i := 0; i < len(q.Cursor); i++ {
		if q.Cursor[i] < 0x21 || q.Cursor[i] > 0x7e {
			return badField("cursor", "is not a cursor of this listing: start again without one")
		}
	}
	return nil
}

// ChainReport is the outcome of VerifyAuditTrail. The chains checked are
// intact when BrokenEventID is empty.
type ChainReport struct {
	// Events is how many events were checked and found intact.
	Events uint64
	// BrokenEventID names the first event found broken (see Event.ID), ""
	// if none.
	BrokenEventID string
	// Problem says what is wrong with it.
	Problem string
}

// chainPage is how many events or users VerifyAuditTrail reads at once.
const chainPage = 1000

// VerifyAuditTrail checks the audit chain of userID, or every chain if
// userID is "" (in the order of Store.ChainUsers), and stops at the first
// broken event. An event is intact when its hash is EventHash of its
// content, it is the next of its chain (Seq 1, 2, ... without a gap) and it
// holds the hash of the event before it. A chain whose last events were
// removed, or that was rewritten whole with new hashes, passes: the chain
// proves only that nothing changed before its last event.
//
// A chain whose first event left has a Seq above 1 was pruned
// (Store.PruneEvents, the audit retention): it is checked from that event
// on, with the same rules, but that event's PrevHash cannot be checked, its
// predecessor being gone. So a chain proves nothing about the events before
// its first one left: their removal, by the retention or behind the
// store's back, does not show.
func (s *Service) VerifyAuditTrail(ctx context.Context, userID string) (ChainReport, error) {
	var r ChainReport
	if userID != "" {
		if err := checkUserID(userID); err != nil {
			return ChainReport{}, err
		}
		return r, s.verifyChain(ctx, userID, &r)
	}
	for after := ""; ; {
		users, err := s.o.Store.ChainUsers(ctx, after, chainPage)
		if err != nil {
			return ChainReport{}, err
		}
		for _, u := range users {
			if err := s.verifyChain(ctx, u, &r); err != nil || r.BrokenEventID != "" {
				return r, err
			}
		}
		if len(users) < chainPage {
			return r, nil
		}
		after = users[len(users)-1]
	}
}

// verifyChain checks userID's chain, counting its intact events in r and
// naming in r the first broken one.
func (s *Service) verifyChain(ctx context.Context, userID string, r *ChainReport) error {
	next, prevHash, first := uint64(1), "", true
	for {
		events, err := s.o.Store.Chain(ctx, userID, next, chainPage)
		if err != nil {
			return err
		}
		for _, e := range events {
			if first && e.Seq > next {
				// Pruned: the chain starts at its first event left,
				// whose predecessor is gone.
				next, prevHash = e.Seq, e.PrevHash
			}
			first = false
			if p := chainProblem(e, userID, next, prevHash); p != "" {
				r.BrokenEventID, r.Problem = Event{UserID: userID, Seq: e.Seq}.ID(), p
				s.log(ctx, slog.LevelWarn, "audit chain broken", "event_id", r.BrokenEventID, "problem", p)
				return nil
			}
			r.Events++
			next, prevHash = next+1, e.Hash
		}
		if len(events) < chainPage {
			return nil
		}
	}
}

// chainProblem says what is wrong with e, read from userID's chain where
// the event of Seq want, following the one whose hash is prevHash, should
// be; "" if nothing is.
func chainProblem(e Event, userID string, want uint64, prevHash string) string {
	switch {
	case EventHash(e) != e.Hash:
		return "hash does not match its content"
	case e.UserID != userID:
		return "event of another user's chain"
	case e.Seq > want:
		return fmt.Sprintf("previous event missing: %d expected", want)
	case e.Seq < want:
		return fmt.Sprintf("out of order: %d expected", want)
	case e.PrevHash != prevHash:
		return "previous hash does not match the previous event: it was changed or replaced"
	}
	return ""
}
