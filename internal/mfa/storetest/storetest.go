// Package storetest is the conformance suite of mfa.Store: every store
// implementation runs it, with the same cases, including the concurrent ones
// where N goroutines race for a one-time value and exactly one may win.
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

// NewStore returns an empty store for one test.
type NewStore func(t *testing.T) mfa.Store

// Run runs the suite against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s mfa.Store)
	}{
		{"UnknownUser", testUnknownUser},
		{"Enrollment", testEnrollment},
		{"PendingFactor", testPendingFactor},
		{"ConfirmFactor", testConfirmFactor},
		{"ConfirmNeedsActivation", testConfirmNeedsActivation},
		{"ConfirmFirstFactorOnly", testConfirmFirstFactorOnly},
		{"ActivateEnrollment", testActivateEnrollment},
		{"AcceptTOTPStep", testAcceptTOTPStep},
		{"StartAttemptLocks", testStartAttemptLocks},
		{"FailuresForgotten", testFailuresForgotten},
		{"UsersApart", testUsersApart},
		{"ConcurrentAcceptTOTPStep", testConcurrentAccept},
		{"ConcurrentStartAttempt", testConcurrentStartAttempt},
		{"ConcurrentConfirmFactor", testConcurrentConfirm},
		{"ConcurrentActivate", testConcurrentActivate},
		{"WebAuthnFactor", testWebAuthnFactor},
		{"DuplicateCredential", testDuplicateCredential},
		{"AcceptAssertion", testAcceptAssertion},
		{"Challenge", testChallenge},
		{"RecoveryCodes", testRecoveryCodes},
		{"ReplaceRecoveryCodes", testReplaceRecoveryCodes},
		{"ConcurrentTakeChallenge", testConcurrentTakeChallenge},
		{"ConcurrentAcceptAssertion", testConcurrentAcceptAssertion},
		{"ConcurrentConsumeRecoveryCode", testConcurrentConsumeRecovery},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, newStore(t))
		})
	}
}

var (
	ctx = context.Background()
	// t0 is whole milliseconds: stores may keep times at that precision.
	t0     = time.UnixMilli(1_790_000_000_123).UTC()
	limits = mfa.Limits{MaxFailures: 10, BaseLockout: 30 * time.Second, MaxLockout: time.Hour, FailureTTL: 24 * time.Hour}
)

func totpFactor(id string) mfa.Factor {
	return mfa.Factor{
		ID: id, Kind: mfa.KindTOTP, Name: "phone " + id, CreatedAt: t0,
		TOTP: &mfa.TOTP{Algorithm: "SHA1", Digits: 6, Period: 30, KeyID: "k1", Sealed: []byte("sealed-" + id)},
	}
}

