package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// The cases of bypass codes (mfa.Bypasses): put, consume once, expiry,
// replacement, review once, listing by time of issue, misuse, and the
// races.

// runBypass runs the bypass cases, one store per case, as Run does.
func runBypass(t *testing.T, newStore NewStore) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s mfa.Store)
	}{
		{"PutBypass", testPutBypass},
		{"ConsumeBypass", testConsumeBypass},
		{"BypassExpiry", testBypassExpiry},
		{"BypassReplaced", testBypassReplaced},
		{"ReviewBypass", testReviewBypass},
		{"Bypasses", testBypasses},
		{"BypassesPaging", testBypassesPaging},
		{"BypassRefused", testBypassRefused},
		{"BypassCancelledContext", testBypassCancelledContext},
		{"ConcurrentConsumeBypass", testConcurrentConsumeBypass},
		{"ConcurrentReviewBypass", testConcurrentReviewBypass},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, newStore(t))
		})
	}
}

// bypass is a new bypass n of user, issued at issued for an hour.
func bypass(n int, user string, issued time.Time) mfa.Bypass {
	return mfa.Bypass{
		ID: fmt.Sprintf("%016x", 0xb0000+n), UserID: user, IssuedBy: "ops-alice", Reason: fmt.Sprintf("lost every factor, ticket %d", n),
		IssuedAt: issued, ExpiresAt: issued.Add(time.Hour),
	}
}

// putBypass stores b with code hash "code-<ID>".
func putBypass(t *testing.T, s mfa.Store, b mfa.Bypass) mfa.Bypass {
	t.Helper()
	must(t, s.PutBypass(t.Context(), b, "code-"+b.ID))
	return b
}

// consume runs ConsumeBypass and checks that, when it consumes, it returns
// want used at now; it reports whether it consumed.
func consume(t *testing.T, s mfa.Store, user, hash string, now time.Time, want mfa.Bypass) bool {
	t.Helper()
	got, ok, err := s.ConsumeBypass(t.Context(), user, hash, now)
	must(t, err)
	if !ok {
		return false
	}
	want.UsedAt = now
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("ConsumeBypass(%s, %s) at %v (-want +got):\n%s", user, hash, now, diff)
	}
	return true
}

// wantBypass fails unless Bypass(want.ID) is want.
func wantBypass(t *testing.T, s mfa.Store, want mfa.Bypass) {
	t.Helper()
	got, err := s.Bypass(t.Context(), want.ID)
	must(t, err)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Bypass(%s) (-want +got):\n%s", want.ID, diff)
	}
}

// listBypasses runs Bypasses on q and returns the page and the cursor.
func listBypasses(t *testing.T, s mfa.Store, q mfa.BypassQuery) ([]mfa.Bypass, string) {
	t.Helper()
	bs, next, err := s.Bypasses(t.Context(), q)
	must(t, err)
	return bs, next
}

// testPutBypass: a bypass is read back as put, in whole milliseconds, and
// an unknown ID is not found.
func testPutBypass(t *testing.T, s mfa.Store) {
	b := bypass(1, "alice", t0)
	b.IssuedAt, b.ExpiresAt = t0.Add(999*time.Microsecond), t0.Add(time.Hour+time.Microsecond)
	putBypass(t, s, b)
	b.IssuedAt, b.ExpiresAt = t0, t0.Add(time.Hour) // truncated
	wantBypass(t, s, b)
	_, err := s.Bypass(t.Context(), "00000000000000ff")
	wantErr(t, "Bypass of an unknown ID", err, mfa.ErrNotFound)
	if bs, next := listBypasses(t, s, mfa.BypassQuery{Limit: 10}); next != "" || len(bs) != 1 || !cmp.Equal(bs[0], b) {
		t.Fatalf("Bypasses: %+v, %q; want the bypass alone", bs, next)
	}
}

