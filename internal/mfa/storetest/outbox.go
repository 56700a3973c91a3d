package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// The cases of the outbox (mfa.Outbox): what AppendEvent enqueues, claims
// and their leases, completion, retries, drops, and concurrent claimers.

// runOutbox runs the outbox cases, one store each.
func runOutbox(t *testing.T, newStore NewStore) {
	for _, c := range []struct {
		name string
		fn   func(t *testing.T, s mfa.Store)
	}{
		{"OutboxEnqueue", testOutboxEnqueue},
		{"OutboxDueBoundary", testOutboxDueBoundary},
		{"OutboxOrder", testOutboxOrder},
		{"OutboxComplete", testOutboxComplete},
		{"OutboxRetry", testOutboxRetry},
		{"OutboxTakeOver", testOutboxTakeOver},
		{"OutboxDrop", testOutboxDrop},
		{"OutboxRefused", testOutboxRefused},
		{"ConcurrentClaimNotifications", testConcurrentClaim},
		{"ConcurrentAppendNotifiable", testConcurrentAppendNotifiable},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, newStore(t))
		})
	}
}

const notifyLease = 30 * time.Second

// claimAt claims up to max notifications at now with notifyLease and checks what
// the contract says of each: leased until now + notifyLease (in whole ms).
func claimAt(t *testing.T, s mfa.Store, now time.Time, max int) []mfa.Notification {
	t.Helper()
	ns, err := s.ClaimNotifications(t.Context(), now, notifyLease, max)
	must(t, err)
	until := time.UnixMilli(now.UnixMilli()).Add(notifyLease)
	for _, n := range ns {
		if !n.LeasedUntil.Equal(until) {
			t.Fatalf("claim at %v: %s leased until %v, want %v", now, n.Event.ID(), n.LeasedUntil, until)
		}
	}
	return ns
}

// notificationIDs returns the IDs of ns, in their order.
func notificationIDs(ns []mfa.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Event.ID()
	}
	return out
}

// wantClaimed fails unless claiming at now gets the notifications of want,
// in that order.
func wantClaimed(t *testing.T, s mfa.Store, now time.Time, max int, want ...string) []mfa.Notification {
	t.Helper()
	ns := claimAt(t, s, now, max)
	if diff := cmp.Diff(want, notificationIDs(ns), equateEmpty); diff != "" {
		t.Fatalf("claim at %v, max %d (-want +got):\n%s", now, max, diff)
	}
	return ns
}

func wantBacklog(t *testing.T, s mfa.Store, want int) {
	t.Helper()
	n, err := s.PendingNotifications(t.Context())
	must(t, err)
	if n != want {
		t.Fatalf("PendingNotifications = %d, want %d", n, want)
	}
}

// everyEvent returns an event of each action, and of each result of the
// verifications.
func everyEvent(user string) []mfa.Event {
	var out []mfa.Event
	results := []string{mfa.ResultAccepted, mfa.ResultRejected, mfa.ResultLocked, mfa.ResultReplay, mfa.ResultSuspended}
	for _, a := range mfa.Actions() {
		switch a {
		case mfa.ActionVerifyTOTP, mfa.ActionVerifyWebAuthn, mfa.ActionVerifyRecovery, mfa.ActionVerifyActivation, mfa.ActionVerifyBypass:
			for _, r := range results {
				out = append(out, mfa.Event{UserID: user, Action: a, Result: r})
			}
		default:
			out = append(out, mfa.Event{UserID: user, Action: a, FactorID: "00000000000000a1", Reason: "why"})
		}
	}
	return out
}

// testOutboxEnqueue: AppendEvent enqueues the notifiable events (the
// actions a user hears about, and verify.recovery accepted) and no other;
// a claim returns each as appended, with no failed attempt and Claim 1.
func testOutboxEnqueue(t *testing.T, s mfa.Store) {
	var want []mfa.Event
	notifiable := map[string]bool{}
	for i, e := range everyEvent("alice") {
		e.Time = t0.Add(time.Duration(i) * ms)
		e = appendEvent(t, s, e)
		if mfa.Notifiable(e) {
			want = append(want, e)
			notifiable[string(e.Action)+"/"+e.Result] = true
		}
	}
	wantNotifiable := []string{"factor.added/", "factor.removed/", "factor.suspended/", "factor.enabled/", "user.reset/",
		"user.locked/", "recovery.regenerated/", "activation.issued/", "verify.recovery/accepted",
		"bypass.issued/", "verify.bypass/accepted"}
	for _, a := range wantNotifiable {
		if !notifiable[a] {
			t.Fatalf("%s is not notifiable; notifiable: %v", a, notifiable)
		}
	}
	if len(notifiable) != len(wantNotifiable) {
		t.Fatalf("notifiable: %v, want the %d above", notifiable, len(wantNotifiable))
	}
	wantBacklog(t, s, len(want))
	now := t0.Add(time.Hour)
	ns := claimAt(t, s, now, 1000)
	if len(ns) != len(want) {
		t.Fatalf("claimed %v, want %d notifications", notificationIDs(ns), len(want))
	}
	for i, n := range ns {
		if diff := cmp.Diff(mfa.Notification{Event: want[i], Claim: 1, LeasedUntil: n.LeasedUntil}, n); diff != "" {
			t.Fatalf("notification %d (-want +got):\n%s", i, diff)
		}
	}
	wantBacklog(t, s, len(want))
	wantClaimed(t, s, now, 1000)
}

