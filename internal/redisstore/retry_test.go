package redisstore

import (
	"errors"
	"testing"
	"time"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/redistest"
)

// TestScriptRunTwice runs each script with an effect twice for one call,
// as go-redis does when a connection fails after the script was sent: the
// second run answers as the first did and changes nothing (see opKey).
func TestScriptRunTwice(t *testing.T) {
	ctx := t.Context()
	s := New(redistest.Client(t, redistest.Start(t)))
	now := time.UnixMilli(1_790_000_000_000).UTC()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	totp := mfa.Factor{ID: "00000000000000a1", Kind: mfa.KindTOTP, CreatedAt: now, TOTP: &mfa.TOTP{Digits: 6, Period: 30}}
	key := mfa.Factor{ID: "00000000000000c1", Kind: mfa.KindWebAuthn, CreatedAt: now, WebAuthn: &mfa.WebAuthn{CredentialID: []byte("cred"), PublicKey: []byte("k"), SignCount: 1}}
	twice := func(name string, run func(nonce string) (any, error)) any {
		t.Helper()
		nonce := newNonce()
		first, err := run(nonce)
		must(err)
		again, err := run(nonce)
		must(err)
		if first != again {
			t.Fatalf("%s run twice for one call: %v, then %v", name, first, again)
		}
		return first
	}

	// ConfirmFactor: the second run does not find the session gone, so
	// the credential ID stays registered.
	must(s.CreateEnrollment(ctx, mfa.Enrollment{TokenHash: "h", UserID: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	c := mfa.Confirmation{UserID: "alice", Factor: &key, TokenHash: "h", Now: now}
	factorID, args, err := confirmArgs(c)
	must(err)
	cred, err := s.reserveCredential(ctx, c)
	must(err)
	twice("ConfirmFactor", func(nonce string) (any, error) { return nil, s.confirm(ctx, c, factorID, args, cred, nonce) })
	must(s.CreateEnrollment(ctx, mfa.Enrollment{TokenHash: "hb", UserID: "bob", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	if err := s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "bob", Factor: &key, TokenHash: "hb", Now: now}); !errors.Is(err, mfa.ErrDuplicate) {
		t.Fatalf("bob registers alice's credential ID after her confirmation ran twice: %v, want ErrDuplicate", err)
	}
	must(s.CreateEnrollment(ctx, mfa.Enrollment{TokenHash: "h2", UserID: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	must(s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "alice", Factor: &totp, TokenHash: "h2", Now: now}))

	// AcceptTOTPStep and AcceptAssertion: accepted twice, and the second
	// assertion is not taken for a clone.
	if got := twice("AcceptTOTPStep", func(nonce string) (any, error) {
		return s.acceptTOTPStep(ctx, "alice", totp.ID, 1, 0, now, nonce)
	}); got != true {
		t.Fatalf("AcceptTOTPStep: %v", got)
	}
	if got := twice("AcceptAssertion", func(nonce string) (any, error) {
		return s.acceptAssertion(ctx, "alice", key.ID, mfa.AssertionUse{SignCount: 2}, 0, now, nonce)
	}); got != mfa.AssertionAccepted {
		t.Fatalf("AcceptAssertion: %v", got)
	}
	u, err := s.User(ctx, "alice")
	must(err)
	if !u.Factors[1].SuspendedAt.IsZero() {
		t.Fatalf("a key suspended by its own assertion run twice: %+v", u.Factors[1])
	}
	// A new call with the same count is a clone, and so it stays when run twice.
	if got := twice("AcceptAssertion of a clone", func(nonce string) (any, error) {
		return s.acceptAssertion(ctx, "alice", key.ID, mfa.AssertionUse{SignCount: 2}, 0, now, nonce)
	}); got != mfa.AssertionCloned {
		t.Fatalf("AcceptAssertion of a clone: %v", got)
	}
	must(s.SuspendFactor(ctx, "alice", key.ID, time.Time{}))

	// DeleteFactor: done once, epoch 1.
	twice("DeleteFactor", func(nonce string) (any, error) { return nil, s.deleteFactor(ctx, "alice", totp.ID, nonce) })
	// ResetUser: the key removed and its ID freed once, epoch 2.
	if got := twice("ResetUser", func(nonce string) (any, error) { return s.resetUser(ctx, "alice", nonce) }); got != 1 {
		t.Fatalf("ResetUser removed %v factors, want 1", got)
	}
	if u, err := s.User(ctx, "alice"); err != nil || u.Epoch != 2 || len(u.Factors) != 0 {
		t.Fatalf("alice after a delete and a reset, each run twice: %+v, %v; want epoch 2, no factor", u, err)
	}
	must(s.ConfirmFactor(ctx, mfa.Confirmation{UserID: "bob", Factor: &key, TokenHash: "hb", Now: now}))

	// AppendEvent's script: the event is appended once.
	e := mfa.Event{UserID: "alice", Time: now, Action: mfa.ActionUserReset, Seq: 1}
	e.Hash = mfa.EventHash(e)
	k := userKeys("alice")
	p := position{ms: now.UnixMilli(), user: "alice", seq: 1}
	twice("AppendEvent", func(nonce string) (any, error) {
		res, err := appendEventScript.Run(ctx, s.rdb, []string{k.auditHead(), k.auditLog(), k.auditTimes()},
			0, 1, `{"user_id":"alice"}`, e.Hash, timesMember(p), nonce).Slice()
		return len(res), err
	})
	if n, err := s.rdb.XLen(ctx, k.auditLog()).Result(); err != nil || n != 1 {
		t.Fatalf("the chain after an append run twice: %d events, %v; want 1", n, err)
	}
}
