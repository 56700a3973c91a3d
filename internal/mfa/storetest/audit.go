package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// The cases of the audit trail: AppendEvent, Events, Chain, ChainUsers.

// appendEvent appends e and checks what AppendEvent returns against the
// rule: the chain's next Seq, the previous hash, EventHash, the time in
// whole milliseconds.
func appendEvent(t *testing.T, s mfa.Store, e mfa.Event) mfa.Event {
	t.Helper()
	got, err := s.AppendEvent(t.Context(), e)
	must(t, err)
	want := e
	want.Time = time.UnixMilli(e.Time.UnixMilli())
	want.Seq, want.PrevHash, want.Hash = got.Seq, got.PrevHash, mfa.EventHash(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("AppendEvent(%+v) (-want +got):\n%s", e, diff)
	}
	return got
}

// wantChain fails unless user's chain is want, whole and intact.
func wantChain(t *testing.T, s mfa.Store, user string, want ...mfa.Event) {
	t.Helper()
	got, err := s.Chain(t.Context(), user, 1, 1000)
	must(t, err)
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Fatalf("chain of %s (-want +got):\n%s", user, diff)
	}
	checkChain(t, user, got)
}

// checkChain fails unless evs are a whole chain from its first event: Seq
// 1, 2, ..., each holding the hash of the one before, each hash EventHash.
func checkChain(t *testing.T, user string, evs []mfa.Event) {
	t.Helper()
	prev := ""
	for i, e := range evs {
		if e.UserID != user || e.Seq != uint64(i+1) || e.PrevHash != prev || e.Hash != mfa.EventHash(e) {
			t.Fatalf("chain of %s, event %d: %+v; want Seq %d after hash %q, and its own hash", user, i, e, i+1, prev)
		}
		prev = e.Hash
	}
}

// testAppendEvent: the first event of a chain has Seq 1 and no previous
// hash, each next one the next Seq and the hash of the one before; Seq,
// PrevHash and Hash given are ignored; time is kept to the millisecond;
// chains are per user.
func testAppendEvent(t *testing.T, s mfa.Store) {
	e1 := appendEvent(t, s, mfa.Event{
		UserID: "alice", Time: t0.Add(999 * time.Microsecond), Action: mfa.ActionVerifyTOTP, Result: "accepted",
		FactorID: "00000000000000a1", Actor: "portal", Reason: "why", ClientIP: "192.0.2.1", UserAgent: "ua",
		RequestID: "req-1", Seq: 77, PrevHash: "forged", Hash: "forged",
	})
	if e1.Seq != 1 || e1.PrevHash != "" || !e1.Time.Equal(t0) {
		t.Fatalf("first event: %+v; want Seq 1, no previous hash, time %v", e1, t0)
	}
	// Events of several users and one time, in any order of time.
	e2 := appendEvent(t, s, mfa.Event{UserID: "alice", Time: t0.Add(-time.Hour), Action: mfa.ActionUserReset, Seq: 1})
	b1 := appendEvent(t, s, mfa.Event{UserID: "bob", Time: t0, Action: mfa.ActionUserReset})
	e3 := appendEvent(t, s, mfa.Event{UserID: "alice", Time: t0, Action: mfa.ActionUserReset})
	if e2.Seq != 2 || e2.PrevHash != e1.Hash || b1.Seq != 1 || b1.PrevHash != "" || e3.Seq != 3 || e3.PrevHash != e2.Hash {
		t.Fatalf("events 2 and 3 of alice, 1 of bob: %+v, %+v, %+v", e2, e3, b1)
	}
	wantChain(t, s, "alice", e1, e2, e3)
	wantChain(t, s, "bob", b1)
	wantChain(t, s, "nobody")

	_, err := s.AppendEvent(t.Context(), mfa.Event{Time: t0, Action: mfa.ActionUserReset})
	wantMisuse(t, "AppendEvent without a user", err)
	users, err := s.ChainUsers(t.Context(), "", 10)
	must(t, err)
	if diff := cmp.Diff([]string{"alice", "bob"}, users); diff != "" {
		t.Fatalf("ChainUsers after a refused append (-want +got):\n%s", diff)
	}
}

