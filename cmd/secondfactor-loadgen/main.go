// Command secondfactor-loadgen measures a running secondfactord with whole
// logins, for benchmarks and capacity planning. It is kept apart from the
// admin CLI because it carries a software authenticator that signs WebAuthn
// assertions in-process: a test double that has no place in a production
// tool.
//
// Usage:
//
//	secondfactor-loadgen webauthn [-users N] [-concurrency N] [-duration D | -requests N] [-origin URL]
//
// Run it with -h for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// errFailed ends a run with exit status 1 after it printed why.
var errFailed = errors.New("failed")

const usage = `secondfactor-loadgen measures a secondfactord with whole logins.

usage: secondfactor-loadgen webauthn [flags]

  webauthn  enrols -users test users (loadgen-<time>-<n>, PROOF_STRONG), each
            with a software security key, then sends whole WebAuthn logins
            (BeginWebAuthnLogin, sign, FinishWebAuthnLogin) from -concurrency
            workers for -duration or -requests logins. Prints progress each
            second, then throughput and latency percentiles; exits 1 if any
            login failed or was rejected.

Point it at a test deployment: it adds users to the store. -origin must be one
of the server's -webauthn-origins, and the server's -webauthn-rp-id its host
(the defaults of both match). The software keys sign in this process: on the
server's own machine they share its CPU. Needs a caller with the "portal" role
(SECONDFACTOR_TOKEN, or the token file of a loopback secondfactord).

Run "secondfactor-loadgen webauthn -h" for the flags.
`

// run runs the load generator on args and returns the exit status: 0 when
// every login was accepted, 1 on a failure, 2 on bad usage.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "webauthn":
	default:
		fmt.Fprintf(stderr, "secondfactor-loadgen: unknown load %q: want webauthn\n", args[0])
		return 2
	}
	err := runWebAuthn(ctx, args[1:], getenv, stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errFailed):
		return 1
	}
	fmt.Fprintf(stderr, "secondfactor-loadgen: %v\n", err)
	return 1
}

// errUsage is bad command-line input, already reported.
var errUsage = errors.New("usage")
