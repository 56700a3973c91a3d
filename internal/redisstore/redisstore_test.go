package redisstore_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/mfa/storetest"
	"github.com/secondfactor/secondfactor/internal/redisstore"
	"github.com/secondfactor/secondfactor/internal/redistest"
)

// fresh returns a function that empties rdb and returns a store on it: the
// conformance suite runs its cases one after another, each on an empty store.
func fresh(rdb redis.UniversalClient) func(t *testing.T) mfa.Store {
	return func(t *testing.T) mfa.Store {
		t.Helper()
		if err := flush(t.Context(), rdb); err != nil {
			t.Fatal(err)
		}
		return redisstore.New(rdb)
	}
}

func flush(ctx context.Context, rdb redis.UniversalClient) error {
	if c, ok := rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			return n.FlushAll(ctx).Err()
		})
	}
	return rdb.FlushAll(ctx).Err()
}

func TestConformance(t *testing.T) {
	storetest.Run(t, fresh(redistest.Client(t, redistest.Start(t))))
}

// TestConformanceCluster runs the suite on a Redis Cluster node, which
// refuses any script or MULTI whose keys are not in one slot.
func TestConformanceCluster(t *testing.T) {
	storetest.Run(t, fresh(redistest.ClusterClient(t, redistest.StartCluster(t))))
}

// TestScriptsReloaded checks that the scripts survive SCRIPT FLUSH (a
// restarted or failed-over server): Run falls back from EVALSHA to EVAL.
func TestScriptsReloaded(t *testing.T) {
	rdb := redistest.Client(t, redistest.Start(t))
	s := redisstore.New(rdb)
	ctx := t.Context()
	now := time.UnixMilli(1_790_000_000_000)
	lim := mfa.Limits{MaxFailures: 3, BaseLockout: time.Second, MaxLockout: time.Minute, FailureTTL: time.Hour}
	for i := range 3 {
		if i == 1 {
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		a, err := s.StartAttempt(ctx, "alice", now, lim)
		if err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		if a.Locked {
			t.Fatalf("attempt %d locked", i+1)
		}
	}
	a, err := s.StartAttempt(ctx, "alice", now, lim)
	if err != nil || !a.Locked || !a.LockedUntil.Equal(now.Add(time.Second)) {
		t.Fatalf("fourth attempt: got %+v, %v; want locked for 1s", a, err)
	}
}

// TestConcurrentAcrossClients races two clients, as two replicas would,
// for one TOTP step and for the attempts before a lock. The suite's
// concurrent cases use one client; this one checks that the atomicity is
// Redis', not the client's.
func TestConcurrentAcrossClients(t *testing.T) {
	addr := redistest.Start(t)
	stores := []*redisstore.Store{
		redisstore.New(redistest.Client(t, addr)),
		redisstore.New(redistest.Client(t, addr)),
	}
	ctx := t.Context()
	now := time.UnixMilli(1_790_000_000_000)
	f := mfa.Factor{ID: "00000000000000a1", Kind: mfa.KindTOTP, CreatedAt: now, TOTP: &mfa.TOTP{Digits: 6, Period: 30}}
	e := mfa.Enrollment{TokenHash: "h", UserID: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Minute), FirstFactor: true}
	s := stores[0]
	if err := s.CreateEnrollment(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPendingFactor(ctx, "alice", f, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: f.ID, TokenHash: "h", FirstFactor: true, Step: 10, Now: now}); err != nil {
		t.Fatal(err)
	}

	var accepted, evaluated atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			ok, err := stores[i%2].AcceptTOTPStep(ctx, "alice", f.ID, 11, 0, now)
			if err != nil {
				t.Error(err)
			}
			if ok {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if got := accepted.Load(); got != 1 {
		t.Fatalf("step sent 50 times through two clients: accepted %d times, want 1", got)
	}

	lim := mfa.Limits{MaxFailures: 10, BaseLockout: 30 * time.Second, MaxLockout: time.Hour, FailureTTL: 24 * time.Hour}
	for i := range 50 {
		wg.Go(func() {
			a, err := stores[i%2].StartAttempt(ctx, "alice", now, lim)
			if err != nil {
				t.Error(err)
			}
			if err == nil && !a.Locked {
				evaluated.Add(1)
			}
		})
	}
	wg.Wait()
	if got := evaluated.Load(); got != int32(lim.MaxFailures) {
		t.Fatalf("50 attempts through two clients: %d evaluated, want %d", got, lim.MaxFailures)
	}
}

// TestTamper runs storetest.RunTamper with TamperEvent and RemoveEvent.
func TestTamper(t *testing.T) {
	storetest.RunTamper(t, fresh(redistest.Client(t, redistest.Start(t))),
		func(ctx context.Context, s mfa.Store, userID string, seq uint64, edit func(*mfa.Event)) error {
			if edit == nil {
				return redisstore.RemoveEvent(ctx, s.(*redisstore.Store), userID, seq)
			}
			return redisstore.TamperEvent(ctx, s.(*redisstore.Store), userID, seq, edit)
		})
}

// BenchmarkAppendEvent measures AppendEvent alone (three round trips),
// serial, then in parallel on one chain, where appends overtake one
// another and start again.
func BenchmarkAppendEvent(b *testing.B) {
	s := redisstore.New(redistest.Client(b, redistest.Start(b)))
	ctx := b.Context()
	e := mfa.Event{UserID: "alice", Time: time.UnixMilli(1_790_000_000_000), Action: mfa.ActionVerifyTOTP, Result: "accepted"}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.AppendEvent(ctx, e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel-one-chain", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.AppendEvent(ctx, e); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