// testConcurrentAppendEvent: appends racing on one chain each get their
// own Seq, and the chain stays whole. Half of them append the same event:
// each call is an event of its own.
func testConcurrentAppendEvent(t *testing.T, s mfa.Store) {
	const n = 20
	var (
		mu  sync.Mutex
		got = map[uint64]mfa.Event{}
	)
	race(t, n, func(i int) (bool, error) {
		e := mfa.Event{UserID: "alice", Time: t0, Action: mfa.ActionVerifyTOTP}
		if i%2 == 1 {
			e.Time, e.RequestID = t0.Add(time.Duration(i)*ms), fmt.Sprint(i)
		}
		e, err := s.AppendEvent(t.Context(), e)
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			got[e.Seq] = e
		}
		return false, err
	})
	chain, err := s.Chain(t.Context(), "alice", 1, 1000)
	must(t, err)
	if len(chain) != n || len(got) != n {
		t.Fatalf("%d appends at once: %d events in the chain, %d Seqs; want %d", n, len(chain), len(got), n)
	}
	checkChain(t, "alice", chain)
	for _, e := range chain {
		if diff := cmp.Diff(got[e.Seq], e); diff != "" {
			t.Fatalf("event %d, returned (-) and stored (+):\n%s", e.Seq, diff)
		}
	}
}

// newestFirst orders events as Events lists them: by time, then user ID,
// then Seq, all descending.
func newestFirst(a, b mfa.Event) int {
	if c := b.Time.Compare(a.Time); c != 0 {
		return c
	}
	if c := strings.Compare(b.UserID, a.UserID); c != 0 {
		return c
	}
	switch {
	case a.Seq > b.Seq:
		return -1
	case a.Seq < b.Seq:
		return 1
	}
	return 0
}

// selects reports whether q selects e, its cursor and limit aside.
func selects(q mfa.EventQuery, e mfa.Event) bool {
	return (q.UserID == "" || e.UserID == q.UserID) &&
		(q.Since.IsZero() || !e.Time.Before(q.Since)) &&
		(q.Until.IsZero() || e.Time.Before(q.Until)) &&
		(len(q.Actions) == 0 || slices.Contains(q.Actions, e.Action))
}

// listAll pages through Events with q: every page but the last is full
// and has a cursor, every page after the first holds an event, and the
// last has no cursor.
func listAll(t *testing.T, s mfa.Store, q mfa.EventQuery) []mfa.Event {
	t.Helper()
	var all []mfa.Event
	for page := 1; ; page++ {
		evs, next, err := s.Events(t.Context(), q)
		must(t, err)
		switch {
		case len(evs) > q.Limit:
			t.Fatalf("page %d of %+v: %d events, more than the limit", page, q, len(evs))
		case next != "" && len(evs) != q.Limit:
			t.Fatalf("page %d of %+v: %d events and a cursor: a page with a next one is full", page, q, len(evs))
		case page > 1 && len(evs) == 0:
			t.Fatalf("page %d of %+v: empty, yet the page before gave its cursor", page, q)
		case page > 1000:
			t.Fatalf("%+v: more than 1000 pages", q)
		}
		all = append(all, evs...)
		if next == "" {
			return all
		}
		q.Cursor = next
	}
}

// testEvents lists the events of several users, made in no order of time
// and many at one millisecond, with every kind of filter and page size,
// and compares each listing, page after page, with the events selected and
// ordered here.
func testEvents(t *testing.T, s mfa.Store) {
	users := []string{"bob", "alice", "carol", "a}b:{c"}
	actions := []mfa.Action{mfa.ActionVerifyTOTP, mfa.ActionUserLocked, mfa.ActionFactorAdded}
	var all []mfa.Event
	for i := range 40 {
		all = append(all, appendEvent(t, s, mfa.Event{
			UserID: users[i%len(users)], Time: t0.Add(time.Duration((i*7)%10) * ms), Action: actions[i%len(actions)],
		}))
	}
	at := func(n int) time.Time { return t0.Add(time.Duration(n) * ms) }
	for _, q := range []mfa.EventQuery{
		{},
		{UserID: "alice"},
		{UserID: "a}b:{c"},
		{UserID: "nobody"},
		{Since: at(3), Until: at(7)}, // both boundaries hold events
		{Since: at(3).Add(time.Microsecond), Until: at(7).Add(-time.Microsecond)},
		{Since: at(9)},
		{Until: at(1)},
		{Since: at(10)},
		{Actions: []mfa.Action{mfa.ActionUserLocked, mfa.ActionFactorAdded}},
		{Actions: []mfa.Action{mfa.ActionUserReset}},
		{UserID: "carol", Since: at(2), Until: at(9), Actions: []mfa.Action{mfa.ActionVerifyTOTP}},
	} {
		var want []mfa.Event
		for _, e := range all {
			if selects(q, e) {
				want = append(want, e)
			}
		}
		slices.SortFunc(want, newestFirst)
		for _, limit := range []int{1, 2, 7, 1000} {
			q.Limit = limit
			if diff := cmp.Diff(want, listAll(t, s, q), equateEmpty); diff != "" {
				t.Fatalf("Events(%+v) (-want +got):\n%s", q, diff)
			}
		}
	}
	// The boundaries are exact: an event at Since is listed, one at Until
	// is not.
	evs, _, err := s.Events(t.Context(), mfa.EventQuery{Since: at(3), Until: at(4), Limit: 1000})
	must(t, err)
	if len(evs) == 0 {
		t.Fatal("no event at Since")
	}
	for _, e := range evs {
		if !e.Time.Equal(at(3)) {
			t.Fatalf("Events(since %v, until %v) listed an event at %v", at(3), at(4), e.Time)
		}
	}
}

