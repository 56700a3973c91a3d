package mfa_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// TestNotifiable: the events a user hears about, and no other: a
// verification only when a recovery code was used.
func TestNotifiable(t *testing.T) {
	// Notifiable whatever their Result.
	always := []mfa.Action{
		mfa.ActionFactorAdded, mfa.ActionFactorRemoved, mfa.ActionFactorSuspended, mfa.ActionFactorEnabled,
		mfa.ActionUserReset, mfa.ActionUserLocked, mfa.ActionRecoveryRegenerated, mfa.ActionActivationIssued,
		mfa.ActionBypassIssued,
	}
	// Not notifiable, but verify.recovery and verify.bypass accepted (a
	// recovery code or a bypass code used). A bypass's review is between
	// administrators.
	never := []mfa.Action{
		mfa.ActionEnrollmentCreated, mfa.ActionEnrollmentActivated, mfa.ActionUserUnlocked,
		mfa.ActionVerifyTOTP, mfa.ActionVerifyWebAuthn, mfa.ActionVerifyRecovery, mfa.ActionVerifyActivation,
		mfa.ActionVerifyBypass, mfa.ActionBypassReviewed,
	}
	results := []string{"", mfa.ResultAccepted, mfa.ResultRejected, mfa.ResultLocked, mfa.ResultReplay, mfa.ResultSuspended}
	for _, a := range mfa.Actions() {
		if !slices.Contains(always, a) && !slices.Contains(never, a) {
			t.Errorf("action %s is new: decide whether a user hears of it (mfa.Notifiable), and list it here", a)
		}
		for _, r := range results {
			used := a == mfa.ActionVerifyRecovery || a == mfa.ActionVerifyBypass
			want := slices.Contains(always, a) || used && r == mfa.ResultAccepted
			if got := mfa.Notifiable(mfa.Event{UserID: "u", Action: a, Result: r}); got != want {
				t.Errorf("Notifiable(%s %q) = %v, want %v", a, r, got, want)
			}
		}
	}
}

// TestParseEventID: an Event.ID() parses back; anything else is refused.
func TestParseEventID(t *testing.T) {
	for _, e := range []mfa.Event{{UserID: "dr-martin", Seq: 7}, {UserID: "a/b", Seq: 1}, {UserID: "x", Seq: 1<<64 - 1}} {
		user, seq, err := mfa.ParseEventID(e.ID())
		if err != nil || user != e.UserID || seq != e.Seq {
			t.Errorf("ParseEventID(%q) = %q, %d, %v", e.ID(), user, seq, err)
		}
	}
	for _, id := range []string{"", "alice", "alice/", "/1", "alice/0", "alice/01", "alice/+1", "alice/-1", "alice/1x", "alice/18446744073709551616"} {
		if _, _, err := mfa.ParseEventID(id); err == nil {
			t.Errorf("ParseEventID(%q) accepted", id)
		}
	}
}

// TestNotificationsOfFlows: what the flows append reaches the outbox when
// the user should hear of it: a factor added, a lock, a recovery code
// used, a reset; not a verification.
func TestNotificationsOfFlows(t *testing.T) {
	e := newEnv(t, envOptions{})
	u := e.enrollTOTP(t, "dr-notified")
	for _, code := range []string{e.code(t, u, 0), e.wrongCode(t, u), e.wrongCode(t, u), e.wrongCode(t, u)} {
		if _, err := e.svc.VerifyTOTP(asPortal(t), u.userID, code, browser); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(time.Hour)
	r, err := e.svc.VerifyRecoveryCode(asPortal(t), u.userID, u.recovery[0].Reveal(), browser)
	if err != nil || r.Verdict != mfa.Accepted {
		t.Fatalf("recovery code: %+v, %v", r, err)
	}
	if _, err := e.svc.ResetUser(asAdmin(t), u.userID, "lost phone, ticket 1"); err != nil {
		t.Fatal(err)
	}

	var want []mfa.Event
	for _, ev := range e.events(t, u.userID) {
		if mfa.Notifiable(ev) {
			want = append(want, ev)
		}
	}
	ns, err := e.bolt.ClaimNotifications(t.Context(), e.clock.Now(), time.Minute, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var got []mfa.Event
	var actions []mfa.Action
	for _, n := range ns {
		got = append(got, n.Event)
		actions = append(actions, n.Event.Action)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outbox against the trail's notifiable events (-want +got):\n%s", diff)
	}
	wantActions := []mfa.Action{mfa.ActionFactorAdded, mfa.ActionUserLocked, mfa.ActionVerifyRecovery, mfa.ActionUserReset}
	if diff := cmp.Diff(wantActions, actions); diff != "" {
		t.Errorf("notified actions (-want +got):\n%s", diff)
	}
}
