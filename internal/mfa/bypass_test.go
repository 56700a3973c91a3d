package mfa_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// The second administrator of the tests, who reviews what alice-admin
// (adminOrigin) issued.
var reviewerOrigin = mfa.Origin{Actor: "bob-admin", ClientIP: "10.0.0.8", UserAgent: "secondfactor-cli", RequestID: "req-review"}

func asReviewer(t *testing.T) context.Context { return mfa.WithOrigin(t.Context(), reviewerOrigin) }

// issueBypass issues a bypass code for userID as alice-admin, for ttl (0
// for the default), and fails the test if it cannot.
func (e *env) issueBypass(t *testing.T, userID string, ttl time.Duration) mfa.IssuedBypass {
	t.Helper()
	b, err := e.svc.IssueBypassCode(asAdmin(t), userID, "lost every factor mid-shift, identity checked by video call", ttl)
	if err != nil {
		t.Fatalf("IssueBypassCode(%s): %v", userID, err)
	}
	return b
}

// verifyRecovery calls VerifyRecoveryCode as the portal for the browser and
// fails the test on an error.
func (e *env) verifyRecovery(t *testing.T, userID, code string) mfa.RecoveryResult {
	t.Helper()
	r, err := e.svc.VerifyRecoveryCode(asPortal(t), userID, code, browser)
	if err != nil {
		t.Fatalf("VerifyRecoveryCode: %v", err)
	}
	return r
}

