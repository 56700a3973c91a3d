package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/client"
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
	var target client.Target
	target.AddFlags(fs, getenv)
	users := fs.Int("users", 50, "test `users` to enrol (loadgen-<run>-<n>)")
	concurrency := fs.Int("concurrency", 8, "`workers` sending logins at once")
	duration := fs.Duration("duration", 10*time.Second, "how long to send logins")
	requests := fs.Int("requests", 0, "stop after this many logins (0: run for -duration)")
	origin := fs.String("origin", "http://localhost:7080", "page `origin` the software keys sign for: one of the server's -webauthn-origins")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return errUsage
	}
	bad := func(format string, args ...any) error {
		fmt.Fprintf(stderr, "secondfactor-loadgen webauthn: "+format+"\n", args...)
		return errUsage
	}
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument %q (flags only)", fs.Arg(0))
	case *users < 1 || *users > 100000:
		return bad("-users %d: want 1 to 100000", *users)
	case *concurrency < 1 || *concurrency > 1024:
		return bad("-concurrency %d: want 1 to 1024", *concurrency)
	case *duration <= 0 || *duration > time.Hour:
		return bad("-duration %s: want up to 1h", *duration)
	case *requests < 0:
		return bad("-requests %d: want 0 or more", *requests)
	}
	if err := target.Check(); err != nil {
		return bad("%v", err)
	}
	c, err := client.Dial(target, getenv, "secondfactor-loadgen")
	if err != nil {
		return err
	}
	defer c.Close()
	api := sfv1.NewSecondFactorServiceClient(c)
	call := func(fn func(ctx context.Context) error) error {
		cctx, cancel := c.Call(ctx)
		defer cancel()
		return fn(cctx)
	}

	// Enrol the users, each with its own key.
	run := time.Now().Format("150405")
	type user struct {
		id  string
		key *webauthntest.Authenticator
	}
	pool := make([]user, *users)
	fmt.Fprintf(stderr, "loadgen: enrolling %d users (loadgen-%s-N) with software keys for %s\n", *users, run, *origin)
	for i := range pool {
		u := user{id: fmt.Sprintf("loadgen-%s-%d", run, i), key: webauthntest.New()}
		err := call(func(ctx context.Context) error {
			ce, err := api.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: u.id, Proof: sfv1.Proof_PROOF_STRONG})
			if err != nil {
				return err
			}
			b, err := api.BeginWebAuthnRegistration(ctx, &sfv1.BeginWebAuthnRegistrationRequest{EnrollmentToken: ce.GetToken(), Name: "loadgen key"})
			if err != nil {
				return err
			}
			cred, err := u.key.Create([]byte(b.GetOptionsJson()), *origin)
			if err != nil {
				return fmt.Errorf("software key: %w", err)
			}
			_, err = api.FinishWebAuthnRegistration(ctx, &sfv1.FinishWebAuthnRegistrationRequest{EnrollmentToken: ce.GetToken(), CredentialJson: string(cred)})
			return err
		})
		if err != nil {
			return fmt.Errorf("enrol %s: %w", u.id, err)
		}
		pool[i] = u
	}

	// Send logins.
	var (
		done, failed, rejected atomic.Int64
		next                   atomic.Int64
		mu                     sync.Mutex
		latencies              []time.Duration
		firstErr               error
		wg                     sync.WaitGroup
	)
	lctx, stop := context.WithTimeout(ctx, *duration)
	defer stop()
	start := time.Now()
	for range *concurrency {
		wg.Go(func() {
			var mine []time.Duration
			defer func() {
				mu.Lock()
				latencies = append(latencies, mine...)
				mu.Unlock()
			}()
			for lctx.Err() == nil {
				n := next.Add(1)
				if *requests > 0 && n > int64(*requests) {
					return
				}
				u := pool[int(n)%len(pool)]
				t0 := time.Now()
				var verdict sfv1.Verdict
				err := call(func(ctx context.Context) error {
					b, err := api.BeginWebAuthnLogin(ctx, &sfv1.BeginWebAuthnLoginRequest{UserId: u.id})
					if err != nil {
						return err
					}
					assertion, err := u.key.Get([]byte(b.GetOptionsJson()), *origin)
					if err != nil {
						return fmt.Errorf("software key: %w", err)
					}
					r, err := api.FinishWebAuthnLogin(ctx, &sfv1.FinishWebAuthnLoginRequest{ChallengeId: b.GetChallengeId(), AssertionJson: string(assertion)})
					verdict = r.GetVerdict()
					return err
				})
				switch {
				case err != nil && lctx.Err() != nil:
					return // cut off by the end of the run
				case err != nil:
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				case verdict != sfv1.Verdict_VERDICT_ACCEPTED:
					rejected.Add(1)
				default:
					mine = append(mine, time.Since(t0))
				}
				done.Add(1)
			}
		})
	}
	progress := time.NewTicker(time.Second)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	for waiting := true; waiting; {
		select {
		case <-progress.C:
			el := time.Since(start)
			fmt.Fprintf(stderr, "loadgen: %5.1fs  %d logins  %.0f/s  %d errors  %d rejected\n",
				el.Seconds(), done.Load(), float64(done.Load())/el.Seconds(), failed.Load(), rejected.Load())
		case <-finished:
			waiting = false
		}
	}
	progress.Stop()
	elapsed := time.Since(start)

	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	fmt.Fprintf(stdout, "logins      %d in %s with %d workers over %d users\n", done.Load(), elapsed.Round(time.Millisecond), *concurrency, *users)
	fmt.Fprintf(stdout, "throughput  %.0f logins/s (each: BeginWebAuthnLogin + FinishWebAuthnLogin)\n", float64(done.Load())/elapsed.Seconds())
	fmt.Fprintf(stdout, "accepted    %d, rejected %d, errors %d\n", len(latencies), rejected.Load(), failed.Load())
	fmt.Fprintf(stdout, "latency     p50 %s  p90 %s  p99 %s  max %s (accepted logins, client side)\n",
		pct(0.50).Round(time.Microsecond), pct(0.90).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), pct(1).Round(time.Microsecond))
	if firstErr != nil {
		fmt.Fprintf(stderr, "loadgen: first error: %v\n", firstErr)
	}
	if failed.Load() > 0 || rejected.Load() > 0 {
		return errFailed
	}
	return nil
}
