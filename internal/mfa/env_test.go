package mfa_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/secondfactor/secondfactor/internal/boltstore"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/passkey"
	"github.com/secondfactor/secondfactor/internal/seal"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/totp"
)

// The settings of every test service, spelled out so that the tests do not
// depend on the defaults.
const (
	freshVerification = 5 * time.Minute
	enrollmentTTL     = 15 * time.Minute
	pendingTTL        = 10 * time.Minute
	activationTTL     = 10 * time.Minute // shorter than a session, so a code can expire in one
	period            = 30 * time.Second
)

// limits lock after three failures, for 30 s first.
var limits = mfa.Limits{MaxFailures: 3, BaseLockout: 30 * time.Second, MaxLockout: time.Hour, FailureTTL: time.Hour}

// clock is the injected time: it moves only when told. The tests drive the
// service from one goroutine.
type clock struct{ t time.Time }

func newClock() *clock                   { return &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

// env is a service on the embedded store, in a temporary file.
type env struct {
	svc   *mfa.Service
	clock *clock
	logs  *logBuffer       // the service's log
	bolt  *boltstore.Store // the store under any wrapper
}

type envOptions struct {
	policy   mfa.Policy
	webauthn bool       // configure a relying party
	limits   mfa.Limits // zero: limits
	// wrap, if set, wraps the store the service talks to.
	wrap func(mfa.Store) mfa.Store
	// disableBypass refuses bypass codes (mfa.Options.DisableBypass).
	disableBypass bool
}

// logBuffer is a log that goroutines may write to at once.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log's lines, decoded.
func (l *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range bytes.Lines(l.b.Bytes()) {
		m := map[string]any{}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// lockedReader makes a reader safe for goroutines to read at once.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "sf.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	ring, err := seal.NewRing([]seal.Key{{ID: "k1", Bytes: make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	var rp mfa.RelyingParty
	if o.webauthn {
		p, err := passkey.New(passkey.Config{RPID: "portal.example", Origins: []string{"https://portal.example"}, DecoyKey: ring.Derive("webauthn decoy credential")})
		if err != nil {
			t.Fatal(err)
		}
		rp = p
	}
	clk := newClock()
	lim := limits
	if o.limits != (mfa.Limits{}) {
		lim = o.limits
	}
	var st mfa.Store = store
	if o.wrap != nil {
		st = o.wrap(store)
	}
	logs := &logBuffer{}
	// Secrets from a seeded generator: every run draws the same TOTP keys
	// and codes, so no test can pass or fail by the chance of a random code.
	seed := [32]byte{'m', 'f', 'a'}
	svc, err := mfa.New(mfa.Options{
		Store: st, Ring: ring, RP: rp, Policy: o.policy, Limits: lim,
		TOTP:              totp.Params{Algorithm: totp.SHA1, Digits: 6, Period: period},
		EnrollmentTTL:     enrollmentTTL,
		PendingTTL:        pendingTTL,
		ActivationTTL:     activationTTL,
		FreshVerification: freshVerification,
		DisableBypass:     o.disableBypass,
		Now:               clk.Now,
		Rand:              &lockedReader{r: rand.NewChaCha8(seed)},
		Logger:            slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, clock: clk, logs: logs, bolt: store}
}

// enrolled is a user with one confirmed TOTP factor.
type enrolled struct {
	userID   string
	secret   []byte
	params   totp.Params
	factorID string
	recovery []secret.String
}

// createSession opens an enrolment session and fails the test if it cannot.
func (e *env) createSession(t *testing.T, userID string, proof mfa.Proof) mfa.NewEnrollment {
	t.Helper()
	ne, err := e.svc.CreateEnrollment(t.Context(), mfa.EnrollmentRequest{UserID: userID, DisplayName: "Dr " + userID, Proof: proof})
	if err != nil {
		t.Fatalf("CreateEnrollment(%s, %s): %v", userID, proof, err)
	}
	return ne
}

// enrollTOTP enrols userID's first TOTP factor with PROOF_STRONG. The clock
// then moves one period on, so that the current code is not the confirming
// one.
func (e *env) enrollTOTP(t *testing.T, userID string) enrolled {
	t.Helper()
	ne := e.createSession(t, userID, mfa.ProofStrong)
	return e.finishTOTP(t, userID, ne.Token.Reveal(), "")
}

// finishTOTP adds a TOTP factor in the session of token.
func (e *env) finishTOTP(t *testing.T, userID, token, activationCode string) enrolled {
	t.Helper()
	p, err := e.svc.BeginTOTPEnrollment(t.Context(), token, "phone", activationCode)
	if err != nil {
		t.Fatalf("BeginTOTPEnrollment: %v", err)
	}
	u := enrolled{userID: userID, secret: p.Key.Secret, params: p.Params, factorID: p.FactorID}
	_, codes, err := e.svc.FinishTOTPEnrollment(t.Context(), token, p.FactorID, e.code(t, u, 0))
	if err != nil {
		t.Fatalf("FinishTOTPEnrollment: %v", err)
	}
	u.recovery = codes
	e.clock.Advance(u.params.Period)
	return u
}

// code is u's code offset steps from the clock's.
func (e *env) code(t *testing.T, u enrolled, offset int64) string {
	t.Helper()
	c, err := totp.Code(u.secret, u.params, u.params.Step(e.clock.Now())+offset)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wrongCode is a code of the right length that matches none of the steps
// the service accepts at the clock's time (the current one and one either
// side).
func (e *env) wrongCode(t *testing.T, u enrolled) string {
	t.Helper()
	accepted := map[string]bool{}
	for off := int64(-1); off <= 1; off++ {
		accepted[e.code(t, u, off)] = true
	}
	for n := 0; ; n++ {
		if c := fmt.Sprintf("%0*d", u.params.Digits, n); !accepted[c] {
			return c
		}
	}
}

// inWindow reports whether code is u's code for a step the service accepts
// at the clock's time.
func (e *env) inWindow(t *testing.T, u enrolled, code string) bool {
	t.Helper()
	for off := int64(-1); off <= 1; off++ {
		if e.code(t, u, off) == code {
			return true
		}
	}
	return false
}

// verify checks a TOTP code and fails the test on an error.
func (e *env) verify(t *testing.T, userID, code string) mfa.Result {
	t.Helper()
	r, err := e.svc.VerifyTOTP(t.Context(), userID, code, mfa.Client{})
	if err != nil {
		t.Fatalf("VerifyTOTP: %v", err)
	}
	return r
}

// outcome is what a call came to: a refusal's reason, a bad field, or
// nothing (success).
type outcome struct {
	Reason mfa.Reason
	Kind   string // the sentinel of the refusal
	Field  string
}

// outcomeOf reads an error of the flows; any other error fails the test.
func outcomeOf(t *testing.T, err error) outcome {
	t.Helper()
	var (
		me *mfa.Error
		fe *mfa.FieldError
	)
	switch {
	case err == nil:
		return outcome{}
	case errors.As(err, &fe):
		return outcome{Field: fe.Field}
	case errors.As(err, &me):
		return outcome{Reason: me.Reason, Kind: me.Kind.Error()}
	}
	t.Fatalf("error %v (%T): want an *mfa.Error or an *mfa.FieldError", err, err)
	return outcome{}
}

// refused is the outcome of a refusal for reason r, of the kind r comes with.
func refused(r mfa.Reason) outcome {
	kinds := map[mfa.Reason]error{
		mfa.ReasonLocked:                mfa.ErrLocked,
		mfa.ReasonSessionNotFound:       mfa.ErrNotFound,
		mfa.ReasonPendingFactorNotFound: mfa.ErrNotFound,
		mfa.ReasonRegistrationNotFound:  mfa.ErrNotFound,
		mfa.ReasonCredentialRegistered:  mfa.ErrDuplicate,
		mfa.ReasonFactorNotFound:        mfa.ErrNotFound,
	}
	kind, ok := kinds[r]
	if !ok {
		kind = mfa.ErrRefused
	}
	return outcome{Reason: r, Kind: kind.Error()}
}

// badField is the outcome of bad input in field.
func badField(field string) outcome { return outcome{Field: field} }