// testOutboxDueBoundary: a notification is due from its event's time on,
// and a notifyLease holds while now is before its end: at the end, another claim
// takes it, with the next Claim. Times count in whole milliseconds
// (truncated), a notifyLease is rounded up to one.
func testOutboxDueBoundary(t *testing.T, s mfa.Store) {
	at := t0.Add(10 * ms)
	e := appendEvent(t, s, mfa.Event{UserID: "alice", Time: at, Action: mfa.ActionFactorAdded, FactorID: "00000000000000a1"})
	wantClaimed(t, s, at.Add(-ms), 10)
	wantClaimed(t, s, at.Add(-time.Nanosecond), 10) // 9.999999 ms is 9 ms
	n := wantClaimed(t, s, at, 10, e.ID())[0]
	if n.Claim != 1 || !n.LeasedUntil.Equal(at.Add(notifyLease)) {
		t.Fatalf("first claim: %+v", n)
	}
	wantClaimed(t, s, at, 10)
	wantClaimed(t, s, at.Add(notifyLease-ms), 10)
	n = wantClaimed(t, s, at.Add(notifyLease), 10, e.ID())[0]
	if n.Claim != 2 || n.Attempts != 0 {
		t.Fatalf("claim after the notifyLease ended: %+v, want Claim 2", n)
	}
	// A notifyLease of 1.5 ms holds for 2.
	next := at.Add(2 * notifyLease)
	ns, err := s.ClaimNotifications(t.Context(), next, 1500*time.Microsecond, 10)
	must(t, err)
	if len(ns) != 1 || !ns[0].LeasedUntil.Equal(next.Add(2*ms)) {
		t.Fatalf("claim with a notifyLease of 1.5 ms: %+v, want one leased for 2 ms", ns)
	}
	wantClaimed(t, s, next.Add(ms), 10)
	wantClaimed(t, s, next.Add(2*ms), 10, e.ID())
}

// testOutboxOrder: a claim takes those due the longest first, at most max.
func testOutboxOrder(t *testing.T, s mfa.Store) {
	var want []string
	for i, user := range []string{"carol", "alice", "bob"} {
		e := appendEvent(t, s, mfa.Event{UserID: user, Time: t0.Add(time.Duration(2-i) * ms), Action: mfa.ActionUserReset})
		want = append([]string{e.ID()}, want...)
	}
	wantClaimed(t, s, t0.Add(time.Minute), 2, want[:2]...)
	wantClaimed(t, s, t0.Add(time.Minute), 2, want[2])
	wantBacklog(t, s, 3)
}

// testOutboxComplete: a completed notification is gone, leased or not, and
// completing one that is gone is no error.
func testOutboxComplete(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	a := appendEvent(t, s, mfa.Event{UserID: "alice", Time: t0, Action: mfa.ActionFactorRemoved, FactorID: "00000000000000a1"})
	b := appendEvent(t, s, mfa.Event{UserID: "alice", Time: t0, Action: mfa.ActionUserLocked})
	wantClaimed(t, s, t0, 1, a.ID())
	must(t, s.CompleteNotification(ctx, a.ID()))
	must(t, s.CompleteNotification(ctx, b.ID())) // not claimed: removed too
	wantBacklog(t, s, 0)
	wantClaimed(t, s, t0.Add(2*notifyLease), 10)
	must(t, s.CompleteNotification(ctx, a.ID()))
	must(t, s.CompleteNotification(ctx, "nobody/7"))
	// The chain keeps its events.
	wantChain(t, s, "alice", a, b)
}

