package redisstore

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/redistest"
)

// TestOutboxScriptsRunTwice runs the outbox's scripts twice for one call,
// as go-redis does when a connection fails after a script was sent: the
// append writes one entry, a claim run twice returns the same claim (the
// notification is not lost to a lease nobody holds), a retry sets the same.
func TestOutboxScriptsRunTwice(t *testing.T) {
	ctx := t.Context()
	s := New(redistest.Client(t, redistest.Start(t)))
	now := time.UnixMilli(1_790_000_000_000).UTC()
	e := mfa.Event{UserID: "alice", Time: now, Action: mfa.ActionUserReset, Seq: 1}
	e.Hash = mfa.EventHash(e)
	k := userKeys("alice")
	p := position{ms: now.UnixMilli(), user: "alice", seq: 1}
	nonce := newNonce()
	for range 2 {
		ks, args := withNotification(k, e, []string{k.auditHead(), k.auditLog(), k.auditTimes()},
			[]any{0, 1, `{"user_id":"alice","seq":1,"action":"user.reset"}`, e.Hash, timesMember(p), nonce})
		if err := appendEventScript.Run(ctx, s.rdb, ks, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.rdb.XLen(ctx, k.auditLog()).Result(); err != nil || n != 1 {
		t.Fatalf("chain after an append run twice: %d, %v; want 1 event", n, err)
	}
	if err := s.rdb.ZAdd(ctx, outboxDueKey, redis.Z{Score: float64(now.UnixMilli()), Member: "alice/1"}).Err(); err != nil {
		t.Fatal(err)
	}

	claimNonce := newNonce()
	var claims [2][]string
	for i := range claims {
		res, err := claimNotificationScript.Run(ctx, s.rdb, []string{k.notification(1), k.auditHead()},
			1, now.UnixMilli(), now.UnixMilli()+30000, claimNonce).StringSlice()
		if err != nil {
			t.Fatal(err)
		}
		claims[i] = res
	}
	if len(claims[0]) != 5 || claims[0][0] != "claimed" || claims[0][3] != "1" || len(claims[1]) != 5 || claims[1][3] != "1" {
		t.Fatalf("claim run twice: %q, then %q; want claim 1 both times", claims[0], claims[1])
	}
	// Another claim (another nonce) finds it leased.
	if ns, err := s.ClaimNotifications(ctx, now, 30*time.Second, 10); err != nil || len(ns) != 0 {
		t.Fatalf("claim of a leased notification: %v, %v; want none", ns, err)
	}
	for range 2 {
		if err := s.RetryNotification(ctx, "alice/1", 1, now, 3); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := s.ClaimNotifications(ctx, now, 30*time.Second, 10)
	if err != nil || len(ns) != 1 || ns[0].Attempts != 3 || ns[0].Claim != 2 {
		t.Fatalf("claim after a retry run twice: %+v, %v; want attempts 3, claim 2", ns, err)
	}
}

// TestOutboxIndexAhead: an index member written before its append (the
// append has not run its script yet, or never will) is not claimed and not
// removed while the append may still come; once it came, the notification
// is claimed, at the latest a lease later. A member whose Seq the chain
// has passed without an entry is removed by the next claim.
func TestOutboxIndexAhead(t *testing.T) {
	ctx := t.Context()
	s := New(redistest.Client(t, redistest.Start(t)))
	now := time.UnixMilli(1_790_000_000_000).UTC()
	const lease = 30 * time.Second
	if _, err := s.AppendEvent(ctx, mfa.Event{UserID: "alice", Time: now, Action: mfa.ActionVerifyTOTP, Result: mfa.ResultAccepted}); err != nil {
		t.Fatal(err)
	}
	// An append of alice/2 wrote its member and has not run its script.
	e := mfa.Event{UserID: "alice", Time: now, Action: mfa.ActionFactorAdded, Seq: 2}
	index := func(e mfa.Event) {
		t.Helper()
		if _, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error { indexNotification(ctx, pl, e); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	index(e)
	if ns, err := s.ClaimNotifications(ctx, now, lease, 10); err != nil || len(ns) != 0 {
		t.Fatalf("claim before the append: %v, %v; want none", ns, err)
	}
	if n, err := s.PendingNotifications(ctx); err != nil || n != 1 {
		t.Fatalf("pending before the append: %d, %v; want its member kept", n, err)
	}
	// The append runs now (as Seq 2: the head is still 1).
	got, err := s.AppendEvent(ctx, mfa.Event{UserID: "alice", Time: now, Action: mfa.ActionFactorAdded})
	if err != nil || got.ID() != "alice/2" {
		t.Fatalf("append: %v, %v", got, err)
	}
	if ns, err := s.ClaimNotifications(ctx, now.Add(lease), lease, 10); err != nil || len(ns) != 1 || ns[0].Event.ID() != "alice/2" {
		t.Fatalf("claim a lease later: %v, %v; want alice/2", ns, err)
	}

	// A notifiable append of alice/3 overtaken by a verification: its
	// member names a Seq the chain has passed.
	index(mfa.Event{UserID: "alice", Time: now, Action: mfa.ActionUserLocked, Seq: 3})
	if _, err := s.AppendEvent(ctx, mfa.Event{UserID: "alice", Time: now, Action: mfa.ActionVerifyTOTP, Result: mfa.ResultRejected}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PendingNotifications(ctx); err != nil || n != 2 {
		t.Fatalf("pending with a stale member: %d, %v; want 2 (alice/2 and the stale one)", n, err)
	}
	if ns, err := s.ClaimNotifications(ctx, now, lease, 10); err != nil || len(ns) != 0 {
		t.Fatalf("claim of a stale member: %v, %v; want none", ns, err)
	}
	if n, err := s.PendingNotifications(ctx); err != nil || n != 1 {
		t.Fatalf("pending after the claim passed the stale member: %d, %v; want 1", n, err)
	}
}
