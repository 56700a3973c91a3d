package redisstore_test

// The design weighed against the per-rule scripts (docs/store-design.md):
// each user is one versioned record, read whole, changed in Go and written
// back with a single compare-and-swap, retried on conflict. Two ways to do
// the swap are prototyped: one generic Lua CAS script on a version field,
// and WATCH/MULTI/EXEC. Only the VerifyTOTP path (StartAttempt, then
// AcceptTOTPStep) is built, enough to measure it against the store; the
// rules are mfa.Store's, written in Go as in boltstore.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/redisstore"
	"github.com/secondfactor/secondfactor/internal/redistest"
)

// record is a user's whole state in the CAS prototypes.
type record struct {
	Factors    []mfa.Factor     `json:"factors,omitempty"`
	Steps      map[string]int64 `json:"steps,omitempty"`
	Failures   int              `json:"failures,omitempty"`
	LastMS     int64            `json:"last_ms,omitempty"`
	LockedMS   int64            `json:"locked_ms,omitempty"`
	Lockouts   int              `json:"lockouts,omitempty"`
	VerifiedMS int64            `json:"verified_ms,omitempty"`
	Used       map[string]int64 `json:"used,omitempty"`
}

// startAttempt applies the rule of mfa.Store.StartAttempt to r and reports
// whether r changed.
func (r *record) startAttempt(now time.Time, lim mfa.Limits) (mfa.Attempt, bool) {
	ms := now.UnixMilli()
	if ms < r.LockedMS {
		return mfa.Attempt{Locked: true, LockedUntil: time.UnixMilli(r.LockedMS).UTC()}, false
	}
	if r.Failures > 0 && ms-r.LastMS >= lim.FailureTTL.Milliseconds() {
		r.Failures, r.Lockouts = 0, 0
	}
	r.Failures++
	r.LastMS, r.LockedMS = ms, 0
	if r.Failures >= lim.MaxFailures {
		r.LockedMS = ms + lim.Backoff(r.Lockouts).Milliseconds()
		r.Lockouts++
	}
	return mfa.Attempt{Factors: r.Factors}, true
}

// acceptStep applies the rule of mfa.Store.AcceptTOTPStep to r and reports
// whether the step was accepted (and r changed).
func (r *record) acceptStep(factorID string, step int64, now time.Time) bool {
	last, ok := r.Steps[factorID]
	if !ok || step <= last {
		return false
	}
	r.Steps[factorID] = step
	r.Failures, r.Lockouts, r.LockedMS, r.LastMS = 0, 0, 0, 0
	r.VerifiedMS = now.UnixMilli()
	if r.Used == nil {
		r.Used = map[string]int64{}
	}
	r.Used[factorID] = now.UnixMilli()
	return true
}

func recordKey(userID string) string { return "{u:" + userID + "}:rec" }

// decodeRecord decodes a record's JSON; none is an empty record.
func decodeRecord(doc string) (*record, error) {
	r := &record{}
	if doc == "" {
		return r, nil
	}
	if err := json.Unmarshal([]byte(doc), r); err != nil {
		return nil, err
	}
	return r, nil
}

// verifier runs the store side of one VerifyTOTP: StartAttempt, then, if
// not locked, AcceptTOTPStep of the factor.
type verifier interface {
	verify(ctx context.Context, userID, factorID string, step int64, now time.Time, lim mfa.Limits) (accepted bool, err error)
	// attempt is StartAttempt alone.
	attempt(ctx context.Context, userID string, now time.Time, lim mfa.Limits) (mfa.Attempt, error)
	// enroll gives userID the confirmed TOTP factor f, last step 0.
	enroll(ctx context.Context, userID string, f mfa.Factor) error
}

// scripts is the store as it is.
type scripts struct{ s *redisstore.Store }

func (v scripts) verify(ctx context.Context, userID, factorID string, step int64, now time.Time, lim mfa.Limits) (bool, error) {
	a, err := v.s.StartAttempt(ctx, userID, now, lim)
	if err != nil || a.Locked {
		return false, err
	}
	return v.s.AcceptTOTPStep(ctx, userID, factorID, step, a.Epoch, now)
}