func session(user, hash string, first bool) mfa.Enrollment {
	return mfa.Enrollment{
		TokenHash: hash, UserID: user, DisplayName: "Dr " + user, Proof: mfa.ProofStrong,
		CreatedAt: t0, ExpiresAt: t0.Add(15 * time.Minute), FirstFactor: first,
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// enroll gives user a confirmed TOTP factor id whose last step is step.
func enroll(t *testing.T, s mfa.Store, user, id string, step int64) {
	t.Helper()
	hash := "h-" + user + "-" + id
	must(t, s.CreateEnrollment(ctx, session(user, hash, false)))
	must(t, s.PutPendingFactor(ctx, user, totpFactor(id), t0.Add(10*time.Minute)))
	must(t, s.ConfirmFactor(ctx, mfa.Confirmation{UserID: user, FactorID: id, TokenHash: hash, Step: step, Now: t0}))
}

func testUnknownUser(t *testing.T, s mfa.Store) {
	u, err := s.User(ctx, "nobody")
	must(t, err)
	if u.ID != "nobody" || len(u.Factors) != 0 || !u.LockedUntil.IsZero() || !u.LastVerifiedAt.IsZero() {
		t.Fatalf("unknown user: got %+v, want an empty user named nobody", u)
	}
	ok, err := s.AcceptTOTPStep(ctx, "nobody", "0123456789abcdef", 100, t0)
	must(t, err)
	if ok {
		t.Fatal("AcceptTOTPStep of an unknown user's factor: got true")
	}
	_, err = s.PendingFactor(ctx, "nobody", "0123456789abcdef", t0)
	wantErr(t, "PendingFactor of unknown user", err, mfa.ErrNotFound)
}

func testEnrollment(t *testing.T, s mfa.Store) {
	e := session("alice", "hash1", true)
	e.NeedsActivation = true
	e.ReturnURL = "https://portal.example/back"
	must(t, s.CreateEnrollment(ctx, e))
	got, err := s.Enrollment(ctx, "hash1", t0.Add(time.Minute))
	must(t, err)
	if diff := cmp.Diff(e, got); diff != "" {
		t.Fatalf("Enrollment round trip (-want +got):\n%s", diff)
	}
	_, err = s.Enrollment(ctx, "hash2", t0)
	wantErr(t, "unknown session", err, mfa.ErrNotFound)
	_, err = s.Enrollment(ctx, "hash1", e.ExpiresAt)
	wantErr(t, "expired session", err, mfa.ErrNotFound)
}

func testPendingFactor(t *testing.T, s mfa.Store) {
	f := totpFactor("00000000000000a1")
	must(t, s.PutPendingFactor(ctx, "alice", f, t0.Add(10*time.Minute)))
	got, err := s.PendingFactor(ctx, "alice", f.ID, t0.Add(time.Minute))
	must(t, err)
	if diff := cmp.Diff(f, got); diff != "" {
		t.Fatalf("PendingFactor round trip (-want +got):\n%s", diff)
	}
	_, err = s.PendingFactor(ctx, "alice", f.ID, t0.Add(10*time.Minute))
	wantErr(t, "expired pending factor", err, mfa.ErrNotFound)
	_, err = s.PendingFactor(ctx, "bob", f.ID, t0)
	wantErr(t, "another user's pending factor", err, mfa.ErrNotFound)
	u, err := s.User(ctx, "alice")
	must(t, err)
	if len(u.Factors) != 0 {
		t.Fatalf("a pending factor counts as confirmed: %+v", u.Factors)
	}
}

func testConfirmFactor(t *testing.T, s mfa.Store) {
	f := totpFactor("00000000000000a1")
	must(t, s.CreateEnrollment(ctx, session("alice", "hash1", true)))
	must(t, s.PutPendingFactor(ctx, "alice", f, t0.Add(10*time.Minute)))
	c := mfa.Confirmation{UserID: "alice", FactorID: f.ID, TokenHash: "hash1", FirstFactor: true, Step: 1000, Now: t0}
	must(t, s.ConfirmFactor(ctx, c))

	u, err := s.User(ctx, "alice")
	must(t, err)
	if diff := cmp.Diff([]mfa.Factor{f}, u.Factors); diff != "" {
		t.Fatalf("confirmed factors (-want +got):\n%s", diff)
	}
	_, err = s.Enrollment(ctx, "hash1", t0)
	wantErr(t, "completed session", err, mfa.ErrNotFound)
	_, err = s.PendingFactor(ctx, "alice", f.ID, t0)
	wantErr(t, "confirmed pending factor", err, mfa.ErrNotFound)
	wantErr(t, "second confirmation", s.ConfirmFactor(ctx, c), mfa.ErrNotFound)

	// The confirming step counts as used.
	ok, err := s.AcceptTOTPStep(ctx, "alice", f.ID, 1000, t0)
	must(t, err)
	if ok {
		t.Fatal("the step that confirmed the factor was accepted again")
	}
	ok, err = s.AcceptTOTPStep(ctx, "alice", f.ID, 1001, t0)
	must(t, err)
	if !ok {
		t.Fatal("the step after the confirming one was refused")
	}

	// A session that is gone confirms nothing.
	g := totpFactor("00000000000000a2")
	must(t, s.PutPendingFactor(ctx, "alice", g, t0.Add(10*time.Minute)))
	err = s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: g.ID, TokenHash: "nope", Step: 1, Now: t0})
	wantErr(t, "confirm without session", err, mfa.ErrNotFound)
	// A pending factor that is gone is not confirmed, and the session survives.
	must(t, s.CreateEnrollment(ctx, session("alice", "hash3", false)))
	err = s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: "00000000000000ff", TokenHash: "hash3", Step: 1, Now: t0})
	wantErr(t, "confirm without pending factor", err, mfa.ErrNotFound)
	if _, err := s.Enrollment(ctx, "hash3", t0); err != nil {
		t.Fatalf("a failed confirmation consumed the session: %v", err)
	}
	// An expired session confirms nothing.
	err = s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: g.ID, TokenHash: "hash3", Step: 1, Now: t0.Add(time.Hour)})
	wantErr(t, "confirm with expired session", err, mfa.ErrNotFound)
	u, err = s.User(ctx, "alice")
	must(t, err)
	if len(u.Factors) != 1 {
		t.Fatalf("failed confirmations changed the factors: %+v", u.Factors)
	}
}

