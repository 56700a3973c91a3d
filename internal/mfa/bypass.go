package mfa

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/secondfactor/secondfactor/internal/secret"
)

// Break-glass: an administrator issues a one-time bypass code for a user
// who lost every factor (IssueBypassCode). The user gives it at login like
// a recovery code (VerifyRecoveryCode, whose answer then says Bypass): it
// is accepted once, before it expires, and only the user's latest bypass
// is. It is not a verification of a factor: it sets no LastVerifiedAt, so
// it backs no PROOF_EXISTING_FACTOR session and enrols or manages nothing.
// Every bypass stays in the store for a second administrator to review
// (ListBypasses, ReviewBypass).

// Bypasses keeps the administrators' bypass codes (see Bypass). It is part
// of Store, and what Store says of atomicity, time and errors holds for its
// methods too.
type Bypasses interface {
	// PutBypass stores b, a bypass just issued, and the hash of its code,
	// and makes it the user's current bypass, in one atomic step: the
	// user's previous current bypass, if any, can no longer be consumed,
	// and stays listed as it was. Bypasses are durable: a store keeps them
	// all, whatever their expiry, for Bypasses to list. b.ID must be new:
	// the caller draws it at random (secret.NewID). IssuedAt and ExpiresAt
	// are kept in whole milliseconds (truncated).
	//
	// Not allowed: a b.ID that is not 16 lowercase hex digits, an empty
	// b.UserID or codeHash, or a b with UsedAt, ReviewedBy, ReviewNote or
	// ReviewedAt set.
	PutBypass(ctx context.Context, b Bypass, codeHash string) error

	// ConsumeBypass consumes the user's current bypass if its code hashes
	// to codeHash, it is unused and now is before its ExpiresAt (from
	// ExpiresAt on, it is not accepted): in one atomic step it sets the
	// bypass's UsedAt to now, so that it is no longer the user's current
	// one, and returns it with true. Otherwise it returns false and changes
	// nothing. Of concurrent calls with the right code, exactly one
	// consumes it. It is not a success (see Store): the user's attempts,
	// lock and LastVerifiedAt do not change.
	ConsumeBypass(ctx context.Context, userID, codeHash string, now time.Time) (Bypass, bool, error)

	// Bypass returns the bypass of the id. ErrNotFound if there is none.
	Bypass(ctx context.Context, id string) (Bypass, error)

	// ReviewBypass records reviewer's sign-off of the bypass id, with note,
	// at now (ReviewedBy, ReviewNote, ReviewedAt, the time in whole
	// milliseconds), if the bypass has none yet, and returns the bypass
	// reviewed. ErrNotFound if there is no such bypass; ErrConflict if it
	// was reviewed already, by anyone: of concurrent reviews, exactly one
	// succeeds. Who may review (not the administrator who issued it) is the
	// caller's rule. An empty reviewer is not allowed.
	ReviewBypass(ctx context.Context, id, reviewer, note string, now time.Time) (Bypass, error)

	// Bypasses returns the bypasses that q selects, newest first (by
	// IssuedAt, then by ID, both descending), at most q.Limit (1 to 1000;
	// other limits are not allowed), and a cursor for the next page, as
	// Events does: "" when no further bypass is selected, else the page is
	// full and the next holds at least one. A cursor that the store did not
	// give is ErrNotFound.
	Bypasses(ctx context.Context, q BypassQuery) ([]Bypass, string, error)
}

// Bypass is an administrator's one-time bypass code and its story: issued,
// used, reviewed. It never holds the code or its hash.
type Bypass struct {
	ID        string    `json:"id"` // 16 hex digits
	UserID    string    `json:"user_id"`
	IssuedBy  string    `json:"issued_by"` // the administrator who issued it
	Reason    string    `json:"reason"`    // theirs
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// UsedAt is when it was accepted at login, zero while unused.
	UsedAt time.Time `json:"used_at,omitzero"`
	// The second administrator's review, empty and zero until then.
	ReviewedBy string    `json:"reviewed_by,omitempty"`
	ReviewNote string    `json:"review_note,omitempty"`
	ReviewedAt time.Time `json:"reviewed_at,omitzero"`
}

// BypassQuery selects bypasses for Store.Bypasses, by time of issue.
type BypassQuery struct {
	Since  time.Time // zero: no lower bound; else IssuedAt >= Since
	Until  time.Time // zero: no upper bound; else IssuedAt < Until
	Limit  int       // 1 to 1000
	Cursor string    // from the previous page, "" for the first
}

