package redisstore_test

import (
	"context"
	"errors"
	"fmt"
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
// for one TOTP step and for the attempts before a lock.
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
			ok, err := stores[i%2].AcceptTOTPStep(ctx, "alice", f.ID, 11, now)
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

// TestConcurrentDuplicateCredential races users, through two clients, to
// register one WebAuthn credential ID: the reservation outside the users'
// scripts lets exactly one of them have it, and the others are refused with
// ErrDuplicate, their sessions intact. On Cluster too, where the reservation
// and the users' keys lie in different slots.
func TestConcurrentDuplicateCredential(t *testing.T) {
	for name, clientsOf := range map[string]func() []redis.UniversalClient{
		"standalone": func() []redis.UniversalClient {
			addr := redistest.Start(t)
			return []redis.UniversalClient{redistest.Client(t, addr), redistest.Client(t, addr)}
		},
		"cluster": func() []redis.UniversalClient {
			addr := redistest.StartCluster(t)
			return []redis.UniversalClient{redistest.ClusterClient(t, addr), redistest.ClusterClient(t, addr)}
		},
	} {
		t.Run(name, func(t *testing.T) {
			clients := clientsOf()
			stores := []*redisstore.Store{redisstore.New(clients[0]), redisstore.New(clients[1])}
			ctx := t.Context()
			now := time.UnixMilli(1_790_000_000_000)
			const n = 20
			for i := range n {
				user := fmt.Sprintf("user%d", i)
				e := mfa.Enrollment{TokenHash: "h" + user, UserID: user, CreatedAt: now, ExpiresAt: now.Add(time.Minute), FirstFactor: true}
				if err := stores[0].CreateEnrollment(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			var won, dup atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					user := fmt.Sprintf("user%d", i)
					f := mfa.Factor{
						ID: fmt.Sprintf("%016x", i), Kind: mfa.KindWebAuthn, CreatedAt: now,
						WebAuthn: &mfa.WebAuthn{CredentialID: []byte("the-one-credential"), PublicKey: []byte("k")},
					}
					<-start
					err := stores[i%2].ConfirmFactor(ctx, mfa.Confirmation{
						UserID: user, FactorID: f.ID, Factor: &f, TokenHash: "h" + user, FirstFactor: true, Now: now,
					})
					switch {
					case err == nil:
						won.Add(1)
					case errors.Is(err, mfa.ErrDuplicate):
						dup.Add(1)
						if _, err := stores[0].Enrollment(ctx, "h"+user, now); err != nil {
							t.Errorf("%s: a refused credential consumed the session: %v", user, err)
						}
					default:
						t.Error(err)
					}
				})
			}
			close(start)
			wg.Wait()
			if won.Load() != 1 || dup.Load() != n-1 {
				t.Fatalf("one credential ID raced by %d users: %d registered, %d duplicates; want 1 and %d", n, won.Load(), dup.Load(), n-1)
			}
			owners := 0
			for i := range n {
				u, err := stores[0].User(ctx, fmt.Sprintf("user%d", i))
				if err != nil {
					t.Fatal(err)
				}
				owners += len(u.Factors)
			}
			if owners != 1 {
				t.Fatalf("%d users have the credential, want 1", owners)
			}
		})
	}
}

// TestPendingWebAuthnRefused checks that a WebAuthn factor cannot be
// confirmed as a pending factor, which would bypass the reservation of its
// credential ID, and that the refusal changes nothing.
func TestPendingWebAuthnRefused(t *testing.T) {
	s := redisstore.New(redistest.Client(t, redistest.Start(t)))
	ctx := t.Context()
	now := time.UnixMilli(1_790_000_000_000)
	f := mfa.Factor{
		ID: "00000000000000c1", Kind: mfa.KindWebAuthn, CreatedAt: now,
		WebAuthn: &mfa.WebAuthn{CredentialID: []byte("cred"), PublicKey: []byte("k")},
	}
	if err := s.CreateEnrollment(ctx, mfa.Enrollment{TokenHash: "h", UserID: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPendingFactor(ctx, "alice", f, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: f.ID, TokenHash: "h", Now: now})
	if err == nil || errors.Is(err, mfa.ErrNotFound) || errors.Is(err, mfa.ErrConflict) {
		t.Fatalf("confirming a pending WebAuthn factor: got %v, want a store error", err)
	}
	if _, err := s.Enrollment(ctx, "h", now); err != nil {
		t.Fatalf("the refusal consumed the session: %v", err)
	}
	if u, err := s.User(ctx, "alice"); err != nil || len(u.Factors) != 0 {
		t.Fatalf("after the refusal: %+v, %v", u, err)
	}
	// Given whole, it is confirmed.
	if err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: f.ID, Factor: &f, TokenHash: "h", Now: now}); err != nil {
		t.Fatal(err)
	}
}