func testConfirmNeedsActivation(t *testing.T, s mfa.Store) {
	e := session("alice", "hash1", true)
	e.NeedsActivation = true
	e.Proof = mfa.ProofPasswordOnly
	must(t, s.CreateEnrollment(ctx, e))
	f := totpFactor("00000000000000a1")
	must(t, s.PutPendingFactor(ctx, "alice", f, t0.Add(10*time.Minute)))
	c := mfa.Confirmation{UserID: "alice", FactorID: f.ID, TokenHash: "hash1", FirstFactor: true, Step: 1, Now: t0}
	wantErr(t, "confirm in a session not activated", s.ConfirmFactor(ctx, c), mfa.ErrConflict)
	u, err := s.User(ctx, "alice")
	must(t, err)
	if len(u.Factors) != 0 {
		t.Fatalf("a session without activation enrolled %+v", u.Factors)
	}
	must(t, s.PutActivationCode(ctx, "alice", "codehash", t0.Add(time.Hour)))
	must(t, s.ActivateEnrollment(ctx, "hash1", "alice", "codehash", t0))
	must(t, s.ConfirmFactor(ctx, c))
}

func testConfirmFirstFactorOnly(t *testing.T, s mfa.Store) {
	must(t, s.CreateEnrollment(ctx, session("alice", "first1", true)))
	must(t, s.CreateEnrollment(ctx, session("alice", "first2", true)))
	f, g := totpFactor("00000000000000a1"), totpFactor("00000000000000a2")
	must(t, s.PutPendingFactor(ctx, "alice", f, t0.Add(10*time.Minute)))
	must(t, s.PutPendingFactor(ctx, "alice", g, t0.Add(10*time.Minute)))
	must(t, s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: f.ID, TokenHash: "first1", FirstFactor: true, Now: t0}))
	err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: g.ID, TokenHash: "first2", FirstFactor: true, Now: t0})
	wantErr(t, "a second first factor", err, mfa.ErrConflict)
	u, err := s.User(ctx, "alice")
	must(t, err)
	if len(u.Factors) != 1 {
		t.Fatalf("got %d factors, want 1", len(u.Factors))
	}
}

func testActivateEnrollment(t *testing.T, s mfa.Store) {
	e := session("alice", "hash1", true)
	e.NeedsActivation = true
	must(t, s.CreateEnrollment(ctx, e))

	wantErr(t, "activate without a code", s.ActivateEnrollment(ctx, "hash1", "alice", "c1", t0), mfa.ErrWrongCode)
	must(t, s.PutActivationCode(ctx, "alice", "c1", t0.Add(time.Hour)))
	must(t, s.PutActivationCode(ctx, "alice", "c2", t0.Add(10*time.Minute))) // replaces c1
	wantErr(t, "replaced code", s.ActivateEnrollment(ctx, "hash1", "alice", "c1", t0), mfa.ErrWrongCode)
	wantErr(t, "wrong code", s.ActivateEnrollment(ctx, "hash1", "alice", "zz", t0), mfa.ErrWrongCode)
	wantErr(t, "expired code", s.ActivateEnrollment(ctx, "hash1", "alice", "c2", t0.Add(10*time.Minute)), mfa.ErrWrongCode)
	wantErr(t, "unknown session", s.ActivateEnrollment(ctx, "nope", "alice", "c2", t0), mfa.ErrNotFound)
	got, err := s.Enrollment(ctx, "hash1", t0)
	must(t, err)
	if got.Activated {
		t.Fatal("a wrong code activated the session")
	}
	must(t, s.ActivateEnrollment(ctx, "hash1", "alice", "c2", t0))
	got, err = s.Enrollment(ctx, "hash1", t0)
	must(t, err)
	if !got.Activated || !got.Usable() {
		t.Fatalf("session after activation: %+v", got)
	}
	// The code was consumed.
	must(t, s.CreateEnrollment(ctx, session("alice", "hash2", true)))
	wantErr(t, "reused code", s.ActivateEnrollment(ctx, "hash2", "alice", "c2", t0), mfa.ErrWrongCode)
	// Another user's code does not activate alice's session.
	must(t, s.PutActivationCode(ctx, "bob", "cb", t0.Add(time.Hour)))
	wantErr(t, "another user's code", s.ActivateEnrollment(ctx, "hash2", "alice", "cb", t0), mfa.ErrWrongCode)
}