// bypassCode is the form of a bypass code: a recovery code's, 16 Crockford
// base32 characters in groups of four.
var bypassCode = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$`)

// TestIssueBypassCode: a bypass code is 80 bits in the form of a recovery
// code, lives the ttl asked (an hour by default), names the administrator
// and the reason, and leaves a bypass.issued event.
func TestIssueBypassCode(t *testing.T) {
	e := newEnv(t, envOptions{})
	now := e.clock.Now()
	var codes []string
	for _, tt := range []struct {
		ttl, want time.Duration
	}{{0, time.Hour}, {30 * time.Minute, 30 * time.Minute}, {time.Minute, time.Minute}, {time.Hour, time.Hour}} {
		b := e.issueBypass(t, "dr-martin", tt.ttl)
		codes = append(codes, b.Code.Reveal())
		if !bypassCode.MatchString(b.Code.Reveal()) {
			t.Errorf("ttl %s: code %q, want 16 characters in groups of four", tt.ttl, b.Code.Reveal())
		}
		want := mfa.Bypass{ID: b.ID, UserID: "dr-martin", IssuedBy: adminOrigin.Actor,
			Reason: "lost every factor mid-shift, identity checked by video call", IssuedAt: now, ExpiresAt: now.Add(tt.want)}
		if diff := cmp.Diff(want, b.Bypass); diff != "" || !mfa.IsBypassID(b.ID) {
			t.Errorf("ttl %s: the bypass (-want +got):\n%s", tt.ttl, diff)
		}
	}
	evs := e.events(t, "dr-martin")
	if len(evs) != 4 {
		t.Fatalf("%d events, want 4 bypass.issued", len(evs))
	}
	want := byAdmin(mfa.ActionBypassIssued, evs[3].FactorID, "lost every factor mid-shift, identity checked by video call")
	if diff := cmp.Diff(want, auditedOf(evs[3:])[0]); diff != "" || !mfa.IsBypassID(evs[3].FactorID) {
		t.Errorf("bypass.issued event (-want +got):\n%s", diff)
	}
	for _, l := range e.logs.lines(t) {
		line := fmt.Sprint(l)
		for _, c := range codes {
			if strings.Contains(line, c) || strings.Contains(line, strings.ReplaceAll(c, "-", "")) {
				t.Errorf("a log line holds a bypass code: %s", line)
			}
		}
	}
}

// TestIssueBypassCodeRefusals: bad input, a ttl out of range, a server
// that refuses bypass codes and a call without an administrator are
// refused, and nothing is issued.
func TestIssueBypassCodeRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	off := newEnv(t, envOptions{disableBypass: true})
	for _, tt := range []struct {
		name   string
		e      *env
		userID string
		reason string
		ttl    time.Duration
		want   outcome
	}{
		{"no reason", e, "dr-martin", "", 0, badField("reason")},
		{"a reason with a line break", e, "dr-martin", "lost\nphone", 0, badField("reason")},
		{"no user", e, "", "lost phone", 0, badField("user_id")},
		{"a ttl under a minute", e, "dr-martin", "lost phone", time.Minute - time.Millisecond, badField("ttl")},
		{"a ttl over an hour", e, "dr-martin", "lost phone", time.Hour + time.Millisecond, badField("ttl")},
		{"a negative ttl", e, "dr-martin", "lost phone", -time.Minute, badField("ttl")},
		{"a server with -bypass off", off, "dr-martin", "lost phone", 0, refused(mfa.ReasonBypassDisabled)},
	} {
		_, err := tt.e.svc.IssueBypassCode(asAdmin(t), tt.userID, tt.reason, tt.ttl)
		if diff := cmp.Diff(tt.want, outcomeOf(t, err)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	if _, err := e.svc.IssueBypassCode(t.Context(), "dr-martin", "lost phone", 0); err == nil {
		t.Error("IssueBypassCode without an administrator in the origin: issued")
	}
	for _, env := range []*env{e, off} {
		if bs, _, err := env.svc.ListBypasses(t.Context(), mfa.BypassQuery{}); err != nil || len(bs) != 0 {
			t.Errorf("bypasses after refusals: %v, %v; want none", bs, err)
		}
		if evs := env.events(t, "dr-martin"); len(evs) != 0 {
			t.Errorf("events after refusals: %v", auditedOf(evs))
		}
	}
}

// TestBypassLogin: a bypass code is accepted once at login through
// VerifyRecoveryCode, which says it was a bypass and leaves the recovery
// codes as they were; a second use is a wrong recovery code. It is no
// verification of a factor: right after it, a PROOF_EXISTING_FACTOR
// session is refused, so it enrols and manages nothing.
func TestBypassLogin(t *testing.T) {
	e := newEnv(t, envOptions{})
	u := e.enrollTOTP(t, "dr-martin")
	e.clock.Advance(time.Hour) // long after any verification
	b := e.issueBypass(t, u.userID, 0)
	e.clock.Advance(10 * time.Minute)

	r := e.verifyRecovery(t, u.userID, strings.ToLower(b.Code.Reveal())) // typed as it was read
	if want := (mfa.RecoveryResult{Result: mfa.Result{Verdict: mfa.Accepted}, Remaining: 10, Bypass: true}); r != want {
		t.Fatalf("VerifyRecoveryCode with the bypass code: %+v, want %+v", r, want)
	}
	if got := e.user(t, u.userID); !got.LastVerifiedAt.IsZero() || got.RecoveryCodes != 10 {
		t.Fatalf("after a bypass login: last verified %v, %d recovery codes; want never, 10", got.LastVerifiedAt, got.RecoveryCodes)
	}
	for _, proof := range []mfa.Proof{mfa.ProofExistingFactor, mfa.ProofPasswordOnly, mfa.ProofStrong} {
		_, err := e.svc.CreateEnrollment(asPortal(t), mfa.EnrollmentRequest{UserID: u.userID, Proof: proof})
		want := refused(mfa.ReasonNoFreshVerification)
		if proof != mfa.ProofExistingFactor {
			want = refused(mfa.ReasonAlreadyEnrolled)
		}
		if diff := cmp.Diff(want, outcomeOf(t, err)); diff != "" {
			t.Errorf("CreateEnrollment(%s) right after a bypass login (-want +got):\n%s", proof, diff)
		}
	}

	if r := e.verifyRecovery(t, u.userID, b.Code.Reveal()); r.Verdict != mfa.Rejected || r.Bypass {
		t.Fatalf("the bypass code again: %+v, want rejected", r)
	}
	bs, _, err := e.svc.ListBypasses(asAdmin(t), mfa.BypassQuery{})
	if err != nil || len(bs) != 1 || !bs[0].UsedAt.Equal(e.clock.Now()) {
		t.Fatalf("ListBypasses: %+v, %v; want the bypass used now", bs, err)
	}
	want := []audited{
		fromBrowser(mfa.ActionVerifyBypass, mfa.ResultAccepted, b.ID),
		fromBrowser(mfa.ActionVerifyRecovery, mfa.ResultRejected, ""),
	}
	if diff := cmp.Diff(want, auditedOf(e.events(t, u.userID))[3:]); diff != "" {
		t.Errorf("events of the bypass login and the second use (-want +got):\n%s", diff)
	}
}

// TestBypassFollowsTheLock: a bypass code is counted against the user's
// failed-attempt lock like a recovery code: while the user is locked it
// is not evaluated (nor used up), and after an unlock it is accepted; a
// new bypass replaces the previous one; and an expired one is a wrong
// code from the instant it expires.
func TestBypassFollowsTheLock(t *testing.T) {
	e := newEnv(t, envOptions{})
	u := e.enrollTOTP(t, "dr-martin")
	first := e.issueBypass(t, u.userID, 0)
	b := e.issueBypass(t, u.userID, 0) // replaces the first
	for range limits.MaxFailures {
		if r := e.verifyRecovery(t, u.userID, first.Code.Reveal()); r.Verdict != mfa.Rejected {
			t.Fatalf("a replaced bypass code: %+v, want rejected", r)
		}
	}
	if r := e.verifyRecovery(t, u.userID, b.Code.Reveal()); r.Verdict != mfa.Locked {
		t.Fatalf("the bypass code while locked: %+v, want locked", r)
	}
	if err := e.svc.UnlockUser(asAdmin(t), u.userID, "the user called"); err != nil {
		t.Fatal(err)
	}
	if r := e.verifyRecovery(t, u.userID, b.Code.Reveal()); r.Verdict != mfa.Accepted || !r.Bypass {
		t.Fatalf("the bypass code after the unlock: %+v, want accepted", r)
	}

	short := e.issueBypass(t, u.userID, 30*time.Minute)
	e.clock.Advance(30 * time.Minute)
	if r := e.verifyRecovery(t, u.userID, short.Code.Reveal()); r.Verdict != mfa.Rejected {
		t.Fatalf("a bypass code at its expiry: %+v, want rejected", r)
	}
}

// TestBypassOff: a server with -bypass off accepts no bypass code, not even
// one issued before it was turned off, which stays usable once it is on
// again (until it expires).
func TestBypassOff(t *testing.T) {
	on := newEnv(t, envOptions{})
	off := newEnv(t, envOptions{disableBypass: true, wrap: func(mfa.Store) mfa.Store { return on.bolt }})
	u := on.enrollTOTP(t, "dr-martin")
	b := on.issueBypass(t, u.userID, 0)
	if r := off.verifyRecovery(t, u.userID, b.Code.Reveal()); r.Verdict != mfa.Rejected || r.Bypass {
		t.Fatalf("a bypass code on a server with -bypass off: %+v, want rejected", r)
	}
	if r := on.verifyRecovery(t, u.userID, b.Code.Reveal()); r.Verdict != mfa.Accepted || !r.Bypass {
		t.Fatalf("the bypass code on the server with -bypass on: %+v, want accepted", r)
	}
}

// TestConcurrentBypassLogin sends one bypass code 50 times at once: it is
// accepted once.
func TestConcurrentBypassLogin(t *testing.T) {
	e := newEnv(t, envOptions{limits: mfa.Limits{MaxFailures: 100, BaseLockout: time.Second, MaxLockout: time.Hour, FailureTTL: time.Hour}})
	b := e.issueBypass(t, "dr-martin", 0)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		verdicts = map[mfa.Verdict]int{}
		start    = make(chan struct{})
	)
	for range 50 {
		wg.Go(func() {
			<-start
			r, err := e.svc.VerifyRecoveryCode(asPortal(t), "dr-martin", b.Code.Reveal(), browser)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("VerifyRecoveryCode: %v", err)
			}
			verdicts[r.Verdict]++
		})
	}
	close(start)
	wg.Wait()
	if diff := cmp.Diff(map[mfa.Verdict]int{mfa.Accepted: 1, mfa.Rejected: 49}, verdicts); diff != "" {
		t.Fatalf("one bypass code sent 50 times at once (-want +got):\n%s", diff)
	}
}

// TestReviewBypass: a second administrator reviews a bypass once; the one
// who issued it may not, nor may anyone once it is reviewed; the review
// leaves a bypass.reviewed event in the user's trail.
func TestReviewBypass(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.issueBypass(t, "dr-martin", 0)
	notFound := outcome{Reason: mfa.ReasonBypassNotFound, Kind: mfa.ErrNotFound.Error()}
	for _, tt := range []struct {
		name     string
		ctx      context.Context
		id, note string
		want     outcome
	}{
		{"by the administrator who issued it", asAdmin(t), b.ID, "looks fine", refused(mfa.ReasonBypassSelfReview)},
		{"without a note", asReviewer(t), b.ID, "", badField("note")},
		{"with a note of a line break", asReviewer(t), b.ID, "looks\nfine", badField("note")},
		{"of a malformed id", asReviewer(t), "B0", "looks fine", badField("bypass_id")},
		{"of an unknown id", asReviewer(t), "00000000000000ff", "looks fine", notFound},
	} {
		_, err := e.svc.ReviewBypass(tt.ctx, tt.id, tt.note)
		if diff := cmp.Diff(tt.want, outcomeOf(t, err)); diff != "" {
			t.Errorf("ReviewBypass %s (-want +got):\n%s", tt.name, diff)
		}
	}
	e.clock.Advance(time.Hour)
	got, err := e.svc.ReviewBypass(asReviewer(t), b.ID, "called the hospital: she was on shift")
	if err != nil {
		t.Fatal(err)
	}
	want := b.Bypass
	want.ReviewedBy, want.ReviewNote, want.ReviewedAt = reviewerOrigin.Actor, "called the hospital: she was on shift", e.clock.Now()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the bypass reviewed (-want +got):\n%s", diff)
	}
	for _, ctx := range []context.Context{asReviewer(t), asAdmin(t), mfa.WithOrigin(t.Context(), mfa.Origin{Actor: "carol-admin"})} {
		_, err := e.svc.ReviewBypass(ctx, b.ID, "again")
		r := refused(mfa.ReasonBypassReviewed)
		if mfa.OriginFrom(ctx).Actor == adminOrigin.Actor {
			r = refused(mfa.ReasonBypassSelfReview)
		}
		if diff := cmp.Diff(r, outcomeOf(t, err)); diff != "" {
			t.Errorf("a second review by %s (-want +got):\n%s", mfa.OriginFrom(ctx).Actor, diff)
		}
	}
	bs, _, err := e.svc.ListBypasses(asAdmin(t), mfa.BypassQuery{})
	if err != nil || len(bs) != 1 {
		t.Fatalf("ListBypasses: %v, %v", bs, err)
	}
	if diff := cmp.Diff(want, bs[0]); diff != "" {
		t.Errorf("the bypass listed (-want +got):\n%s", diff)
	}
	evs := e.events(t, "dr-martin")
	wantEv := audited{Action: mfa.ActionBypassReviewed, FactorID: b.ID, Reason: "called the hospital: she was on shift",
		Actor: reviewerOrigin.Actor, ClientIP: reviewerOrigin.ClientIP, UserAgent: reviewerOrigin.UserAgent, RequestID: reviewerOrigin.RequestID}
	if diff := cmp.Diff([]audited{wantEv}, auditedOf(evs[1:])); diff != "" {
		t.Errorf("events after the bypass.issued (-want +got):\n%s", diff)
	}
	if _, err := e.svc.ReviewBypass(t.Context(), b.ID, "note"); err == nil || errors.As(err, new(*mfa.Error)) {
		t.Errorf("ReviewBypass without an administrator in the origin: %v, want an internal error", err)
	}
}

// TestListBypasses: the bypasses of a period, newest first, a page at a
// time; bad input names its field.
func TestListBypasses(t *testing.T) {
	e := newEnv(t, envOptions{})
	start := e.clock.Now()
	var ids []string // oldest first
	for _, user := range []string{"dr-a", "dr-b", "dr-a", "dr-c"} {
		ids = append(ids, e.issueBypass(t, user, 0).ID)
		e.clock.Advance(time.Hour)
	}
	list := func(q mfa.BypassQuery) []string {
		t.Helper()
		var out []string
		for {
			bs, next, err := e.svc.ListBypasses(asAdmin(t), q)
			if err != nil {
				t.Fatalf("ListBypasses(%+v): %v", q, err)
			}
			for _, b := range bs {
				out = append(out, b.ID)
			}
			if next == "" {
				return out
			}
			q.Cursor = next
		}
	}
	newest := []string{ids[3], ids[2], ids[1], ids[0]}
	if diff := cmp.Diff(newest, list(mfa.BypassQuery{})); diff != "" {
		t.Errorf("every bypass (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(newest, list(mfa.BypassQuery{Limit: 1})); diff != "" {
		t.Errorf("every bypass, a page of one at a time (-want +got):\n%s", diff)
	}
	q := mfa.BypassQuery{Since: start.Add(time.Hour), Until: start.Add(3 * time.Hour)}
	if diff := cmp.Diff(newest[1:3], list(q)); diff != "" {
		t.Errorf("the bypasses of [1h, 3h) (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		name string
		q    mfa.BypassQuery
		want outcome
	}{
		{"until before since", mfa.BypassQuery{Since: start, Until: start.Add(-time.Second)}, badField("until")},
		{"until at since", mfa.BypassQuery{Since: start, Until: start}, badField("until")},
		{"too many", mfa.BypassQuery{Limit: mfa.MaxBypassLimit + 1}, badField("limit")},
		{"a cursor the store did not give", mfa.BypassQuery{Cursor: "nonsense-cursor"}, badField("cursor")},
		{"a cursor with a space", mfa.BypassQuery{Cursor: "a b"}, badField("cursor")},
	} {
		_, _, err := e.svc.ListBypasses(asAdmin(t), tt.q)
		if diff := cmp.Diff(tt.want, outcomeOf(t, err)); diff != "" {
			t.Errorf("ListBypasses with %s (-want +got):\n%s", tt.name, diff)
		}
	}
}