// testConsumeBypass: the right code of the user's bypass is accepted
// once; a wrong code, another user's code and a second use are not; a use
// is not a success: the user's attempts and last verification stay.
func testConsumeBypass(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	enroll(t, s, "alice", "00000000000000a1", 100)
	b := putBypass(t, s, bypass(1, "alice", t0))
	other := putBypass(t, s, bypass(2, "bob", t0))
	now := t0.Add(time.Minute)
	// Two attempts counted before the bypass.
	wantEvaluated(t, s, "alice", now, 2, limits)
	before := getUser(t, s, "alice")

	for _, c := range []struct{ user, hash string }{
		{"alice", "code-" + other.ID}, {"alice", "wrong"}, {"alice", ""}, {"bob", "code-" + b.ID}, {"nobody", "code-" + b.ID},
	} {
		if consume(t, s, c.user, c.hash, now, mfa.Bypass{}) {
			t.Fatalf("ConsumeBypass(%s, %s): consumed, want refused", c.user, c.hash)
		}
	}
	if !consume(t, s, "alice", "code-"+b.ID, now, b) {
		t.Fatal("ConsumeBypass with the right code: refused")
	}
	b.UsedAt = now
	wantBypass(t, s, b)
	if consume(t, s, "alice", "code-"+b.ID, now, b) {
		t.Fatal("ConsumeBypass of a used bypass: consumed again")
	}
	if diff := cmp.Diff(before, getUser(t, s, "alice"), equateEmpty); diff != "" {
		t.Fatalf("a bypass used changed the user (-before +after):\n%s", diff)
	}
	// The two attempts still count: MaxFailures-2 more are evaluated, and
	// the next is locked.
	wantEvaluated(t, s, "alice", now, limits.MaxFailures-2, limits)
	wantLocked(t, s, "alice", now, now.Add(limits.BaseLockout), limits)
	// Bob's is untouched.
	wantBypass(t, s, other)
	if _, ok, err := s.ConsumeBypass(ctx, "bob", "code-"+other.ID, now); err != nil || !ok {
		t.Fatalf("ConsumeBypass of bob's: %v, %v; want consumed", ok, err)
	}
}

// testBypassExpiry: a bypass is accepted until the millisecond before its
// ExpiresAt, not from ExpiresAt on; an expired one stays stored.
func testBypassExpiry(t *testing.T, s mfa.Store) {
	late := putBypass(t, s, bypass(1, "alice", t0))
	if consume(t, s, "alice", "code-"+late.ID, late.ExpiresAt, late) {
		t.Fatal("ConsumeBypass at ExpiresAt: consumed, want refused")
	}
	if consume(t, s, "alice", "code-"+late.ID, late.ExpiresAt.Add(time.Hour), late) {
		t.Fatal("ConsumeBypass after ExpiresAt: consumed, want refused")
	}
	wantBypass(t, s, late)
	justInTime := putBypass(t, s, bypass(2, "bob", t0))
	if !consume(t, s, "bob", "code-"+justInTime.ID, justInTime.ExpiresAt.Add(-ms), justInTime) {
		t.Fatal("ConsumeBypass a millisecond before ExpiresAt: refused, want consumed")
	}
}

// testBypassReplaced: a new bypass of a user replaces the previous one,
// used or not, which stays listed as it was.
func testBypassReplaced(t *testing.T, s mfa.Store) {
	first := putBypass(t, s, bypass(1, "alice", t0))
	second := putBypass(t, s, bypass(2, "alice", t0.Add(time.Minute)))
	now := t0.Add(2 * time.Minute)
	if consume(t, s, "alice", "code-"+first.ID, now, first) {
		t.Fatal("ConsumeBypass of a replaced bypass: consumed")
	}
	if !consume(t, s, "alice", "code-"+second.ID, now, second) {
		t.Fatal("ConsumeBypass of the new bypass: refused")
	}
	second.UsedAt = now
	// A used bypass is replaced too; the one replaced before stays dead.
	third := putBypass(t, s, bypass(3, "alice", t0.Add(3*time.Minute)))
	now = t0.Add(4 * time.Minute)
	if consume(t, s, "alice", "code-"+first.ID, now, first) || consume(t, s, "alice", "code-"+second.ID, now, second) {
		t.Fatal("ConsumeBypass of an earlier bypass after a third: consumed")
	}
	bs, _ := listBypasses(t, s, mfa.BypassQuery{Limit: 10})
	if diff := cmp.Diff([]mfa.Bypass{third, second, first}, bs); diff != "" {
		t.Fatalf("Bypasses after replacements (-want +got):\n%s", diff)
	}
	if !consume(t, s, "alice", "code-"+third.ID, now, third) {
		t.Fatal("ConsumeBypass of the third: refused")
	}
}

// testReviewBypass: a bypass is reviewed once, used or not; a second
// review, whoever makes it, is ErrConflict and changes nothing; an unknown
// bypass is ErrNotFound.
func testReviewBypass(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	b := putBypass(t, s, bypass(1, "alice", t0))
	used := putBypass(t, s, bypass(2, "bob", t0))
	if !consume(t, s, "bob", "code-"+used.ID, t0.Add(time.Minute), used) {
		t.Fatal("ConsumeBypass: refused")
	}
	used.UsedAt = t0.Add(time.Minute)
	for _, want := range []mfa.Bypass{b, used} {
		at := t0.Add(time.Hour + 2*time.Minute + 999*time.Microsecond) // after expiry too
		got, err := s.ReviewBypass(ctx, want.ID, "ops-carol", "called the user back", at)
		must(t, err)
		want.ReviewedBy, want.ReviewNote, want.ReviewedAt = "ops-carol", "called the user back", t0.Add(time.Hour+2*time.Minute)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("ReviewBypass(%s) (-want +got):\n%s", want.ID, diff)
		}
		wantBypass(t, s, want)
		for _, reviewer := range []string{"ops-carol", "ops-dave"} {
			_, err := s.ReviewBypass(ctx, want.ID, reviewer, "again", at)
			wantErr(t, "a second ReviewBypass by "+reviewer, err, mfa.ErrConflict)
		}
		wantBypass(t, s, want)
	}
	_, err := s.ReviewBypass(ctx, "00000000000000ff", "ops-carol", "note", t0)
	wantErr(t, "ReviewBypass of an unknown ID", err, mfa.ErrNotFound)
	_, err = s.ReviewBypass(ctx, b.ID, "", "note", t0)
	wantMisuse(t, "ReviewBypass without a reviewer", err)
}