func testAcceptTOTPStep(t *testing.T, s mfa.Store) {
	id := "00000000000000a1"
	enroll(t, s, "alice", id, 100)
	later := t0.Add(time.Minute)
	for _, c := range []struct {
		step int64
		want bool
	}{{99, false}, {100, false}, {101, true}, {101, false}, {100, false}, {105, true}, {103, false}} {
		got, err := s.AcceptTOTPStep(ctx, "alice", id, c.step, later)
		must(t, err)
		if got != c.want {
			t.Fatalf("AcceptTOTPStep(step %d): got %v, want %v", c.step, got, c.want)
		}
	}
	u, err := s.User(ctx, "alice")
	must(t, err)
	if !u.LastVerifiedAt.Equal(later) || !u.Factors[0].LastUsedAt.Equal(later) {
		t.Fatalf("after an accepted step: LastVerifiedAt %v, LastUsedAt %v, want %v", u.LastVerifiedAt, u.Factors[0].LastUsedAt, later)
	}
	ok, err := s.AcceptTOTPStep(ctx, "alice", "00000000000000ff", 200, later)
	must(t, err)
	if ok {
		t.Fatal("AcceptTOTPStep of a factor that does not exist: got true")
	}
}

// attempt runs StartAttempt and reports whether it may be evaluated.
func attempt(t *testing.T, s mfa.Store, user string, now time.Time) mfa.Attempt {
	t.Helper()
	a, err := s.StartAttempt(ctx, user, now, limits)
	must(t, err)
	return a
}

func testStartAttemptLocks(t *testing.T, s mfa.Store) {
	id := "00000000000000a1"
	enroll(t, s, "alice", id, 100)
	now := t0
	for i := 1; i <= limits.MaxFailures; i++ {
		a := attempt(t, s, "alice", now)
		if a.Locked {
			t.Fatalf("attempt %d: locked before %d failures", i, limits.MaxFailures)
		}
		if len(a.Factors) != 1 || a.Factors[0].ID != id {
			t.Fatalf("attempt %d: factors %+v, want the user's one factor", i, a.Factors)
		}
	}
	a := attempt(t, s, "alice", now)
	if !a.Locked || !a.LockedUntil.Equal(now.Add(30*time.Second)) || len(a.Factors) != 0 {
		t.Fatalf("attempt %d: got %+v, want locked until +30s without factors", limits.MaxFailures+1, a)
	}
	u, err := s.User(ctx, "alice")
	must(t, err)
	if !u.Locked(now) {
		t.Fatalf("User does not show the lock: %+v", u)
	}
	// After the lock: one attempt is evaluated and locks again, twice as long.
	now = now.Add(30 * time.Second)
	if a := attempt(t, s, "alice", now); a.Locked {
		t.Fatal("still locked after the lock ended")
	}
	if a := attempt(t, s, "alice", now); !a.Locked || !a.LockedUntil.Equal(now.Add(60*time.Second)) {
		t.Fatalf("second lock: got %+v, want locked until +60s", a)
	}
	// The back-off stops growing at MaxLockout.
	for range 10 {
		now = now.Add(time.Hour)
		attempt(t, s, "alice", now)
	}
	if a := attempt(t, s, "alice", now); !a.Locked || !a.LockedUntil.Equal(now.Add(time.Hour)) {
		t.Fatalf("long lock: got %+v, want locked until +1h", a)
	}
	// A success resets the count and the lock.
	now = now.Add(time.Hour)
	attempt(t, s, "alice", now)
	ok, err := s.AcceptTOTPStep(ctx, "alice", id, 101, now)
	must(t, err)
	if !ok {
		t.Fatal("AcceptTOTPStep refused a later step")
	}
	for i := 1; i <= limits.MaxFailures; i++ {
		if a := attempt(t, s, "alice", now); a.Locked {
			t.Fatalf("after a success, attempt %d is locked", i)
		}
	}
	if a := attempt(t, s, "alice", now); !a.Locked || !a.LockedUntil.Equal(now.Add(30*time.Second)) {
		t.Fatalf("after a success the back-off starts again at 30s: got %+v", a)
	}
}