// testEventsRefused: limits out of 1..1000 are not allowed; a cursor that
// no listing gave is not found.
func testEventsRefused(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	for range 3 {
		appendEvent(t, s, mfa.Event{UserID: "alice", Time: t0, Action: mfa.ActionUserReset})
	}
	for _, limit := range []int{-1, 0, 1001} {
		_, _, err := s.Events(ctx, mfa.EventQuery{Limit: limit})
		wantMisuse(t, fmt.Sprintf("Events with limit %d", limit), err)
		_, err = s.Chain(ctx, "alice", 1, limit)
		wantMisuse(t, fmt.Sprintf("Chain of %d events", limit), err)
		_, err = s.ChainUsers(ctx, "", limit)
		wantMisuse(t, fmt.Sprintf("ChainUsers of %d users", limit), err)
	}
	for _, cursor := range []string{"x", "not a cursor", strings.Repeat("A", 40)} {
		_, _, err := s.Events(ctx, mfa.EventQuery{Limit: 1, Cursor: cursor})
		wantErr(t, fmt.Sprintf("Events with cursor %q", cursor), err, mfa.ErrNotFound)
	}
}

// testChain pages through a chain from any Seq.
func testChain(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	var chain []mfa.Event
	for i := range 10 {
		chain = append(chain, appendEvent(t, s, mfa.Event{UserID: "alice", Time: t0.Add(time.Duration(10-i) * time.Second), Action: mfa.ActionVerifyTOTP}))
		appendEvent(t, s, mfa.Event{UserID: "alicia", Time: t0, Action: mfa.ActionVerifyTOTP})
	}
	for _, c := range []struct {
		from uint64
		n    int
		want []mfa.Event
	}{
		{0, 1000, chain},
		{1, 3, chain[:3]},
		{4, 3, chain[3:6]},
		{9, 3, chain[8:]},
		{10, 1, chain[9:]},
		{11, 5, nil},
		{1 << 63, 5, nil},
	} {
		got, err := s.Chain(ctx, "alice", c.from, c.n)
		must(t, err)
		if diff := cmp.Diff(c.want, got, equateEmpty); diff != "" {
			t.Fatalf("Chain(alice, from %d, %d events) (-want +got):\n%s", c.from, c.n, diff)
		}
	}
	got, err := s.Chain(ctx, "nobody", 1, 10)
	must(t, err)
	if got == nil || len(got) != 0 {
		t.Fatalf("Chain of a user without events: %#v, want an empty slice", got)
	}
}

// testChainUsers pages through the users that have a chain, ascending.
func testChainUsers(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	users := []string{"bob", "a", "alice", "a}b:{c", "{u:a}", "b", "user@example.org"}
	for _, u := range users {
		appendEvent(t, s, mfa.Event{UserID: u, Time: t0, Action: mfa.ActionUserReset})
	}
	// Users without events have no chain.
	enroll(t, s, "carol", "00000000000000a1", 1)
	_, err := s.ResetUser(ctx, "dave", t0)
	must(t, err)
	slices.Sort(users)
	for _, n := range []int{1, 2, 3, 1000} {
		var got []string
		for after := ""; ; {
			page, err := s.ChainUsers(ctx, after, n)
			must(t, err)
			got = append(got, page...)
			if len(page) < n {
				break
			}
			if len(got) > len(users) {
				t.Fatalf("ChainUsers, %d a page: %v, more than the users", n, got)
			}
			after = page[len(page)-1]
		}
		if diff := cmp.Diff(users, got); diff != "" {
			t.Fatalf("ChainUsers, %d a page (-want +got):\n%s", n, diff)
		}
	}
	for _, c := range []struct {
		after string
		want  []string
	}{
		{"alice", []string{"a}b:{c", "b", "bob"}},
		{"alicf", []string{"a}b:{c", "b", "bob"}}, // not a user
		{"user@example.org", []string{"{u:a}"}},
		{"{u:a}", nil},
		{"~", nil},
	} {
		got, err := s.ChainUsers(ctx, c.after, 3)
		must(t, err)
		if diff := cmp.Diff(c.want, got, equateEmpty); diff != "" {
			t.Fatalf("ChainUsers(after %q, 3) (-want +got):\n%s", c.after, diff)
		}
	}
}