// testOutboxRetry: a retry makes the notification due at next with its
// attempts; a retry under a claim that is no longer the notification's
// is ErrConflict, of one that is gone ErrNotFound, and changes nothing.
func testOutboxRetry(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	e := appendEvent(t, s, mfa.Event{UserID: "alice", Time: t0, Action: mfa.ActionRecoveryRegenerated})
	n := wantClaimed(t, s, t0, 10, e.ID())[0]
	next := t0.Add(5 * time.Second)
	must(t, s.RetryNotification(ctx, e.ID(), n.Claim, next, 1))
	wantClaimed(t, s, next.Add(-ms), 10)
	n = wantClaimed(t, s, next, 10, e.ID())[0]
	if n.Attempts != 1 || n.Claim != 2 {
		t.Fatalf("claim after a retry: %+v, want Attempts 1, Claim 2", n)
	}
	// Run twice, a retry sets the same.
	must(t, s.RetryNotification(ctx, e.ID(), 2, next.Add(time.Minute), 2))
	must(t, s.RetryNotification(ctx, e.ID(), 2, next.Add(time.Minute), 2))
	n = wantClaimed(t, s, next.Add(time.Minute), 10, e.ID())[0]
	if n.Attempts != 2 || n.Claim != 3 {
		t.Fatalf("claim after a retry run twice: %+v, want Attempts 2, Claim 3", n)
	}
	// An earlier claim's retry changes nothing.
	wantErr(t, "retry under claim 2 when the notification is at 3", s.RetryNotification(ctx, e.ID(), 2, t0, 9), mfa.ErrConflict)
	wantClaimed(t, s, n.LeasedUntil.Add(-ms), 10)
	n = wantClaimed(t, s, n.LeasedUntil, 10, e.ID())[0]
	if n.Attempts != 2 || n.Claim != 4 {
		t.Fatalf("claim after a refused retry: %+v, want Attempts 2, Claim 4", n)
	}
	// A retry may make it due at once, or in the past.
	must(t, s.RetryNotification(ctx, e.ID(), 4, t0, 0))
	wantClaimed(t, s, t0, 10, e.ID())
	must(t, s.CompleteNotification(ctx, e.ID()))
	wantErr(t, "retry of a completed notification", s.RetryNotification(ctx, e.ID(), 5, next, 1), mfa.ErrNotFound)
	wantErr(t, "retry of an unknown notification", s.RetryNotification(ctx, "bob/1", 1, next, 1), mfa.ErrNotFound)
	wantBacklog(t, s, 0)
}

// testOutboxTakeOver: after a notifyLease ends, another claimer takes the
// notification over; the first one's retry is refused, its completion
// (it delivered after all) removes the notification.
func testOutboxTakeOver(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	e := appendEvent(t, s, mfa.Event{UserID: "alice", Time: t0, Action: mfa.ActionActivationIssued, Reason: "ticket 1"})
	first := wantClaimed(t, s, t0, 10, e.ID())[0]
	second := wantClaimed(t, s, first.LeasedUntil, 10, e.ID())[0]
	if second.Claim != first.Claim+1 {
		t.Fatalf("claims %d then %d, want consecutive", first.Claim, second.Claim)
	}
	wantErr(t, "retry by the first claimer", s.RetryNotification(ctx, e.ID(), first.Claim, t0, 1), mfa.ErrConflict)
	must(t, s.CompleteNotification(ctx, e.ID()))
	wantErr(t, "retry by the second claimer", s.RetryNotification(ctx, e.ID(), second.Claim, t0, 1), mfa.ErrNotFound)
	wantBacklog(t, s, 0)
}

// testOutboxDrop: DropNotifications removes the notifications of events
// before a time, leased or not, and keeps those of that time.
func testOutboxDrop(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	var es []mfa.Event
	for i := range 3 {
		es = append(es, appendEvent(t, s, mfa.Event{UserID: fmt.Sprint("u", i), Time: t0.Add(time.Duration(i) * ms), Action: mfa.ActionUserReset}))
	}
	wantClaimed(t, s, t0, 1, es[0].ID())
	for _, c := range []struct {
		before time.Time
		want   int
	}{
		{t0, 0},
		{t0.Add(ms), 1},                        // es[0], leased
		{t0.Add(ms + 500*time.Microsecond), 1}, // es[1]
		{t0.Add(2 * ms), 0},                    // es[2] is of that time
		{t0.Add(2*ms + time.Nanosecond), 1},    // es[2]
		{t0.Add(time.Hour), 0},                 // none left
	} {
		n, err := s.DropNotifications(ctx, c.before)
		must(t, err)
		if n != c.want {
			t.Fatalf("DropNotifications(%v) = %d, want %d", c.before, n, c.want)
		}
	}
	wantBacklog(t, s, 0)
	wantClaimed(t, s, t0.Add(time.Hour), 10)
}