func testFailuresForgotten(t *testing.T, s mfa.Store) {
	for range limits.MaxFailures - 1 {
		attempt(t, s, "alice", t0)
	}
	// A day without a failure: the count starts again.
	now := t0.Add(limits.FailureTTL + time.Second)
	for i := 1; i <= limits.MaxFailures; i++ {
		if a := attempt(t, s, "alice", now); a.Locked {
			t.Fatalf("attempt %d after FailureTTL: locked; failures were not forgotten", i)
		}
	}
}

func testUsersApart(t *testing.T, s mfa.Store) {
	users := []string{"a}b:{c", "a", "a}", "{u:a}", "user@example.org"}
	for i, u := range users {
		enroll(t, s, u, fmt.Sprintf("00000000000000b%d", i), 10)
	}
	for range limits.MaxFailures {
		attempt(t, s, "a", t0)
	}
	for i, u := range users {
		got, err := s.User(ctx, u)
		must(t, err)
		if len(got.Factors) != 1 || got.Factors[0].ID != fmt.Sprintf("00000000000000b%d", i) {
			t.Fatalf("user %q: factors %+v", u, got.Factors)
		}
		if locked := got.Locked(t0); locked != (u == "a") {
			t.Fatalf("user %q: locked %v", u, locked)
		}
	}
}

// race runs fn n times at once and returns how many returned true.
func race(t *testing.T, n int, fn func() (bool, error)) int {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		wins  int
		errs  []error
		start = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			<-start
			ok, err := fn()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				wins++
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d calls failed, first: %v", len(errs), n, errs[0])
	}
	return wins
}

func testConcurrentAccept(t *testing.T, s mfa.Store) {
	id := "00000000000000a1"
	enroll(t, s, "alice", id, 100)
	wins := race(t, 50, func() (bool, error) { return s.AcceptTOTPStep(ctx, "alice", id, 101, t0) })
	if wins != 1 {
		t.Fatalf("one step sent 50 times at once: accepted %d times, want 1", wins)
	}
}

func testConcurrentStartAttempt(t *testing.T, s mfa.Store) {
	enroll(t, s, "alice", "00000000000000a1", 100)
	evaluated := race(t, 50, func() (bool, error) {
		a, err := s.StartAttempt(ctx, "alice", t0, limits)
		return err == nil && !a.Locked, err
	})
	if evaluated != limits.MaxFailures {
		t.Fatalf("50 attempts at once: %d evaluated, want exactly %d", evaluated, limits.MaxFailures)
	}
}