// The audit actions of bypasses. In each, FactorID holds the bypass's ID.
const (
	ActionBypassIssued   Action = "bypass.issued"
	ActionVerifyBypass   Action = "verify.bypass"
	ActionBypassReviewed Action = "bypass.reviewed"
)

// The reasons of the bypass flows, with the kind of error each comes with.
const (
	// ReasonBypassDisabled (ErrRefused): the server refuses bypass codes
	// (setting Options.DisableBypass, flag -bypass off).
	ReasonBypassDisabled Reason = "bypass-disabled"
	// ReasonBypassNotFound (ErrNotFound): no bypass has the id given.
	ReasonBypassNotFound Reason = "bypass-not-found"
	// ReasonBypassSelfReview (ErrRefused): the reviewer is the
	// administrator who issued the bypass.
	ReasonBypassSelfReview Reason = "bypass-self-review"
	// ReasonBypassReviewed (ErrRefused): the bypass was reviewed already.
	ReasonBypassReviewed Reason = "bypass-already-reviewed"
)

// Limits of bypass codes.
const (
	// MaxBypassTTL is the longest life of a bypass code, and its default.
	MaxBypassTTL = time.Hour
	// MinBypassTTL is the shortest: time to read it to the user.
	MinBypassTTL = time.Minute
)

// errNoActor: a bypass is issued and reviewed by a named administrator,
// the Actor of the call's Origin, which the edge always sets.
var errNoActor = errors.New("bypass: the call's origin names no administrator")

// IssuedBypass is a bypass just issued and its code, shown this once.
type IssuedBypass struct {
	Code secret.String
	Bypass
}

