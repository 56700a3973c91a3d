package mfa_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/boltstore"
	"github.com/secondfactor/secondfactor/internal/mfa"
)

// TestAuditLockout: 11 wrong codes at the default limits leave 10 REJECTED
// verifications, the lock and a LOCKED verification, each with the caller,
// the request id and the browser's address and user agent; the same for a
// user the service does not know.
func TestAuditLockout(t *testing.T) {
	e := newEnv(t, envOptions{limits: mfa.DefaultLimits()})
	u := e.enrollTOTP(t, "dr-guessed")
	lockedUntil := e.clock.Now().Add(mfa.DefaultLimits().BaseLockout)
	locked := fromBrowser(mfa.ActionUserLocked, "", "")
	locked.Reason = "too many failed attempts: locked until " + lockedUntil.Format(time.RFC3339)
	var want []audited
	for range 10 {
		want = append(want, fromBrowser(mfa.ActionVerifyTOTP, mfa.ResultRejected, ""))
	}
	want = append(want, locked, fromBrowser(mfa.ActionVerifyTOTP, mfa.ResultLocked, ""))

	for _, userID := range []string{u.userID, "nobody-by-this-name"} {
		t.Run(userID, func(t *testing.T) {
			var verdicts []mfa.Verdict
			for range 11 {
				r, err := e.svc.VerifyTOTP(asPortal(t), userID, e.wrongCode(t, u), browser)
				if err != nil {
					t.Fatal(err)
				}
				verdicts = append(verdicts, r.Verdict)
			}
			if want := append(slices.Repeat([]mfa.Verdict{mfa.Rejected}, 10), mfa.Locked); !slices.Equal(verdicts, want) {
				t.Errorf("verdicts %v, want %v", verdicts, want)
			}
			got := auditedOf(e.events(t, userID))
			got = slices.DeleteFunc(got, func(a audited) bool {
				return a.Action != mfa.ActionVerifyTOTP && a.Action != mfa.ActionUserLocked
			})
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("events mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAuditTrailOfEachFlow: every flow leaves its events, in order, with
// who did it, from where, and why; the chain is intact and holds no
// secret.
func TestAuditTrailOfEachFlow(t *testing.T) {
	e := newEnv(t, envOptions{webauthn: true, policy: mfa.PolicyActivationCode})
	const userID = "dr-flows"
	var secrets []string
	keep := func(s string) string { secrets = append(secrets, s); return s }

	code, _, err := e.svc.IssueActivationCode(asAdmin(t), userID, "identity checked by phone")
	if err != nil {
		t.Fatal(err)
	}
	keep(code.Reveal())
	ne, err := e.svc.CreateEnrollment(asPortal(t), mfa.EnrollmentRequest{UserID: userID, Proof: mfa.ProofPasswordOnly})
	if err != nil {
		t.Fatal(err)
	}
	token := keep(ne.Token.Reveal())
	wrongActivation := "ABCD-EFGH-JKMN"
	if code.Reveal() == wrongActivation {
		wrongActivation = "ABCD-EFGH-JKMP"
	}
	if _, err := e.svc.BeginTOTPEnrollment(asPortal(t), token, "phone", wrongActivation); err == nil {
		t.Fatal("a wrong activation code activated the session")
	}
	p, err := e.svc.BeginTOTPEnrollment(asPortal(t), token, "phone", code.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	u := enrolled{userID: userID, secret: p.Key.Secret, params: p.Params, factorID: p.FactorID}
	_, codes, err := e.svc.FinishTOTPEnrollment(asPortal(t), token, p.FactorID, keep(e.code(t, u, 0)))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range codes {
		keep(c.Reveal())
	}
	e.clock.Advance(period)

	verify := func(code string) {
		t.Helper()
		if _, err := e.svc.VerifyTOTP(asPortal(t), userID, code, browser); err != nil {
			t.Fatal(err)
		}
	}
	good := keep(e.code(t, u, 0))
	verify(good)
	verify(good)
	verify(e.wrongCode(t, u))
	recover := func(code string) {
		t.Helper()
		if _, err := e.svc.VerifyRecoveryCode(asPortal(t), userID, code, browser); err != nil {
			t.Fatal(err)
		}
	}
	recover(codes[0].Reveal())
	recover("0000-0000-0000-0000")

	regen := e.createSession(t, userID, mfa.ProofExistingFactor)
	keep(regen.Token.Reveal())
	newCodes, err := e.svc.RegenerateRecoveryCodes(asPortal(t), regen.Token.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range newCodes {
		keep(c.Reveal())
	}
	add := e.createSession(t, userID, mfa.ProofExistingFactor)
	keep(add.Token.Reveal())
	key, kf, _ := e.registerKey(t, add.Token.Reveal())
	if r := e.login(t, userID, key); r.Verdict != mfa.Accepted {
		t.Fatalf("login: %+v", r)
	}

	if err := e.svc.UnlockUser(asAdmin(t), userID, "user called the help desk"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteFactor(asAdmin(t), userID, u.factorID, "phone lost"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ResetUser(asAdmin(t), userID, "key stolen"); err != nil {
		t.Fatal(err)
	}

	// The sessions created by e.createSession have no origin.
	created := func(proof mfa.Proof) audited {
		return audited{Action: mfa.ActionEnrollmentCreated, Result: string(proof)}
	}
	plain := func(a mfa.Action, result, factorID string) audited {
		return audited{Action: a, Result: result, FactorID: factorID}
	}
	want := []audited{
		byAdmin(mfa.ActionActivationIssued, "", "identity checked by phone"),
		byPortal(mfa.ActionEnrollmentCreated, string(mfa.ProofPasswordOnly), ""),
		byPortal(mfa.ActionVerifyActivation, mfa.ResultRejected, ""),
		byPortal(mfa.ActionEnrollmentActivated, mfa.ResultAccepted, ""),
		byPortal(mfa.ActionFactorAdded, string(mfa.KindTOTP), u.factorID),
		fromBrowser(mfa.ActionVerifyTOTP, mfa.ResultAccepted, u.factorID),
		fromBrowser(mfa.ActionVerifyTOTP, mfa.ResultReplay, u.factorID),
		fromBrowser(mfa.ActionVerifyTOTP, mfa.ResultRejected, ""),
		fromBrowser(mfa.ActionVerifyRecovery, mfa.ResultAccepted, ""),
		fromBrowser(mfa.ActionVerifyRecovery, mfa.ResultRejected, ""),
		created(mfa.ProofExistingFactor),
		byPortal(mfa.ActionRecoveryRegenerated, "", ""),
		created(mfa.ProofExistingFactor),
		plain(mfa.ActionFactorAdded, string(mfa.KindWebAuthn), kf.ID),
		fromBrowser(mfa.ActionVerifyWebAuthn, mfa.ResultAccepted, kf.ID),
		byAdmin(mfa.ActionUserUnlocked, "", "user called the help desk"),
		byAdmin(mfa.ActionFactorRemoved, u.factorID, "phone lost"),
		byAdmin(mfa.ActionUserReset, "", "key stolen"),
	}
	evs := e.events(t, userID)
	if diff := cmp.Diff(want, auditedOf(evs)); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
	for i, ev := range evs {
		if ev.ID() != fmt.Sprintf("%s/%d", userID, i+1) || ev.Hash != mfa.EventHash(ev) {
			t.Errorf("event %d: ID %s, hash %s, want %s/%d and its EventHash", i, ev.ID(), ev.Hash, userID, i+1)
		}
	}
	b, err := json.Marshal(evs)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(string(b), s) {
			t.Errorf("a secret, %q, is in the events", s)
		}
	}
	report, err := e.svc.VerifyAuditTrail(t.Context(), userID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(mfa.ChainReport{Events: uint64(len(want))}, report); diff != "" {
		t.Errorf("VerifyAuditTrail mismatch (-want +got):\n%s", diff)
	}
}

// TestVerifyAuditTrail: an edited, rehashed, removed, repeated or moved
// event breaks its chain there, and the report names it and what is
// wrong; the chains before it are counted intact.
func TestVerifyAuditTrail(t *testing.T) {
	hs := &hookedStore{}
	e := newEnv(t, envOptions{wrap: hs.wrap})
	users := []string{"dr-a", "dr-b", "dr-c"}
	for _, u := range users {
		for i := range 4 {
			if _, err := e.svc.ResetUser(asAdmin(t), u, fmt.Sprintf("reset %d", i+1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	drA := e.events(t, "dr-a")

	// Each case alters dr-b's chain, events 1 to 4 at indexes 0 to 3.
	tests := []struct {
		name  string
		alter func(evs []mfa.Event) []mfa.Event
		// want is the report on dr-b's chain; on every chain, dr-a's 4
		// events count too.
		want mfa.ChainReport
	}{
		{"intact", func(evs []mfa.Event) []mfa.Event { return evs }, mfa.ChainReport{Events: 4}},
		{"a field edited", func(evs []mfa.Event) []mfa.Event {
			evs[1].Reason = "routine"
			return evs
		}, mfa.ChainReport{Events: 1, BrokenEventID: "dr-b/2", Problem: "hash does not match its content"}},
		{"the time edited", func(evs []mfa.Event) []mfa.Event {
			evs[2].Time = evs[2].Time.Add(-time.Hour)
			return evs
		}, mfa.ChainReport{Events: 2, BrokenEventID: "dr-b/3", Problem: "hash does not match its content"}},
		{"edited and rehashed", func(evs []mfa.Event) []mfa.Event {
			evs[1].Reason = "routine"
			evs[1].Hash = mfa.EventHash(evs[1])
			return evs
		}, mfa.ChainReport{Events: 2, BrokenEventID: "dr-b/3", Problem: "previous hash does not match the previous event: it was changed or replaced"}},
		{"one removed", func(evs []mfa.Event) []mfa.Event {
			return slices.Delete(evs, 1, 2)
		}, mfa.ChainReport{Events: 1, BrokenEventID: "dr-b/3", Problem: "previous event missing: 2 expected"}},
		// A chain whose first events are gone was pruned: it is checked
		// from its first event left, whose PrevHash cannot be.
		{"the first two removed (pruned)", func(evs []mfa.Event) []mfa.Event {
			return evs[2:]
		}, mfa.ChainReport{Events: 2}},
		{"pruned, then the first left edited", func(evs []mfa.Event) []mfa.Event {
			evs = evs[1:]
			evs[0].Reason = "routine"
			return evs
		}, mfa.ChainReport{Events: 0, BrokenEventID: "dr-b/2", Problem: "hash does not match its content"}},
		{"pruned, then one removed", func(evs []mfa.Event) []mfa.Event {
			return slices.Delete(evs[1:], 1, 2)
		}, mfa.ChainReport{Events: 1, BrokenEventID: "dr-b/4", Problem: "previous event missing: 3 expected"}},
		{"pruned, then the second left rehashed", func(evs []mfa.Event) []mfa.Event {
			evs = evs[1:]
			evs[0].Reason = "routine"
			evs[0].Hash = mfa.EventHash(evs[0])
			return evs
		}, mfa.ChainReport{Events: 1, BrokenEventID: "dr-b/3", Problem: "previous hash does not match the previous event: it was changed or replaced"}},
		{"one repeated", func(evs []mfa.Event) []mfa.Event {
			return slices.Insert(evs, 2, evs[1])
		}, mfa.ChainReport{Events: 2, BrokenEventID: "dr-b/2", Problem: "out of order: 3 expected"}},
		{"another user's event put in its place", func(evs []mfa.Event) []mfa.Event {
			evs[1] = drA[1]
			return evs
		}, mfa.ChainReport{Events: 1, BrokenEventID: "dr-b/2", Problem: "event of another user's chain"}},
		// A chain cannot tell that its last events were removed: the
		// documented limit of VerifyAuditTrail.
		{"the last removed", func(evs []mfa.Event) []mfa.Event {
			return evs[:3]
		}, mfa.ChainReport{Events: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs.chain = func(userID string, evs []mfa.Event) []mfa.Event {
				if userID != "dr-b" {
					return evs
				}
				return tt.alter(slices.Clone(evs))
			}
			t.Cleanup(func() { hs.chain = nil })
			got, err := e.svc.VerifyAuditTrail(t.Context(), "dr-b")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("VerifyAuditTrail(dr-b) mismatch (-want +got):\n%s", diff)
			}
			all := tt.want
			all.Events += 4
			if all.BrokenEventID == "" {
				all.Events += 4 // dr-c
			}
			got, err = e.svc.VerifyAuditTrail(t.Context(), "")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(all, got); diff != "" {
				t.Errorf("VerifyAuditTrail(every chain) mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestVerifyAuditTrailOfTheStoredFile: an event edited or removed in the
// embedded store's file, behind the store's back, breaks the chain there;
// an event removed at the end shows once another is appended.
func TestVerifyAuditTrailOfTheStoredFile(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, e *env) error
		want   mfa.ChainReport
	}{
		{"an event edited", func(t *testing.T, e *env) error {
			return boltstore.TamperEvent(t.Context(), e.bolt, "dr-b", 2, func(ev *mfa.Event) { ev.Reason = "routine" })
		}, mfa.ChainReport{Events: 1, BrokenEventID: "dr-b/2", Problem: "hash does not match its content"}},
		{"an event removed", func(t *testing.T, e *env) error {
			return boltstore.RemoveEvent(t.Context(), e.bolt, "dr-b", 2)
		}, mfa.ChainReport{Events: 1, BrokenEventID: "dr-b/3", Problem: "previous event missing: 2 expected"}},
		{"the last event removed, then one appended", func(t *testing.T, e *env) error {
			if err := boltstore.RemoveEvent(t.Context(), e.bolt, "dr-b", 3); err != nil {
				return err
			}
			_, err := e.svc.ResetUser(asAdmin(t), "dr-b", "reset 4")
			return err
		}, mfa.ChainReport{Events: 2, BrokenEventID: "dr-b/4", Problem: "previous event missing: 3 expected"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			for _, u := range []string{"dr-a", "dr-b"} {
				for i := range 3 {
					if _, err := e.svc.ResetUser(asAdmin(t), u, fmt.Sprintf("reset %d", i+1)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := tt.tamper(t, e); err != nil {
				t.Fatal(err)
			}
			for _, userID := range []string{"dr-b", ""} {
				want := tt.want
				if userID == "" {
					want.Events += 3 // dr-a's
				}
				got, err := e.svc.VerifyAuditTrail(t.Context(), userID)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("VerifyAuditTrail(%q) mismatch (-want +got):\n%s", userID, diff)
				}
			}
		})
	}
}

// TestListAuditEventsInput: the query is checked, each bad field named.
func TestListAuditEventsInput(t *testing.T) {
	e := newEnv(t, envOptions{})
	now := e.clock.Now()
	tests := []struct {
		name string
		q    mfa.EventQuery
		want outcome
	}{
		{"every user, default limit", mfa.EventQuery{}, outcome{}},
		{"the largest page", mfa.EventQuery{UserID: "dr-x", Limit: mfa.MaxEventLimit}, outcome{}},
		{"known actions and a range", mfa.EventQuery{Actions: []mfa.Action{mfa.ActionUserReset, mfa.ActionVerifyTOTP}, Since: now, Until: now.Add(time.Second)}, outcome{}},
		{"a negative limit", mfa.EventQuery{Limit: -1}, badField("limit")},
		{"too large a page", mfa.EventQuery{Limit: mfa.MaxEventLimit + 1}, badField("limit")},
		{"a bad user id", mfa.EventQuery{UserID: "dr x"}, badField("user_id")},
		{"an unknown action", mfa.EventQuery{Actions: []mfa.Action{mfa.ActionUserReset, "user.deleted"}}, badField("actions")},
		{"an empty range", mfa.EventQuery{Since: now, Until: now}, badField("until")},
		{"a range backwards", mfa.EventQuery{Since: now, Until: now.Add(-time.Second)}, badField("until")},
		{"a cursor with a space", mfa.EventQuery{Cursor: "a b"}, badField("cursor")},
		{"too long a cursor", mfa.EventQuery{Cursor: strings.Repeat("a", mfa.MaxCursor+1)}, badField("cursor")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := e.svc.ListAuditEvents(t.Context(), tt.q)
			if diff := cmp.Diff(tt.want, outcomeOf(t, err)); diff != "" {
				t.Errorf("ListAuditEvents mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestListAuditEvents: newest first, filtered by user, action and time,
// page by page.
func TestListAuditEvents(t *testing.T) {
	e := newEnv(t, envOptions{})
	start := e.clock.Now()
	for i := range 3 {
		for _, u := range []string{"dr-a", "dr-b"} {
			if _, err := e.svc.ResetUser(asAdmin(t), u, fmt.Sprintf("reset %d", i)); err != nil {
				t.Fatal(err)
			}
			if err := e.svc.UnlockUser(asAdmin(t), u, fmt.Sprintf("unlock %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		e.clock.Advance(time.Minute)
	}
	ids := func(evs []mfa.Event) []string {
		out := []string{}
		for _, ev := range evs {
			out = append(out, ev.ID()+" "+ev.Reason)
		}
		return out
	}
	list := func(q mfa.EventQuery) ([]string, string) {
		t.Helper()
		evs, next, err := e.svc.ListAuditEvents(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		return ids(evs), next
	}
	got, _ := list(mfa.EventQuery{UserID: "dr-b", Actions: []mfa.Action{mfa.ActionUserReset}})
	if diff := cmp.Diff([]string{"dr-b/5 reset 2", "dr-b/3 reset 1", "dr-b/1 reset 0"}, got); diff != "" {
		t.Errorf("dr-b's resets (-want +got):\n%s", diff)
	}
	got, _ = list(mfa.EventQuery{Since: start.Add(time.Minute), Until: start.Add(2 * time.Minute), Actions: []mfa.Action{mfa.ActionUserUnlocked}})
	if diff := cmp.Diff([]string{"dr-b/4 unlock 1", "dr-a/4 unlock 1"}, got); diff != "" {
		t.Errorf("the unlocks of the second minute (-want +got):\n%s", diff)
	}
	var pages [][]string
	q := mfa.EventQuery{UserID: "dr-a", Limit: 4}
	for {
		page, next := list(q)
		pages = append(pages, page)
		if next == "" {
			break
		}
		q.Cursor = next
	}
	want := [][]string{
		{"dr-a/6 unlock 2", "dr-a/5 reset 2", "dr-a/4 unlock 1", "dr-a/3 reset 1"},
		{"dr-a/2 unlock 0", "dr-a/1 reset 0"},
	}
	if diff := cmp.Diff(want, pages); diff != "" {
		t.Errorf("dr-a's events by pages of 4 (-want +got):\n%s", diff)
	}
}

// TestAuditFailsClosed: when an event cannot be written, the call that
// made the change fails and the log says what the trail misses, with the
// request id. The change itself is made: an accepted code is spent.
func TestAuditFailsClosed(t *testing.T) {
	hs := &hookedStore{}
	e := newEnv(t, envOptions{wrap: hs.wrap})
	u := e.enrollTOTP(t, "dr-unrecorded")
	code := e.code(t, u, 0)
	broken := errors.New("disk full")
	hs.appendErr = broken
	calls := []struct {
		name string
		call func() error
	}{
		{"VerifyTOTP", func() error {
			_, err := e.svc.VerifyTOTP(asPortal(t), u.userID, code, browser)
			return err
		}},
		{"UnlockUser", func() error { return e.svc.UnlockUser(asAdmin(t), u.userID, "help desk") }},
		{"ResetUser", func() error {
			_, err := e.svc.ResetUser(asAdmin(t), u.userID, "help desk")
			return err
		}},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, broken) {
			t.Errorf("%s: error %v, want one wrapping %v", c.name, err, broken)
		}
	}
	var lost []string
	for _, l := range e.logs.lines(t) {
		if strings.HasPrefix(fmt.Sprint(l["msg"]), "audit event not written") {
			lost = append(lost, fmt.Sprintf("%v %v", l["action"], l["request_id"]))
		}
	}
	if diff := cmp.Diff([]string{"verify.totp req-portal", "user.unlocked req-admin", "user.reset req-admin"}, lost); diff != "" {
		t.Errorf("log lines of lost events (-want +got):\n%s", diff)
	}
	hs.appendErr = nil
	if got := e.user(t, u.userID); len(got.Factors) != 0 {
		t.Errorf("the reset was not made: %+v", got)
	}
}