func testConcurrentConfirm(t *testing.T, s mfa.Store) {
	must(t, s.CreateEnrollment(ctx, session("alice", "hash1", true)))
	f := totpFactor("00000000000000a1")
	must(t, s.PutPendingFactor(ctx, "alice", f, t0.Add(10*time.Minute)))
	wins := race(t, 20, func() (bool, error) {
		err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", FactorID: f.ID, TokenHash: "hash1", FirstFactor: true, Step: 1, Now: t0})
		if errors.Is(err, mfa.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	})
	if wins != 1 {
		t.Fatalf("one session confirmed %d times at once, want 1", wins)
	}
}

func testConcurrentActivate(t *testing.T, s mfa.Store) {
	for i := range 20 {
		e := session("alice", fmt.Sprintf("hash%d", i), true)
		e.NeedsActivation = true
		must(t, s.CreateEnrollment(ctx, e))
	}
	must(t, s.PutActivationCode(ctx, "alice", "code", t0.Add(time.Hour)))
	var mu sync.Mutex
	i := 0
	wins := race(t, 20, func() (bool, error) {
		mu.Lock()
		hash := fmt.Sprintf("hash%d", i)
		i++
		mu.Unlock()
		err := s.ActivateEnrollment(ctx, hash, "alice", "code", t0)
		if errors.Is(err, mfa.ErrWrongCode) {
			return false, nil
		}
		return err == nil, err
	})
	if wins != 1 {
		t.Fatalf("one activation code activated %d sessions, want 1", wins)
	}
}

func webauthnFactor(id string, credID string, signCount uint32) mfa.Factor {
	return mfa.Factor{
		ID: id, Kind: mfa.KindWebAuthn, Name: "key " + id, CreatedAt: t0,
		WebAuthn: &mfa.WebAuthn{
			CredentialID: []byte(credID), PublicKey: []byte("cose-" + credID), AttestationType: "none",
			AttestationFormat: "none", AAGUID: make([]byte, 16), Transports: []string{"usb", "nfc"},
			BackupEligible: true, BackupState: false, UserVerified: true, SignCount: signCount,
		},
	}
}

// addWebAuthn gives user the confirmed WebAuthn factor f.
func addWebAuthn(t *testing.T, s mfa.Store, user string, f mfa.Factor, recovery ...string) error {
	t.Helper()
	hash := "h-" + user + "-" + f.ID
	must(t, s.CreateEnrollment(ctx, session(user, hash, false)))
	return s.ConfirmFactor(ctx, mfa.Confirmation{UserID: user, FactorID: f.ID, Factor: &f, TokenHash: hash, Now: t0, RecoveryHashes: recovery})
}

func testWebAuthnFactor(t *testing.T, s mfa.Store) {
	f := webauthnFactor("00000000000000c1", "cred-1", 7)
	must(t, addWebAuthn(t, s, "alice", f))
	u, err := s.User(ctx, "alice")
	must(t, err)
	if diff := cmp.Diff([]mfa.Factor{f}, u.Factors); diff != "" {
		t.Fatalf("WebAuthn factor round trip (-want +got):\n%s", diff)
	}
	a := attempt(t, s, "alice", t0)
	if diff := cmp.Diff([]mfa.Factor{f}, a.Factors); diff != "" {
		t.Fatalf("StartAttempt factors (-want +got):\n%s", diff)
	}
}

func testDuplicateCredential(t *testing.T, s mfa.Store) {
	must(t, addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c1", "cred-1", 0)))
	must(t, s.CreateEnrollment(ctx, session("bob", "hb", true)))
	g := webauthnFactor("00000000000000c2", "cred-1", 0)
	err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "bob", FactorID: g.ID, Factor: &g, TokenHash: "hb", FirstFactor: true, Now: t0})
	wantErr(t, "another user's credential ID", err, mfa.ErrDuplicate)
	if _, err := s.Enrollment(ctx, "hb", t0); err != nil {
		t.Fatalf("a refused credential consumed the session: %v", err)
	}
	u, err := s.User(ctx, "bob")
	must(t, err)
	if len(u.Factors) != 0 {
		t.Fatalf("a duplicate credential was stored: %+v", u.Factors)
	}
	err = addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c3", "cred-1", 0))
	wantErr(t, "the same user's credential ID again", err, mfa.ErrDuplicate)
	// A failed confirmation does not keep the credential ID: bob's session
	// was for a first factor, so it fails with ErrConflict once bob has one.
	must(t, addWebAuthn(t, s, "bob", webauthnFactor("00000000000000c4", "cred-2", 0)))
	must(t, s.CreateEnrollment(ctx, session("bob", "hb2", true)))
	h := webauthnFactor("00000000000000c5", "cred-3", 0)
	err = s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "bob", FactorID: h.ID, Factor: &h, TokenHash: "hb2", FirstFactor: true, Now: t0})
	wantErr(t, "a second first factor", err, mfa.ErrConflict)
	must(t, addWebAuthn(t, s, "carol", webauthnFactor("00000000000000c6", "cred-3", 0)))
}

