package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// The cases of the audit retention: PruneEvents.

// prune calls PruneEvents and checks how many it removed.
func prune(t *testing.T, s mfa.Store, before time.Time, max, want int) {
	t.Helper()
	got, err := s.PruneEvents(t.Context(), before, max)
	must(t, err)
	if got != want {
		t.Fatalf("PruneEvents(t0%+v, %d) removed %d events, want %d", before.Sub(t0), max, got, want)
	}
}

// wantLeft fails unless the chains of the users in left are exactly the
// events given, as Chain returns them and as Events lists them (every
// user's and each user's), and each remaining chain is a contiguous
// suffix that links, and unless ChainUsers still lists every user.
func wantLeft(t *testing.T, s mfa.Store, left map[string][]mfa.Event) {
	t.Helper()
	var all []mfa.Event
	users := make([]string, 0, len(left))
	for user, want := range left {
		got, err := s.Chain(t.Context(), user, 1, 1000)
		must(t, err)
		if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
			t.Fatalf("chain of %s after pruning (-want +got):\n%s", user, diff)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Seq != got[i-1].Seq+1 || got[i].PrevHash != got[i-1].Hash {
				t.Fatalf("chain of %s after pruning: event %d does not follow %d", user, got[i].Seq, got[i-1].Seq)
			}
		}
		byUser := slices.SortedFunc(slices.Values(want), newestFirst)
		if diff := cmp.Diff(byUser, listAll(t, s, mfa.EventQuery{UserID: user, Limit: 2}), equateEmpty); diff != "" {
			t.Fatalf("Events of %s after pruning (-want +got):\n%s", user, diff)
		}
		all = append(all, want...)
		users = append(users, user)
	}
	slices.SortFunc(all, newestFirst)
	if diff := cmp.Diff(all, listAll(t, s, mfa.EventQuery{Limit: 3}), equateEmpty); diff != "" {
		t.Fatalf("Events after pruning (-want +got):\n%s", diff)
	}
	got, err := s.ChainUsers(t.Context(), "", 1000)
	must(t, err)
	slices.Sort(users)
	if diff := cmp.Diff(users, got); diff != "" {
		t.Fatalf("ChainUsers after pruning (-want +got):\n%s", diff)
	}
}

// testPruneEvents: PruneEvents removes the events before its bound (one
// at the bound stays, to the millisecond), at most max, the oldest first,
// each chain from its start only (an old event behind a newer one waits
// for it), their index entries with them; the head stays, so that the
// next append continues the chain.
func testPruneEvents(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	prune(t, s, t0.Add(time.Hour), mfa.MaxPruneEvents, 0) // an empty store
	for _, max := range []int{-1, 0, mfa.MaxPruneEvents + 1} {
		_, err := s.PruneEvents(ctx, t0.Add(time.Hour), max)
		wantMisuse(t, fmt.Sprintf("PruneEvents with max %d", max), err)
	}
	at := func(user string, msAfter int) mfa.Event {
		return appendEvent(t, s, mfa.Event{UserID: user, Time: t0.Add(time.Duration(msAfter) * ms), Action: mfa.ActionUserReset})
	}
	var alice, bob, dave []mfa.Event
	for _, m := range []int{0, 2, 4, 6} {
		alice = append(alice, at("alice", m))
	}
	bob = append(bob, at("bob", 1), at("bob", 3))
	// dave's chain is out of time order: its event 2 is the oldest of
	// all, but follows event 1.
	dave = append(dave, at("dave", 5), at("dave", -1), at("dave", 20))
	carol := []mfa.Event{at("carol", 30)}

	// Before t0+4ms: alice 1, bob 1, alice 2, bob 2 can go; max 3 takes
	// the 3 oldest.
	prune(t, s, t0.Add(4*ms), 3, 3)
	wantLeft(t, s, map[string][]mfa.Event{"alice": alice[2:], "bob": bob[1:], "dave": dave, "carol": carol})
	// Then bob 2; alice 3, at the bound, stays.
	prune(t, s, t0.Add(4*ms), 10, 1)
	wantLeft(t, s, map[string][]mfa.Event{"alice": alice[2:], "bob": nil, "dave": dave, "carol": carol})
	prune(t, s, t0.Add(4*ms), 10, 0)

	// bob's chain, all pruned, goes on after its head.
	b3 := at("bob", 40)
	if b3.Seq != 3 || b3.PrevHash != bob[1].Hash {
		t.Fatalf("the event after a pruned chain: Seq %d after hash %q; want 3 after %q", b3.Seq, b3.PrevHash, bob[1].Hash)
	}
	bob = []mfa.Event{b3}

	// Before t0+6ms, max 2: alice 3 (4ms), then dave 1 (5ms); dave 2
	// (-1ms), older than both, could not go before dave 1 did.
	prune(t, s, t0.Add(6*ms), 2, 2)
	wantLeft(t, s, map[string][]mfa.Event{"alice": alice[3:], "bob": bob, "dave": dave[1:], "carol": carol})
	prune(t, s, t0.Add(6*ms), 10, 1)
	wantLeft(t, s, map[string][]mfa.Event{"alice": alice[3:], "bob": bob, "dave": dave[2:], "carol": carol})

	// The bound to the microsecond: alice 4, at 6ms, is not before
	// 6ms - 1µs, and is before 6ms + 1µs.
	prune(t, s, t0.Add(6*ms-time.Microsecond), 10, 0)
	prune(t, s, t0.Add(6*ms+time.Microsecond), 10, 1)
	a5 := at("alice", 50)
	if a5.Seq != 5 || a5.PrevHash != alice[3].Hash {
		t.Fatalf("the event after a pruned chain: Seq %d after hash %q; want 5 after %q", a5.Seq, a5.PrevHash, alice[3].Hash)
	}
	wantLeft(t, s, map[string][]mfa.Event{"alice": {a5}, "bob": bob, "dave": dave[2:], "carol": carol})

	// Everything.
	prune(t, s, t0.Add(time.Hour), mfa.MaxPruneEvents, 4)
	wantLeft(t, s, map[string][]mfa.Event{"alice": nil, "bob": nil, "dave": nil, "carol": nil})
	prune(t, s, t0.Add(time.Hour), mfa.MaxPruneEvents, 0)
}

// testConcurrentPruneEvents: pruners running together remove each event
// once: their counts, and that of one more call after them, add up to the
// events there were.
func testConcurrentPruneEvents(t *testing.T, s mfa.Store) {
	const users, perUser, pruners = 5, 20, 4
	for i := range users * perUser {
		appendEvent(t, s, mfa.Event{UserID: fmt.Sprint("u", i%users), Time: t0.Add(time.Duration(i) * ms), Action: mfa.ActionUserReset})
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
	)
	for range pruners {
		wg.Go(func() {
			for {
				n, err := s.PruneEvents(t.Context(), t0.Add(time.Hour), 7)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
				if n < 7 {
					return
				}
			}
		})
	}
	wg.Wait()
	// A pruner that another overtook may stop early: what is left is for
	// one more.
	n, err := s.PruneEvents(t.Context(), t0.Add(time.Hour), mfa.MaxPruneEvents)
	must(t, err)
	if total += n; total != users*perUser {
		t.Fatalf("concurrent pruners removed %d events in all, want %d", total, users*perUser)
	}
	left := map[string][]mfa.Event{}
	for i := range users {
		left[fmt.Sprint("u", i)] = nil
	}
	wantLeft(t, s, left)
}
