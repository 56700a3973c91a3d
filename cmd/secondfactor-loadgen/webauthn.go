package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/client"
	"github.com/secondfactor/secondfactor/internal/config"
	"github.com/secondfactor/secondfactor/internal/webauthntest"
)

// runWebAuthn measures a server with whole WebAuthn logins: it enrols
// -users test users, each with a software security key (PROOF_STRONG), then
// for -duration (or -requests logins) runs -concurrency workers, each doing
// BeginWebAuthnLogin, signing, FinishWebAuthnLogin. Every login is valid,
// so nothing is locked and every call does the full work: store the
// challenge, take it, read the user, verify the signature, advance the sign
// count. It prints progress each second and, at the end, the throughput and
// latency percentiles.
func runWebAuthn(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("secondfactor-loadgen webauthn", flag.ContinueOnError)
	fs.SetOutput(stderr)
	origin := fs.String("origin", config.DefaultOrigin, "page `origin` the software keys sign for: one of the server's -webauthn-origins")
	var l loadFlags
	if err := l.parse(fs, args, getenv, stderr); err != nil {
		return err
	}
	c, err := client.Dial(l.target, getenv, "secondfactor-loadgen")
	if err != nil {
		return err
	}
	defer c.Close()
	api := sfv1.NewSecondFactorServiceClient(c)

	run := time.Now().Format("150405")
	fmt.Fprintf(stderr, "loadgen: enrolling %d users (loadgen-%s-N) with software keys for %s\n", l.users, run, *origin)
	keys := make([]*webauthntest.Authenticator, l.users)
	ids := make([]string, l.users)
	for i := range keys {
		ids[i], keys[i] = fmt.Sprintf("loadgen-%s-%d", run, i), webauthntest.New()
		cctx, cancel := c.Call(ctx)
		err := enrolKey(cctx, api, ids[i], keys[i], *origin)
		cancel()
		if err != nil {
			return fmt.Errorf("enrol %s: %w", ids[i], err)
		}
	}

	s := runLoad(ctx, l, stderr, func(ctx context.Context, n int64) (outcome, error) {
		i := int(n) % len(keys)
		cctx, cancel := c.Call(ctx)
		defer cancel()
		return login(cctx, api, ids[i], keys[i], *origin)
	})
	return s.report(stdout, stderr, l, "BeginWebAuthnLogin + FinishWebAuthnLogin")
}

// enrolKey registers key as userID's first factor (PROOF_STRONG).
func enrolKey(ctx context.Context, api sfv1.SecondFactorServiceClient, userID string, key *webauthntest.Authenticator, origin string) error {
	ce, err := api.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: userID, Proof: sfv1.Proof_PROOF_STRONG})
	if err != nil {
		return err
	}
	b, err := api.BeginWebAuthnRegistration(ctx, &sfv1.BeginWebAuthnRegistrationRequest{EnrollmentToken: ce.GetToken(), Name: "loadgen key"})
	if err != nil {
		return err
	}
	cred, err := key.Create([]byte(b.GetOptionsJson()), origin)
	if err != nil {
		return fmt.Errorf("software key: %w", err)
	}
	_, err = api.FinishWebAuthnRegistration(ctx, &sfv1.FinishWebAuthnRegistrationRequest{EnrollmentToken: ce.GetToken(), CredentialJson: string(cred)})
	return err
}

// login runs one whole WebAuthn login of userID with key.
func login(ctx context.Context, api sfv1.SecondFactorServiceClient, userID string, key *webauthntest.Authenticator, origin string) (outcome, error) {
	b, err := api.BeginWebAuthnLogin(ctx, &sfv1.BeginWebAuthnLoginRequest{UserId: userID})
	if err != nil {
		return failed, err
	}
	assertion, err := key.Get([]byte(b.GetOptionsJson()), origin)
	if err != nil {
		return failed, fmt.Errorf("software key: %w", err)
	}
	r, err := api.FinishWebAuthnLogin(ctx, &sfv1.FinishWebAuthnLoginRequest{ChallengeId: b.GetChallengeId(), AssertionJson: string(assertion)})
	if err != nil {
		return failed, err
	}
	if r.GetVerdict() != sfv1.Verdict_VERDICT_ACCEPTED {
		return rejected, nil
	}
	return accepted, nil
}