func (v scripts) attempt(ctx context.Context, userID string, now time.Time, lim mfa.Limits) (mfa.Attempt, error) {
	return v.s.StartAttempt(ctx, userID, now, lim)
}

func (v scripts) enroll(ctx context.Context, userID string, f mfa.Factor) error {
	e := mfa.Enrollment{TokenHash: "h-" + userID, UserID: userID, CreatedAt: f.CreatedAt, ExpiresAt: f.CreatedAt.Add(time.Hour)}
	if err := v.s.CreateEnrollment(ctx, e); err != nil {
		return err
	}
	return v.s.ConfirmFactor(ctx, mfa.Confirmation{UserID: userID, Factor: &f, TokenHash: e.TokenHash, Now: f.CreatedAt})
}

// casScript writes a record if its version is still the one read.
//
// KEYS: the record. ARGV: the version read ("0" if none), the new JSON.
// Returns 1 if written (the version is then one more), 0 if the version
// changed meanwhile.
var casScript = redis.NewScript(`
if (redis.call('HGET', KEYS[1], 'ver') or '0') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'ver', tonumber(ARGV[1]) + 1, 'doc', ARGV[2])
return 1
`)

// casLua is the prototype with one generic CAS script: a change reads the
// record (HMGET ver doc), changes it in Go and swaps it (the script), two
// round trips. The second change of a verification starts from the record
// the first one wrote, so uncontended it takes one: three in all.
type casLua struct{ rdb redis.UniversalClient }

// held is a record as last read or written, and its version.
type held struct {
	ver int64
	rec *record
}

func (c casLua) load(ctx context.Context, key string) (*held, error) {
	v, err := c.rdb.HMGet(ctx, key, "ver", "doc").Result()
	if err != nil {
		return nil, err
	}
	h := &held{}
	if s, ok := v[0].(string); ok {
		if h.ver, err = strconv.ParseInt(s, 10, 64); err != nil {
			return nil, err
		}
	}
	doc, _ := v[1].(string)
	h.rec, err = decodeRecord(doc)
	return h, err
}

// update applies fn to the record, from h if not nil, and swaps it in,
// again from a fresh read until no one changed it meanwhile. fn reports
// whether it changed the record; it may run more than once.
func (c casLua) update(ctx context.Context, key string, h *held, fn func(*record) bool) (*held, error) {
	for {
		if h == nil {
			var err error
			if h, err = c.load(ctx, key); err != nil {
				return nil, err
			}
		}
		if !fn(h.rec) {
			return h, nil
		}
		doc, err := json.Marshal(h.rec)
		if err != nil {
			return nil, err
		}
		ok, err := casScript.Run(ctx, c.rdb, []string{key}, h.ver, doc).Bool()
		if err != nil {
			return nil, err
		}
		if ok {
			return &held{ver: h.ver + 1, rec: h.rec}, nil
		}
		h = nil // changed meanwhile: read it again
	}
}

func (c casLua) attempt(ctx context.Context, userID string, now time.Time, lim mfa.Limits) (mfa.Attempt, error) {
	a, _, err := c.startAttempt(ctx, userID, now, lim)
	return a, err
}

func (c casLua) startAttempt(ctx context.Context, userID string, now time.Time, lim mfa.Limits) (mfa.Attempt, *held, error) {
	var a mfa.Attempt
	h, err := c.update(ctx, recordKey(userID), nil, func(r *record) bool {
		var changed bool
		a, changed = r.startAttempt(now, lim)
		return changed
	})
	return a, h, err
}

func (c casLua) verify(ctx context.Context, userID, factorID string, step int64, now time.Time, lim mfa.Limits) (bool, error) {
	a, h, err := c.startAttempt(ctx, userID, now, lim)
	if err != nil || a.Locked {
		return false, err
	}
	var accepted bool
	_, err = c.update(ctx, recordKey(userID), h, func(r *record) bool {
		accepted = r.acceptStep(factorID, step, now)
		return accepted
	})
	return accepted, err
}