func testAcceptAssertion(t *testing.T, s mfa.Store) {
	f := webauthnFactor("00000000000000c1", "cred-1", 3)
	must(t, addWebAuthn(t, s, "alice", f))
	for range limits.MaxFailures - 1 {
		attempt(t, s, "alice", t0)
	}
	later := t0.Add(time.Minute)
	for _, c := range []struct {
		count uint32
		want  bool
	}{{3, false}, {2, false}, {0, false}, {4, true}, {4, false}, {9, true}} {
		got, err := s.AcceptAssertion(ctx, "alice", f.ID, mfa.AssertionUse{SignCount: c.count, BackupState: true, UserVerified: true}, later)
		must(t, err)
		if got != c.want {
			t.Fatalf("AcceptAssertion(sign count %d): got %v, want %v", c.count, got, c.want)
		}
	}
	u, err := s.User(ctx, "alice")
	must(t, err)
	w := u.Factors[0].WebAuthn
	if w.SignCount != 9 || !w.BackupState || !u.Factors[0].LastUsedAt.Equal(later) || !u.LastVerifiedAt.Equal(later) {
		t.Fatalf("after assertions: %+v, last used %v, last verified %v", w, u.Factors[0].LastUsedAt, u.LastVerifiedAt)
	}
	// The success reset the failures: ten more attempts before a lock.
	for i := 1; i <= limits.MaxFailures; i++ {
		if a := attempt(t, s, "alice", later); a.Locked {
			t.Fatalf("attempt %d after a WebAuthn success: locked", i)
		}
	}
	// An authenticator without a counter always reports zero.
	g := webauthnFactor("00000000000000c2", "cred-2", 0)
	must(t, addWebAuthn(t, s, "bob", g))
	for i := range 2 {
		ok, err := s.AcceptAssertion(ctx, "bob", g.ID, mfa.AssertionUse{}, later)
		must(t, err)
		if !ok {
			t.Fatalf("counter-less assertion %d refused", i)
		}
	}
	ok, err := s.AcceptAssertion(ctx, "bob", "00000000000000ff", mfa.AssertionUse{SignCount: 1}, later)
	must(t, err)
	if ok {
		t.Fatal("AcceptAssertion of a factor that does not exist: got true")
	}
	enroll(t, s, "bob", "00000000000000a1", 1)
	ok, err = s.AcceptAssertion(ctx, "bob", "00000000000000a1", mfa.AssertionUse{SignCount: 1}, later)
	must(t, err)
	if ok {
		t.Fatal("AcceptAssertion of a TOTP factor: got true")
	}
}

func testChallenge(t *testing.T, s mfa.Store) {
	c := mfa.Challenge{UserID: "alice", Name: "key", Session: []byte(`{"challenge":"abc"}`)}
	must(t, s.PutChallenge(ctx, "ch1", c, t0.Add(5*time.Minute)))
	must(t, s.PutChallenge(ctx, "ch2", c, t0.Add(5*time.Minute)))
	got, err := s.TakeChallenge(ctx, "ch1", t0)
	must(t, err)
	if diff := cmp.Diff(c, got); diff != "" {
		t.Fatalf("challenge round trip (-want +got):\n%s", diff)
	}
	_, err = s.TakeChallenge(ctx, "ch1", t0)
	wantErr(t, "a challenge taken twice", err, mfa.ErrNotFound)
	_, err = s.TakeChallenge(ctx, "ch2", t0.Add(5*time.Minute))
	wantErr(t, "an expired challenge", err, mfa.ErrNotFound)
	_, err = s.TakeChallenge(ctx, "ch2", t0)
	wantErr(t, "an expired challenge, taken", err, mfa.ErrNotFound)
	_, err = s.TakeChallenge(ctx, "nope", t0)
	wantErr(t, "an unknown challenge", err, mfa.ErrNotFound)
}

