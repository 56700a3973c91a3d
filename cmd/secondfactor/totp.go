package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/client"
)

// codeAttempts is how many codes an interactive enrolment reads before it
// gives up on a code the server rejects as malformed or wrong.
const codeAttempts = 3

func runTOTPEnroll(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	cf := a.addConnFlags(fs)
	token := fs.String("token", "", "enrolment `token` from \"enroll create\" (required)")
	name := fs.String("name", "", "`name` of the factor, 1 to 64 bytes (\"phone\"); required unless -factor-id")
	activation := fs.String("activation-code", "", "activation `code`, when the session needs one (\"activation issue\")")
	factorID := fs.String("factor-id", "", "only confirm this pending factor (`id` printed by an earlier run)")
	code := fs.String("code", "", "the current `code` of the app; only with -factor-id (default: read from stdin)")
	invert := fs.Bool("invert", false, "draw the QR code's dark modules, for a terminal with a light background")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "token"); err != nil {
		return err
	}
	if *factorID != "" {
		return a.finishTOTP(ctx, cf, *token, *factorID, *code)
	}
	if *code != "" {
		return usageErrorf("-code needs -factor-id: the factor does not exist before this command creates it")
	}
	if err := required(fs, "name"); err != nil {
		return err
	}

	c, err := a.dial(cf)
	if err != nil {
		return err
	}
	defer hangUp(c)
	client := sfv1.NewSecondFactorServiceClient(c)
	cctx, cancel := c.Call(ctx)
	defer cancel()
	p, err := client.BeginTOTPEnrollment(cctx, &sfv1.BeginTOTPEnrollmentRequest{
		EnrollmentToken: *token, Name: *name, ActivationCode: *activation,
	})
	if err != nil {
		return err
	}
	if !strings.HasPrefix(p.GetUri(), "otpauth://") {
		return fmt.Errorf("begin totp enrollment: the server sent no otpauth:// URI")
	}
	qr, err := renderQR(p.GetUri(), *invert)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Scan this QR code with the authenticator app:\n\n%s\n", qr)
	fmt.Fprintf(a.stdout, "or enter the key by hand:\n")
	fmt.Fprintf(a.stdout, "  key        %s\n", clean(p.GetSecret()))
	fmt.Fprintf(a.stdout, "  type       time-based, %s, %d digits, every %s\n",
		strings.TrimPrefix(p.GetAlgorithm().String(), "TOTP_ALGORITHM_"), p.GetDigits(), p.GetPeriod().AsDuration())
	fmt.Fprintf(a.stdout, "factor id    %s\n", clean(p.GetFactorId()))
	fmt.Fprintf(a.stdout, "expires      %s\n\n", timeOr(p.GetExpiresAt(), "-"))

	err = a.confirmTOTP(ctx, c, *token, p.GetFactorId(), "")
	if err != nil {
		fmt.Fprintf(a.stderr, "# the pending factor waits until %s; to confirm it later:\n"+
			"#   secondfactor totp finish -token ENROLLMENT_TOKEN -factor-id %s\n",
			timeOr(p.GetExpiresAt(), "it expires"), shellQuote(p.GetFactorId()))
	}
	return err
}

func runTOTPFinish(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	cf := a.addConnFlags(fs)
	token := fs.String("token", "", "enrolment `token` from \"enroll create\" (required)")
	factorID := fs.String("factor-id", "", "`id` of the pending factor, printed by \"totp enroll\" (required)")
	code := fs.String("code", "", "the current `code` of the app (default: read from stdin)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "token", "factor-id"); err != nil {
		return err
	}
	return a.finishTOTP(ctx, cf, *token, *factorID, *code)
}

// finishTOTP dials and confirms a pending factor.
func (a *app) finishTOTP(ctx context.Context, cf *client.Target, token, factorID, code string) error {
	c, err := a.dial(cf)
	if err != nil {
		return err
	}
	defer hangUp(c)
	return a.confirmTOTP(ctx, c, token, factorID, code)
}

// confirmTOTP calls FinishTOTPEnrollment with code, or with a code read from
// stdin when code is empty; on a terminal it asks again when the server
// rejects the code as invalid, up to codeAttempts times.
func (a *app) confirmTOTP(ctx context.Context, c *client.Conn, token, factorID, code string) error {
	client := sfv1.NewSecondFactorServiceClient(c)
	fromStdin := code == ""
	for attempt := 1; ; attempt++ {
		if fromStdin {
			var err error
			if code, err = a.readCode(); err != nil {
				return err
			}
		}
		cctx, cancel := c.Call(ctx)
		resp, err := client.FinishTOTPEnrollment(cctx, &sfv1.FinishTOTPEnrollmentRequest{
			EnrollmentToken: token, FactorId: factorID, Code: code,
		})
		cancel()
		if err == nil {
			a.printConfirmed(resp.GetFactor(), resp.GetRecoveryCodes())
			return nil
		}
		if !fromStdin || !a.stdinTTY || attempt == codeAttempts || status.Code(err) != codes.InvalidArgument {
			return err
		}
		fmt.Fprintf(a.stderr, "%s\n", status.Convert(err).Message())
	}
}

// readCode reads one code from stdin, prompting on a terminal. Spaces inside
// are dropped ("123 456", as apps show it).
func (a *app) readCode() (string, error) {
	if a.stdinTTY {
		fmt.Fprint(a.stderr, "code: ")
	}
	line, err := a.stdin.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", errors.New("no code on stdin")
		}
		return "", fmt.Errorf("read code: %w", err)
	}
	return strings.Join(strings.Fields(line), ""), nil
}

func (a *app) printConfirmed(f *sfv1.Factor, recovery []string) {
	fmt.Fprintf(a.stdout, "confirmed    %s factor %s %q, created %s\n",
		kindName(f.GetKind()), clean(f.GetId()), f.GetName(), timeOr(f.GetCreatedAt(), "-"))
	if len(recovery) == 0 {
		return
	}
	fmt.Fprintln(a.stdout, "\nrecovery codes, shown only now: keep them somewhere safe, each works once")
	for _, rc := range recovery {
		fmt.Fprintf(a.stdout, "  %s\n", clean(rc))
	}
}