func (c casLua) enroll(ctx context.Context, userID string, f mfa.Factor) error {
	doc, err := json.Marshal(record{Factors: []mfa.Factor{f}, Steps: map[string]int64{f.ID: 0}})
	if err != nil {
		return err
	}
	return c.rdb.HSet(ctx, recordKey(userID), "ver", 1, "doc", doc).Err()
}

// watchMulti is the prototype with WATCH/MULTI/EXEC: a change watches the
// record, reads it, changes it in Go and writes it in MULTI/EXEC, which
// fails if the record changed after WATCH: three round trips, six for a
// verification.
type watchMulti struct{ rdb *redis.Client }

func (w watchMulti) update(ctx context.Context, key string, fn func(*record) bool) error {
	for {
		err := w.rdb.Watch(ctx, func(tx *redis.Tx) error {
			doc, err := tx.HGet(ctx, key, "doc").Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			r, err := decodeRecord(doc)
			if err != nil {
				return err
			}
			if !fn(r) {
				return nil
			}
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.HSet(ctx, key, "doc", b)
				return nil
			})
			return err
		}, key)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
}

func (w watchMulti) attempt(ctx context.Context, userID string, now time.Time, lim mfa.Limits) (mfa.Attempt, error) {
	var a mfa.Attempt
	err := w.update(ctx, recordKey(userID), func(r *record) bool {
		var changed bool
		a, changed = r.startAttempt(now, lim)
		return changed
	})
	return a, err
}

func (w watchMulti) verify(ctx context.Context, userID, factorID string, step int64, now time.Time, lim mfa.Limits) (bool, error) {
	a, err := w.attempt(ctx, userID, now, lim)
	if err != nil || a.Locked {
		return false, err
	}
	var accepted bool
	err = w.update(ctx, recordKey(userID), func(r *record) bool {
		accepted = r.acceptStep(factorID, step, now)
		return accepted
	})
	return accepted, err
}

func (w watchMulti) enroll(ctx context.Context, userID string, f mfa.Factor) error {
	return casLua{w.rdb}.enroll(ctx, userID, f)
}

// designs are the three designs on one Redis client.
func designs(rdb *redis.Client) []struct {
	name string
	v    verifier
} {
	return []struct {
		name string
		v    verifier
	}{
		{"scripts", scripts{redisstore.New(rdb)}},
		{"cas-lua", casLua{rdb}},
		{"watch-multi", watchMulti{rdb}},
	}
}

var (
	benchT0 = time.UnixMilli(1_790_000_000_000).UTC()
	// benchUsers numbers the users that benchmarks make, so that no two
	// runs share one.
	benchUsers atomic.Int64
	// benchFactor is a TOTP factor of the size the service stores: a
	// 20-byte secret sealed with AES-GCM (nonce and tag: 48 bytes).
	benchFactor = mfa.Factor{
		ID: "00000000000000a1", Kind: mfa.KindTOTP, Name: "phone", CreatedAt: benchT0,
		TOTP: &mfa.TOTP{Algorithm: "SHA1", Digits: 6, Period: 30, KeyID: "k1", Sealed: make([]byte, 48)},
	}
)

// TestCASPrototypes checks that the prototypes hold the two rules they
// implement under races, so that the benchmark compares designs that work:
// one step accepted once, and at most MaxFailures attempts evaluated.
func TestCASPrototypes(t *testing.T) {
	rdb := redistest.Client(t, redistest.Start(t)).(*redis.Client)
	ctx := t.Context()
	lim := mfa.Limits{MaxFailures: 10, BaseLockout: 30 * time.Second, MaxLockout: time.Hour, FailureTTL: 24 * time.Hour}
	for _, d := range designs(rdb) {
		t.Run(d.name, func(t *testing.T) {
			user := "proto-" + d.name
			if err := d.v.enroll(ctx, user, benchFactor); err != nil {
				t.Fatal(err)
			}
			var accepted atomic.Int32
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					ok, err := d.v.verify(ctx, user, benchFactor.ID, 1, benchT0, lim)
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
				t.Fatalf("one step verified 20 times at once: accepted %d times, want 1", got)
			}
			// Wrong codes, of another user: attempts only.
			var evaluated atomic.Int32
			start := func() {
				a, err := d.v.attempt(ctx, user+"-guessed", benchT0, lim)
				if err != nil {
					t.Error(err)
				}
				if err == nil && !a.Locked {
					evaluated.Add(1)
				}
			}
			for range 30 {
				wg.Go(start)
			}
			wg.Wait()
			if got := evaluated.Load(); got != int32(lim.MaxFailures) {
				t.Fatalf("30 attempts at once: %d evaluated, want %d", got, lim.MaxFailures)
			}
		})
	}
}