// testBypasses: the listing is newest first, by time of issue then ID, and
// selects IssuedAt >= Since and < Until, to the millisecond.
func testBypasses(t *testing.T, s mfa.Store) {
	var all []mfa.Bypass // newest first
	for i, at := range []time.Time{t0, t0.Add(ms), t0.Add(ms), t0.Add(time.Hour), t0.Add(-time.Hour)} {
		all = append(all, putBypass(t, s, bypass(i, fmt.Sprintf("user%d", i%2), at)))
	}
	all = []mfa.Bypass{all[3], all[2], all[1], all[0], all[4]}
	for _, c := range []struct {
		name         string
		since, until time.Time
		want         []mfa.Bypass
	}{
		{"all", time.Time{}, time.Time{}, all},
		{"since t0", t0, time.Time{}, all[:4]},
		{"since a microsecond after t0", t0.Add(time.Microsecond), time.Time{}, all[:3]},
		{"since t0+1ms", t0.Add(ms), time.Time{}, all[:3]},
		{"until t0+1ms", time.Time{}, t0.Add(ms), all[3:]},
		{"until a microsecond after t0", time.Time{}, t0.Add(time.Microsecond), all[3:]},
		{"t0 to t0+1ms", t0, t0.Add(ms), all[3:4]},
		{"t0+1ms to t0+2ms", t0.Add(ms), t0.Add(2 * ms), all[1:3]},
		{"an empty period", t0.Add(2 * ms), t0.Add(time.Hour), nil},
	} {
		got, next := listBypasses(t, s, mfa.BypassQuery{Since: c.since, Until: c.until, Limit: 10})
		if diff := cmp.Diff(c.want, got, equateEmpty); diff != "" || next != "" {
			t.Errorf("Bypasses %s: cursor %q (-want +got):\n%s", c.name, next, diff)
		}
	}
}

// testBypassesPaging: pages of n follow one another without a gap or a
// repeat, a full last page has a cursor and an empty next one, and a
// cursor the store did not give is ErrNotFound.
func testBypassesPaging(t *testing.T, s mfa.Store) {
	var want []mfa.Bypass
	for i := range 7 {
		// Four share a millisecond, so that pages split within it.
		at := t0.Add(time.Duration(min(i, 3)) * ms)
		want = append([]mfa.Bypass{putBypass(t, s, bypass(i, "alice", at))}, want...)
	}
	for _, n := range []int{1, 2, 3, 7} {
		var got []mfa.Bypass
		q := mfa.BypassQuery{Limit: n}
		for pages := 0; ; pages++ {
			if pages > 7 {
				t.Fatalf("limit %d: more than 8 pages", n)
			}
			page, next := listBypasses(t, s, q)
			if len(page) > n || (next != "" && len(page) != n) {
				t.Fatalf("limit %d: a page of %d with cursor %q", n, len(page), next)
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			q.Cursor = next
		}
		if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
			t.Fatalf("limit %d: the pages (-want +got):\n%s", n, diff)
		}
	}
	// Paging with a period.
	page, next := listBypasses(t, s, mfa.BypassQuery{Since: t0.Add(ms), Until: t0.Add(3 * ms), Limit: 1})
	if len(page) != 1 || !cmp.Equal(page[0], want[4]) || next == "" {
		t.Fatalf("first page of one in [t0+1ms, t0+3ms): %+v, %q; want %s and a cursor", page, next, want[4].ID)
	}
	page, next = listBypasses(t, s, mfa.BypassQuery{Since: t0.Add(ms), Until: t0.Add(3 * ms), Limit: 1, Cursor: next})
	if len(page) != 1 || !cmp.Equal(page[0], want[5]) || next != "" {
		t.Fatalf("second page: %+v, %q; want %s and no cursor", page, next, want[5].ID)
	}
	for _, cursor := range []string{"nonsense", "AQ", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		_, _, err := s.Bypasses(t.Context(), mfa.BypassQuery{Limit: 1, Cursor: cursor})
		wantErr(t, "Bypasses with cursor "+cursor, err, mfa.ErrNotFound)
	}
}