func testRecoveryCodes(t *testing.T, s mfa.Store) {
	must(t, addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c1", "cred-1", 0), "r1", "r2", "r3"))
	u, err := s.User(ctx, "alice")
	must(t, err)
	if u.RecoveryCodes != 3 {
		t.Fatalf("recovery codes after confirmation: %d, want 3", u.RecoveryCodes)
	}
	for range limits.MaxFailures - 1 {
		attempt(t, s, "alice", t0)
	}
	for _, c := range []struct {
		hash      string
		ok        bool
		remaining int
	}{{"r2", true, 2}, {"r2", false, 2}, {"zz", false, 2}, {"r1", true, 1}} {
		ok, remaining, err := s.ConsumeRecoveryCode(ctx, "alice", c.hash, t0)
		must(t, err)
		if ok != c.ok || remaining != c.remaining {
			t.Fatalf("ConsumeRecoveryCode(%s): %v, %d left; want %v, %d", c.hash, ok, remaining, c.ok, c.remaining)
		}
	}
	if a := attempt(t, s, "alice", t0); a.Locked {
		t.Fatal("a recovery code did not reset the failures")
	}
	ok, _, err := s.ConsumeRecoveryCode(ctx, "bob", "r3", t0)
	must(t, err)
	if ok {
		t.Fatal("bob consumed alice's recovery code")
	}
	// The codes of a later confirmation without recovery hashes stay.
	enroll(t, s, "alice", "00000000000000a1", 1)
	u, err = s.User(ctx, "alice")
	must(t, err)
	if u.RecoveryCodes != 1 || !u.LastVerifiedAt.Equal(t0) {
		t.Fatalf("after adding a factor: %d recovery codes, last verified %v", u.RecoveryCodes, u.LastVerifiedAt)
	}
}

func testReplaceRecoveryCodes(t *testing.T, s mfa.Store) {
	must(t, s.CreateEnrollment(ctx, session("alice", "first", true)))
	err := s.ReplaceRecoveryCodes(ctx, "first", "alice", []string{"n1"}, t0)
	wantErr(t, "replace without a factor", err, mfa.ErrConflict)

	must(t, addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c1", "cred-1", 0), "o1", "o2"))
	err = s.ReplaceRecoveryCodes(ctx, "first", "alice", []string{"n1"}, t0)
	wantErr(t, "replace with a first-factor session", err, mfa.ErrConflict)
	err = s.ReplaceRecoveryCodes(ctx, "nope", "alice", []string{"n1"}, t0)
	wantErr(t, "replace with no session", err, mfa.ErrNotFound)
	must(t, s.CreateEnrollment(ctx, session("alice", "more", false)))
	err = s.ReplaceRecoveryCodes(ctx, "more", "bob", []string{"n1"}, t0)
	wantErr(t, "replace with another user's session", err, mfa.ErrNotFound)
	must(t, s.ReplaceRecoveryCodes(ctx, "more", "alice", []string{"n1", "n2", "n3"}, t0))
	_, err = s.Enrollment(ctx, "more", t0)
	wantErr(t, "the session after replacing", err, mfa.ErrNotFound)
	ok, remaining, err := s.ConsumeRecoveryCode(ctx, "alice", "o1", t0)
	must(t, err)
	if ok {
		t.Fatal("an old recovery code still works after replacing")
	}
	ok, remaining, err = s.ConsumeRecoveryCode(ctx, "alice", "n2", t0)
	must(t, err)
	if !ok || remaining != 2 {
		t.Fatalf("a new recovery code: %v, %d left", ok, remaining)
	}
}

func testConcurrentTakeChallenge(t *testing.T, s mfa.Store) {
	must(t, s.PutChallenge(ctx, "ch", mfa.Challenge{UserID: "alice", Session: []byte("{}")}, t0.Add(time.Minute)))
	wins := race(t, 50, func() (bool, error) {
		_, err := s.TakeChallenge(ctx, "ch", t0)
		if errors.Is(err, mfa.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	})
	if wins != 1 {
		t.Fatalf("one challenge taken %d times at once, want 1", wins)
	}
}

func testConcurrentAcceptAssertion(t *testing.T, s mfa.Store) {
	f := webauthnFactor("00000000000000c1", "cred-1", 1)
	must(t, addWebAuthn(t, s, "alice", f))
	wins := race(t, 50, func() (bool, error) {
		return s.AcceptAssertion(ctx, "alice", f.ID, mfa.AssertionUse{SignCount: 2}, t0)
	})
	if wins != 1 {
		t.Fatalf("one sign count accepted %d times at once, want 1", wins)
	}
}

func testConcurrentConsumeRecovery(t *testing.T, s mfa.Store) {
	must(t, addWebAuthn(t, s, "alice", webauthnFactor("00000000000000c1", "cred-1", 0), "r1", "r2"))
	wins := race(t, 30, func() (bool, error) {
		ok, _, err := s.ConsumeRecoveryCode(ctx, "alice", "r1", t0)
		return ok, err
	})
	if wins != 1 {
		t.Fatalf("one recovery code accepted %d times at once, want 1", wins)
	}
}