// reportRedisCPU returns a function that reports the CPU time the Redis
// server's main thread spent since the call, per operation: the cost that
// all replicas share on one Redis, round trips included.
func reportRedisCPU(b *testing.B, rdb *redis.Client) func() {
	before := redisCPU(b, rdb)
	return func() {
		b.StopTimer()
		used := redisCPU(b, rdb) - before
		b.ReportMetric(float64(used.Microseconds())/float64(b.N), "redis-cpu-µs/op")
	}
}

// redisCPU is the CPU time, user and system, of the server's main thread.
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(b.Context(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	found := 0
	for line := range strings.Lines(info) {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || name != "used_cpu_user_main_thread" && name != "used_cpu_sys_main_thread" {
			continue
		}
		sec, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.Fatal(err)
		}
		total += time.Duration(sec * float64(time.Second))
		found++
	}
	if found != 2 {
		b.Fatalf("INFO cpu has no main-thread CPU times:\n%s", info)
	}
	return total
}

// BenchmarkVerifyTOTPPath measures the store's side of an accepted
// VerifyTOTP (StartAttempt, then AcceptTOTPStep) in the three designs:
// serial on one user, parallel on distinct users, and parallel on one user
// (where the CAS designs retry).
func BenchmarkVerifyTOTPPath(b *testing.B) {
	rdb := redistest.Client(b, redistest.Start(b)).(*redis.Client)
	ctx := b.Context()
	// No lock may get in the way: the contended case refuses steps that
	// arrive late, and those count as failures.
	lim := mfa.Limits{MaxFailures: 1 << 30, BaseLockout: time.Second, MaxLockout: time.Second, FailureTTL: time.Hour}
	for _, d := range designs(rdb) {
		b.Run(d.name+"/serial", func(b *testing.B) {
			user := fmt.Sprintf("%s-serial-%d", d.name, benchUsers.Add(1))
			if err := d.v.enroll(ctx, user, benchFactor); err != nil {
				b.Fatal(err)
			}
			defer reportRedisCPU(b, rdb)()
			step := int64(0)
			for b.Loop() {
				step++
				ok, err := d.v.verify(ctx, user, benchFactor.ID, step, benchT0, lim)
				if err != nil || !ok {
					b.Fatalf("step %d: %v, %v", step, ok, err)
				}
			}
		})
		b.Run(d.name+"/parallel-users", func(b *testing.B) {
			defer reportRedisCPU(b, rdb)()
			b.RunParallel(func(pb *testing.PB) {
				user := fmt.Sprintf("%s-users-%d", d.name, benchUsers.Add(1))
				if err := d.v.enroll(ctx, user, benchFactor); err != nil {
					b.Error(err)
					return
				}
				step := int64(0)
				for pb.Next() {
					step++
					if ok, err := d.v.verify(ctx, user, benchFactor.ID, step, benchT0, lim); err != nil || !ok {
						b.Errorf("step %d: %v, %v", step, ok, err)
						return
					}
				}
			})
		})
		b.Run(d.name+"/parallel-one-user", func(b *testing.B) {
			user := fmt.Sprintf("%s-one-%d", d.name, benchUsers.Add(1))
			if err := d.v.enroll(ctx, user, benchFactor); err != nil {
				b.Fatal(err)
			}
			var step atomic.Int64
			defer reportRedisCPU(b, rdb)()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := d.v.verify(ctx, user, benchFactor.ID, step.Add(1), benchT0, lim); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