// Tamper changes one stored event behind the store's back, as someone who
// can write the store could: edit rewrites the event seq of userID's chain
// in place (its hash stays as it was), or, if nil, removes it. Each store
// package has one for tests (boltstore.TamperEvent and RemoveEvent,
// redisstore.TamperEvent and RemoveEvent).
type Tamper func(ctx context.Context, s mfa.Store, userID string, seq uint64, edit func(*mfa.Event)) error

// RunTamper checks, with a store's Tamper, that the store returns events as
// stored, so that a check of the chain sees an edit: Chain and Events
// return an edited event edited, and no longer a removed one; and that an
// append after a removed last event does not reuse its Seq, so that the
// gap shows.
func RunTamper(t *testing.T, newStore NewStore, tamper Tamper) {
	s := newStore(t)
	ctx := t.Context()
	var chain []mfa.Event
	for i := range 4 {
		chain = append(chain, appendEvent(t, s, mfa.Event{UserID: "alice", Time: t0.Add(time.Duration(i) * time.Second), Action: mfa.ActionVerifyTOTP, Result: "rejected"}))
	}
	other := appendEvent(t, s, mfa.Event{UserID: "bob", Time: t0, Action: mfa.ActionUserReset})

	must(t, tamper(ctx, s, "alice", 2, func(e *mfa.Event) { e.Result = "accepted" }))
	edited := chain[1]
	edited.Result = "accepted"
	got, err := s.Chain(ctx, "alice", 1, 1000)
	must(t, err)
	want := []mfa.Event{chain[0], edited, chain[2], chain[3]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Chain after an edit (-want +got):\n%s", diff)
	}
	if mfa.EventHash(got[1]) == got[1].Hash {
		t.Fatal("the edited event still matches its hash")
	}
	for _, q := range []mfa.EventQuery{{UserID: "alice", Limit: 1000}, {Limit: 1000}} {
		evs, _, err := s.Events(ctx, q)
		must(t, err)
		if i := slices.IndexFunc(evs, func(e mfa.Event) bool { return e.UserID == "alice" && e.Seq == 2 }); i < 0 || evs[i].Result != "accepted" {
			t.Fatalf("Events(%+v) after an edit: %+v; want event 2 as edited", q, evs)
		}
	}

	must(t, tamper(ctx, s, "alice", 4, nil))
	wantErr(t, "tamper with an event removed", tamper(ctx, s, "alice", 4, func(*mfa.Event) {}), mfa.ErrNotFound)
	next := appendEvent(t, s, mfa.Event{UserID: "alice", Time: t0.Add(time.Minute), Action: mfa.ActionUserReset})
	if next.Seq != 5 || next.PrevHash != chain[3].Hash {
		t.Fatalf("the event after a removed last one: Seq %d after hash %q; want 5 after %q", next.Seq, next.PrevHash, chain[3].Hash)
	}
	got, err = s.Chain(ctx, "alice", 1, 1000)
	must(t, err)
	if diff := cmp.Diff([]mfa.Event{chain[0], edited, chain[2], next}, got); diff != "" {
		t.Fatalf("Chain after a removal (-want +got):\n%s", diff)
	}
	evs, _, err := s.Events(ctx, mfa.EventQuery{Limit: 1000})
	must(t, err)
	if slices.ContainsFunc(evs, func(e mfa.Event) bool { return e.UserID == "alice" && e.Seq == 4 }) || len(evs) != 5 {
		t.Fatalf("Events after a removal: %+v; want 5 events, not the removed one", evs)
	}
	wantChain(t, s, "bob", other)
	if err := tamper(ctx, s, "nobody", 1, nil); !errors.Is(err, mfa.ErrNotFound) {
		t.Fatalf("removing an event of a user without a chain: %v, want ErrNotFound", err)
	}
}