// testOutboxRefused: arguments the contract does not allow, and a
// cancelled context, change nothing.
func testOutboxRefused(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	e := appendEvent(t, s, mfa.Event{UserID: "alice", Time: t0, Action: mfa.ActionUserReset})
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"claim with notifyLease 0", func() error { _, err := s.ClaimNotifications(ctx, t0, 0, 10); return err }},
		{"claim max 0", func() error { _, err := s.ClaimNotifications(ctx, t0, notifyLease, 0); return err }},
		{"claim max 1001", func() error { _, err := s.ClaimNotifications(ctx, t0, notifyLease, 1001); return err }},
		{"complete of no id", func() error { return s.CompleteNotification(ctx, "alice") }},
		{"complete of seq 0", func() error { return s.CompleteNotification(ctx, "alice/0") }},
		{"complete of seq 01", func() error { return s.CompleteNotification(ctx, "alice/01") }},
		{"retry of no user", func() error { return s.RetryNotification(ctx, "/1", 1, t0, 1) }},
		{"retry with -1 attempts", func() error { return s.RetryNotification(ctx, e.ID(), 0, t0, -1) }},
	} {
		wantMisuse(t, c.name, c.call())
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"ClaimNotifications", func() error { _, err := s.ClaimNotifications(cancelled, t0, notifyLease, 10); return err }},
		{"CompleteNotification", func() error { return s.CompleteNotification(cancelled, e.ID()) }},
		{"RetryNotification", func() error { return s.RetryNotification(cancelled, e.ID(), 0, t0.Add(time.Hour), 1) }},
		{"PendingNotifications", func() error { _, err := s.PendingNotifications(cancelled); return err }},
		{"DropNotifications", func() error { _, err := s.DropNotifications(cancelled, t0.Add(time.Hour)); return err }},
	} {
		if err := c.call(); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled context: %v, want context.Canceled", c.name, err)
		}
	}
	wantBacklog(t, s, 1)
	n := wantClaimed(t, s, t0, 10, e.ID())[0]
	if n.Claim != 1 || n.Attempts != 0 {
		t.Fatalf("after the refused calls: %+v, want unclaimed before", n)
	}
}

// testConcurrentClaim: claimers racing at one instant never get the same
// notification, and between them and a last claim every notification is
// claimed once.
func testConcurrentClaim(t *testing.T, s mfa.Store) {
	const users, each, claimers = 10, 3, 10
	var all []string
	for u := range users {
		for i := range each {
			e := appendEvent(t, s, mfa.Event{UserID: fmt.Sprint("user-", u), Time: t0.Add(time.Duration(i) * ms), Action: mfa.ActionFactorAdded})
			all = append(all, e.ID())
		}
	}
	now := t0.Add(time.Minute)
	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	race(t, claimers, func(int) (bool, error) {
		ns, err := s.ClaimNotifications(t.Context(), now, notifyLease, 5)
		mu.Lock()
		defer mu.Unlock()
		for _, n := range ns {
			got[n.Event.ID()]++
		}
		return len(ns) > 0, err
	})
	for _, n := range claimAt(t, s, now, 1000) {
		got[n.Event.ID()]++
	}
	for _, id := range all {
		if got[id] != 1 {
			t.Fatalf("%s claimed %d times, want once; claims: %v", id, got[id], got)
		}
	}
	if len(got) != len(all) {
		t.Fatalf("claimed %d notifications, want %d", len(got), len(all))
	}
}

// testConcurrentAppendNotifiable: appends racing on one chain, some
// notifiable and some not, enqueue each notifiable event of the chain once
// and nothing else; once claimed and completed, the outbox is empty.
func testConcurrentAppendNotifiable(t *testing.T, s mfa.Store) {
	const n = 20
	race(t, n, func(i int) (bool, error) {
		e := mfa.Event{UserID: "alice", Time: t0.Add(time.Duration(i) * ms), Action: mfa.ActionVerifyTOTP, Result: mfa.ResultRejected}
		if i%2 == 0 {
			e.Action, e.Result, e.FactorID = mfa.ActionFactorAdded, "totp", fmt.Sprintf("%016x", i)
		}
		_, err := s.AppendEvent(t.Context(), e)
		return false, err
	})
	chain, err := s.Chain(t.Context(), "alice", 1, 1000)
	must(t, err)
	checkChain(t, "alice", chain)
	var want []mfa.Event
	for _, e := range chain {
		if mfa.Notifiable(e) {
			want = append(want, e)
		}
	}
	ns := claimAt(t, s, t0.Add(time.Hour), 1000)
	slices.SortFunc(ns, func(a, b mfa.Notification) int { return int(a.Event.Seq) - int(b.Event.Seq) })
	got := make([]mfa.Event, len(ns))
	for i, n := range ns {
		got[i] = n.Event
		must(t, s.CompleteNotification(t.Context(), n.Event.ID()))
	}
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Fatalf("notifications of %d racing appends, half notifiable (-chain +claimed):\n%s", n, diff)
	}
	wantBacklog(t, s, 0)
}