// IssueBypassCode makes a one-time bypass code for a user, valid for ttl
// (MinBypassTTL to MaxBypassTTL, 0 for MaxBypassTTL), and returns it, the
// only time it is seen; the store keeps its hash (Store.PutBypass). It
// replaces the user's previous bypass, used or not. The administrator is
// the Actor of ctx's Origin. Refused when the server disables bypass codes
// (ReasonBypassDisabled).
func (s *Service) IssueBypassCode(ctx context.Context, userID, reason string, ttl time.Duration) (IssuedBypass, error) {
	if err := checkAdmin(userID, reason); err != nil {
		return IssuedBypass{}, err
	}
	if ttl == 0 {
		ttl = MaxBypassTTL
	}
	if ttl < MinBypassTTL || ttl > MaxBypassTTL {
		return IssuedBypass{}, badField("ttl", "must be %s to %s (unset for %s)", MinBypassTTL, MaxBypassTTL, MaxBypassTTL)
	}
	if s.o.DisableBypass {
		return IssuedBypass{}, refuse(ReasonBypassDisabled, "this server refuses bypass codes (-bypass off)")
	}
	actor := OriginFrom(ctx).Actor
	if actor == "" {
		return IssuedBypass{}, errNoActor
	}
	code, err := secret.NewCode(s.o.Rand, recoveryCodeGroups)
	if err != nil {
		return IssuedBypass{}, err
	}
	id, err := secret.NewID(s.o.Rand)
	if err != nil {
		return IssuedBypass{}, err
	}
	hash, _, _ := secret.HashCode(code.Reveal())
	now := time.UnixMilli(s.o.Now().UnixMilli()).UTC() // as the store keeps it
	b := Bypass{ID: id, UserID: userID, IssuedBy: actor, Reason: reason, IssuedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.o.Store.PutBypass(ctx, b, hash); err != nil {
		return IssuedBypass{}, err
	}
	e := Event{UserID: userID, Time: now, Action: ActionBypassIssued, FactorID: id, Reason: reason}
	if err := s.adminChange(ctx, e, "bypass code issued: it replaces the user's previous one", "bypass_id", id, "expires_at", b.ExpiresAt); err != nil {
		return IssuedBypass{}, err
	}
	return IssuedBypass{Code: code, Bypass: b}, nil
}

// tryBypass consumes the user's bypass of code hash, unless the server
// disables bypass codes, and records its use. It reports whether it was
// one. The attempt was counted by VerifyRecoveryCode's StartAttempt.
func (s *Service) tryBypass(ctx context.Context, userID, hash string, c Client, now time.Time) (bool, error) {
	if s.o.DisableBypass {
		return false, nil
	}
	b, ok, err := s.o.Store.ConsumeBypass(ctx, userID, hash, now)
	if err != nil || !ok {
		return false, err
	}
	s.log(ctx, slog.LevelWarn, "bypass code used: login without a second factor", "user_id", userID,
		"bypass_id", b.ID, "issued_by", b.IssuedBy, "client_ip", clientOf(ctx, c).IP)
	e := Event{UserID: userID, Time: now, Action: ActionVerifyBypass, Result: ResultAccepted, FactorID: b.ID}
	if err := s.record(ctx, e, c); err != nil {
		return false, err
	}
	return true, nil
}

// Listing limits of ListBypasses: those of ListAuditEvents.
const (
	DefaultBypassLimit = DefaultEventLimit
	MaxBypassLimit     = MaxEventLimit
)

// ListBypasses returns the bypasses that q selects, newest first, and the
// cursor of the next page ("" after the last). Its bad input is
// ListAuditEvents': q.Limit 0 lists DefaultBypassLimit; more than
// MaxBypassLimit, a bad cursor, or an Until not after Since are bad input.
func (s *Service) ListBypasses(ctx context.Context, q BypassQuery) ([]Bypass, string, error) {
	eq := EventQuery{Since: q.Since, Until: q.Until, Limit: q.Limit, Cursor: q.Cursor}
	if err := checkQuery(&eq); err != nil {
		return nil, "", err
	}
	q.Limit = eq.Limit
	bs, next, err := s.o.Store.Bypasses(ctx, q)
	if errors.Is(err, ErrNotFound) {
		return nil, "", badField("cursor", "is not a cursor of this listing: start again without one")
	}
	if err != nil {
		return nil, "", err
	}
	return bs, next, nil
}

// ReviewBypass records that the administrator of ctx's Origin reviewed the
// bypass id, with a note saying what they checked, and returns it
// reviewed. Refused when they issued it (ReasonBypassSelfReview) or it was
// reviewed already (ReasonBypassReviewed). A bypass may be reviewed before
// it is used or expires: the review signs off its issue.
func (s *Service) ReviewBypass(ctx context.Context, id, note string) (Bypass, error) {
	if err := checkBypassID(id); err != nil {
		return Bypass{}, err
	}
	if err := checkText("note", note, MaxReason, true); err != nil {
		return Bypass{}, err
	}
	reviewer := OriginFrom(ctx).Actor
	if reviewer == "" {
		return Bypass{}, errNoActor
	}
	b, err := s.o.Store.Bypass(ctx, id)
	if err != nil {
		return Bypass{}, bypassError(err)
	}
	switch {
	case b.IssuedBy == reviewer:
		return Bypass{}, refuse(ReasonBypassSelfReview, "a bypass is reviewed by a second administrator: %s issued this one", reviewer)
	case !b.ReviewedAt.IsZero():
		return Bypass{}, errReviewed(nil)
	}
	now := s.o.Now()
	b, err = s.o.Store.ReviewBypass(ctx, id, reviewer, note, now)
	if err != nil {
		return Bypass{}, bypassError(err)
	}
	e := Event{UserID: b.UserID, Time: now, Action: ActionBypassReviewed, FactorID: id, Reason: note}
	if err := s.adminChange(ctx, e, "bypass reviewed", "bypass_id", id, "issued_by", b.IssuedBy); err != nil {
		return Bypass{}, err
	}
	return b, nil
}

// bypassError translates a store's ErrNotFound and ErrConflict about a
// bypass.
func bypassError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return failWith(ErrNotFound, ReasonBypassNotFound, err, "no bypass has this id")
	case errors.Is(err, ErrConflict):
		return errReviewed(err)
	}
	return err
}

func errReviewed(cause error) error {
	return failWith(ErrRefused, ReasonBypassReviewed, cause, "the bypass was reviewed already")
}

// checkBypassID checks a bypass id: 16 lowercase hex digits.
func checkBypassID(id string) error {
	if !IsBypassID(id) {
		return badField("bypass_id", "must be 16 hex digits")
	}
	return nil
}

// IsBypassID reports whether id has the form of a bypass's ID: 16
// lowercase hex digits, as secret.NewID makes them.
func IsBypassID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ValidateNew refuses a bypass that Store.PutBypass does not take: a bad ID,
// no user, no code hash, or one already used or reviewed.
func (b Bypass) ValidateNew(codeHash string) error {
	switch {
	case !IsBypassID(b.ID):
		return fmt.Errorf("bypass ID %q: want 16 lowercase hex digits", b.ID)
	case b.UserID == "":
		return errors.New("bypass without a user")
	case codeHash == "":
		return errors.New("bypass without a code hash")
	case !b.UsedAt.IsZero() || b.ReviewedBy != "" || b.ReviewNote != "" || !b.ReviewedAt.IsZero():
		return errors.New("a new bypass cannot be used or reviewed already")
	}
	return nil
}