// testBypassRefused: the bypasses and limits that the contract does not
// allow are refused, and nothing is stored.
func testBypassRefused(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	good := bypass(1, "alice", t0)
	for _, c := range []struct {
		name string
		edit func(*mfa.Bypass)
		hash string
	}{
		{"no ID", func(b *mfa.Bypass) { b.ID = "" }, "h"},
		{"a short ID", func(b *mfa.Bypass) { b.ID = "0123" }, "h"},
		{"an upper-case ID", func(b *mfa.Bypass) { b.ID = "00000000000000AB" }, "h"},
		{"no user", func(b *mfa.Bypass) { b.UserID = "" }, "h"},
		{"no code hash", func(*mfa.Bypass) {}, ""},
		{"used", func(b *mfa.Bypass) { b.UsedAt = t0 }, "h"},
		{"reviewed", func(b *mfa.Bypass) { b.ReviewedBy, b.ReviewedAt = "ops-carol", t0 }, "h"},
		{"a review note", func(b *mfa.Bypass) { b.ReviewNote = "ok" }, "h"},
	} {
		b := good
		c.edit(&b)
		wantMisuse(t, "PutBypass of a bypass with "+c.name, s.PutBypass(ctx, b, c.hash))
	}
	if bs, _ := listBypasses(t, s, mfa.BypassQuery{Limit: 10}); len(bs) != 0 {
		t.Fatalf("refused puts stored %+v", bs)
	}
	if _, ok, err := s.ConsumeBypass(ctx, "alice", "h", t0); err != nil || ok {
		t.Fatalf("ConsumeBypass after refused puts: %v, %v", ok, err)
	}
	for _, n := range []int{0, -1, 1001} {
		_, _, err := s.Bypasses(ctx, mfa.BypassQuery{Limit: n})
		wantMisuse(t, fmt.Sprintf("Bypasses with limit %d", n), err)
	}
}

// testBypassCancelledContext: every bypass method called with a context
// cancelled before the call returns an error wrapping context.Canceled and
// changes nothing.
func testBypassCancelledContext(t *testing.T, s mfa.Store) {
	b := putBypass(t, s, bypass(1, "alice", t0))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]error{}
	calls["PutBypass"] = s.PutBypass(ctx, bypass(2, "alice", t0), "code-2")
	_, _, calls["ConsumeBypass"] = s.ConsumeBypass(ctx, "alice", "code-"+b.ID, t0)
	_, calls["Bypass"] = s.Bypass(ctx, b.ID)
	_, calls["ReviewBypass"] = s.ReviewBypass(ctx, b.ID, "ops-carol", "note", t0)
	_, _, calls["Bypasses"] = s.Bypasses(ctx, mfa.BypassQuery{Limit: 1})
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", name, err)
		}
	}
	wantBypass(t, s, b)
	if bs, _ := listBypasses(t, s, mfa.BypassQuery{Limit: 10}); len(bs) != 1 {
		t.Fatalf("after cancelled calls: %d bypasses, want 1", len(bs))
	}
	if !consume(t, s, "alice", "code-"+b.ID, t0, b) {
		t.Fatal("the bypass after cancelled calls: refused")
	}
}

// testConcurrentConsumeBypass sends one bypass code 50 times at once:
// exactly one is accepted.
func testConcurrentConsumeBypass(t *testing.T, s mfa.Store) {
	b := putBypass(t, s, bypass(1, "alice", t0))
	wins := race(t, 50, func(int) (bool, error) {
		_, ok, err := s.ConsumeBypass(t.Context(), "alice", "code-"+b.ID, t0.Add(time.Minute))
		return ok, err
	})
	if wins != 1 {
		t.Fatalf("one bypass code sent 50 times at once: accepted %d times, want 1", wins)
	}
	b.UsedAt = t0.Add(time.Minute)
	wantBypass(t, s, b)
}

// testConcurrentReviewBypass races 20 reviewers: exactly one review is
// recorded, the others are ErrConflict.
func testConcurrentReviewBypass(t *testing.T, s mfa.Store) {
	b := putBypass(t, s, bypass(1, "alice", t0))
	var (
		mu     sync.Mutex
		winner string
	)
	wins := race(t, 20, func(i int) (bool, error) {
		reviewer := fmt.Sprintf("ops-%d", i)
		_, err := s.ReviewBypass(t.Context(), b.ID, reviewer, "note", t0)
		if errors.Is(err, mfa.ErrConflict) {
			return false, nil
		}
		mu.Lock()
		winner = reviewer
		mu.Unlock()
		return err == nil, err
	})
	if wins != 1 {
		t.Fatalf("20 reviews at once: %d recorded, want 1", wins)
	}
	b.ReviewedBy, b.ReviewNote, b.ReviewedAt = winner, "note", t0
	wantBypass(t, s, b)
}
