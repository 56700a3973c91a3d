package grpcapi_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/mfa"
)

// BenchmarkVerifyTOTP measures VerifyTOTP end to end: a gRPC client, a
// loopback listener, the server's interceptors, the flow and the store.
//
//   - accepted: one client, a valid code each time (the injected clock moves
//     one step per call), so every call counts the attempt, unseals the
//     secret, computes the codes and advances the step: the login path.
//   - rejected-parallel: GOMAXPROCS×4 clients sending wrong codes for
//     distinct users (no lock: the limit is raised), the path of a guessing
//     attack, which writes the failure count and evaluates the code.
func BenchmarkVerifyTOTP(b *testing.B) {
	for _, kind := range storeKinds {
		b.Run(kind+"/accepted", func(b *testing.B) {
			e := newEnv(b, kind, envOptions{})
			u := e.enrollTOTP(b, "dr-bench")
			ctx := b.Context()
			for b.Loop() {
				e.clock.Advance(30 * time.Second)
				r, err := e.portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: u.userID, Code: e.code(b, u)}, asPortal)
				if err != nil || r.GetVerdict() != sfv1.Verdict_VERDICT_ACCEPTED {
					b.Fatalf("VerifyTOTP: %v %v", r, err)
				}
			}
		})
		b.Run(kind+"/rejected-parallel", func(b *testing.B) {
			e := newEnv(b, kind, envOptions{limits: mfa.Limits{MaxFailures: 1 << 30, BaseLockout: time.Second, MaxLockout: time.Second, FailureTTL: time.Hour}})
			const users = 64
			wrong := make([]string, users)
			for i := range users {
				u := e.enrollTOTP(b, fmt.Sprintf("dr-%d", i))
				wrong[i] = e.wrongCode(b, u)
			}
			ctx := b.Context()
			var next atomic.Int64
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := next.Add(1) % users
				user, code := fmt.Sprintf("dr-%d", i), wrong[i]
				for pb.Next() {
					r, err := e.portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: user, Code: code}, asPortal)
					if err != nil || r.GetVerdict() != sfv1.Verdict_VERDICT_REJECTED {
						b.Errorf("VerifyTOTP: %v %v", r, err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkFinishWebAuthnLogin measures a WebAuthn login end to end over
// loopback gRPC: BeginWebAuthnLogin (store the challenge), the software
// authenticator's signature (ECDSA P-256, in the client), and
// FinishWebAuthnLogin (take the challenge, read the user, verify the
// signature, advance the sign count). The authenticator's share is measured
// alone in BenchmarkAuthenticatorGet, to subtract.
func BenchmarkFinishWebAuthnLogin(b *testing.B) {
	for _, kind := range storeKinds {
		b.Run(kind, func(b *testing.B) {
			e := newEnv(b, kind, envOptions{})
			a, _ := e.registerKey(b, "dr-bench")
			ctx := b.Context()
			for b.Loop() {
				id, options := e.beginLogin(b, "dr-bench")
				assertion, err := a.Get(options, origin)
				if err != nil {
					b.Fatal(err)
				}
				r, err := e.portal.FinishWebAuthnLogin(ctx, &sfv1.FinishWebAuthnLoginRequest{ChallengeId: id, AssertionJson: string(assertion)}, asPortal)
				if err != nil || r.GetVerdict() != sfv1.Verdict_VERDICT_ACCEPTED {
					b.Fatalf("FinishWebAuthnLogin: %v %v", r, err)
				}
			}
		})
	}
}

// BenchmarkAuthenticatorGet is the client-side share of
// BenchmarkFinishWebAuthnLogin: the software authenticator signing.
func BenchmarkAuthenticatorGet(b *testing.B) {
	e := newEnv(b, "bolt", envOptions{})
	a, _ := e.registerKey(b, "dr-bench")
	_, options := e.beginLogin(b, "dr-bench")
	for b.Loop() {
		if _, err := a.Get(options, origin); err != nil {
			b.Fatal(err)
		}
	}
}
