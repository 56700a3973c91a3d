package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/redisstore"
	"github.com/secondfactor/secondfactor/internal/redistest"
)

// calls are every method of the store, each called once for user alice.
func calls(s *redisstore.Store, now time.Time) []struct {
	name string
	call func(ctx context.Context) error
} {
	lim := mfa.Limits{MaxFailures: 10, BaseLockout: 30 * time.Second, MaxLockout: time.Hour, FailureTTL: 24 * time.Hour}
	e := mfa.Enrollment{TokenHash: "h", UserID: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	f := mfa.Factor{ID: "00000000000000c1", Kind: mfa.KindWebAuthn, CreatedAt: now, WebAuthn: &mfa.WebAuthn{CredentialID: []byte("cred"), PublicKey: []byte("k")}}
	return []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"User", func(ctx context.Context) error { _, err := s.User(ctx, "alice"); return err }},
		{"StartAttempt", func(ctx context.Context) error { _, err := s.StartAttempt(ctx, "alice", now, lim); return err }},
		{"AcceptTOTPStep", func(ctx context.Context) error {
			_, err := s.AcceptTOTPStep(ctx, "alice", "00000000000000a1", 1, now)
			return err
		}},
		{"CreateEnrollment", func(ctx context.Context) error { return s.CreateEnrollment(ctx, e) }},
		{"Enrollment", func(ctx context.Context) error { _, err := s.Enrollment(ctx, "h", now); return err }},
		{"PutActivationCode", func(ctx context.Context) error { return s.PutActivationCode(ctx, "alice", "c", now.Add(time.Hour)) }},
		{"ActivateEnrollment", func(ctx context.Context) error { return s.ActivateEnrollment(ctx, "h", "alice", "c", now) }},
		{"PutPendingFactor", func(ctx context.Context) error { return s.PutPendingFactor(ctx, "alice", f, now.Add(time.Hour)) }},
		{"PendingFactor", func(ctx context.Context) error { _, err := s.PendingFactor(ctx, "alice", f.ID, now); return err }},
		{"ConfirmFactor", func(ctx context.Context) error {
			return s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", Factor: &f, TokenHash: "h", Now: now})
		}},
		{"PutChallenge", func(ctx context.Context) error {
			return s.PutChallenge(ctx, "ch", mfa.Challenge{UserID: "alice"}, now.Add(time.Hour))
		}},
		{"TakeChallenge", func(ctx context.Context) error { _, err := s.TakeChallenge(ctx, "ch", now); return err }},
		{"AcceptAssertion", func(ctx context.Context) error {
			_, err := s.AcceptAssertion(ctx, "alice", f.ID, mfa.AssertionUse{SignCount: 1}, now)
			return err
		}},
		{"ConsumeRecoveryCode", func(ctx context.Context) error {
			_, _, err := s.ConsumeRecoveryCode(ctx, "alice", "r", now)
			return err
		}},
		{"ReplaceRecoveryCodes", func(ctx context.Context) error { return s.ReplaceRecoveryCodes(ctx, "h", "alice", []string{"r"}, now) }},
	}
}

// fast bounds how long a call to an unreachable Redis may take in
// TestUnavailable. The client there times out after 100 ms (a MULTI, which
// go-redis retries, after about a second); the bound only catches a call
// that waits out go-redis' default timeouts (5 s) or hangs.
const fast = 3 * time.Second

// TestUnavailable stops Redis, or makes it stop answering, and checks that
// every method then fails soon with an error wrapping mfa.ErrUnavailable.
func TestUnavailable(t *testing.T) {
	now := time.UnixMilli(1_790_000_000_000)
	for _, c := range []struct {
		name string
		// down makes the server at srv unreachable for rdb.
		down func(t *testing.T, srv *redistest.Server, rdb *redis.Client)
	}{
		{"server stopped", func(t *testing.T, srv *redistest.Server, _ *redis.Client) { srv.Stop() }},
		{"server not answering", func(t *testing.T, srv *redistest.Server, _ *redis.Client) {
			// The pause outlasts the test; stopping the server ends it.
			admin := redistest.Client(t, srv.Addr)
			if err := admin.Do(t.Context(), "CLIENT", "PAUSE", 60_000, "ALL").Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{"client closed", func(t *testing.T, _ *redistest.Server, rdb *redis.Client) {
			if err := rdb.Close(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := redistest.StartServer(t)
			rdb := redis.NewClient(&redis.Options{
				Addr:        srv.Addr,
				DialTimeout: 100 * time.Millisecond, ReadTimeout: 100 * time.Millisecond,
				WriteTimeout: 100 * time.Millisecond, PoolTimeout: 100 * time.Millisecond,
				// go-redis dials 5 times per attempt by default, with pauses
				// in between, which makes a refused connection take seconds.
				DialerRetries: 1,
			})
			t.Cleanup(func() {
				// Closed already in "client closed".
				if err := rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
					t.Errorf("close client: %v", err)
				}
			})
			s := redisstore.New(rdb)
			// A connection in the pool, as in a running server.
			if _, err := s.User(t.Context(), "alice"); err != nil {
				t.Fatal(err)
			}
			c.down(t, srv, rdb)
			for _, m := range calls(s, now) {
				start := time.Now()
				err := m.call(t.Context())
				took := time.Since(start)
				if !errors.Is(err, mfa.ErrUnavailable) {
					t.Errorf("%s: got %v, want an error wrapping mfa.ErrUnavailable", m.name, err)
				}
				if took > fast {
					t.Errorf("%s: failed after %v, want under %v", m.name, took, fast)
				}
			}
		})
	}
}

// TestCancelledNotUnavailable: a context cancelled by the caller is not an
// unreachable store.
func TestCancelledNotUnavailable(t *testing.T) {
	s := redisstore.New(redistest.Client(t, redistest.Start(t)))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, m := range calls(s, time.UnixMilli(1_790_000_000_000)) {
		if err := m.call(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, mfa.ErrUnavailable) {
			t.Errorf("%s with a cancelled context: got %v, want context.Canceled and not mfa.ErrUnavailable", m.name, err)
		}
	}
}
