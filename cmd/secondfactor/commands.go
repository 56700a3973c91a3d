package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
)

func runUserShow(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	cf := a.addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print the response as JSON (protojson)")
	pos, err := parse(fs, args, "USER_ID")
	if err != nil {
		return err
	}
	c, err := a.dial(cf)
	if err != nil {
		return err
	}
	defer hangUp(c)
	cctx, cancel := c.Call(ctx)
	defer cancel()
	resp, err := sfv1.NewSecondFactorServiceClient(c).GetUser(cctx, &sfv1.GetUserRequest{UserId: pos[0]})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, resp)
	}
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "user\t%s\n", clean(resp.GetUserId()))
	fmt.Fprintf(w, "enrolled\t%s\n", yesNo(resp.GetEnrolled()))
	fmt.Fprintf(w, "locked\t%s\n", yesNo(resp.GetLocked()))
	if err := w.Flush(); err != nil {
		return err
	}
	if len(resp.GetFactors()) == 0 {
		fmt.Fprintln(a.stdout, "\nno factors")
		return nil
	}
	fmt.Fprintln(a.stdout)
	w = tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tKIND\tNAME\tCREATED\tLAST USED")
	for _, f := range resp.GetFactors() {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", clean(f.GetId()), kindName(f.GetKind()), clean(f.GetName()),
			timeOr(f.GetCreatedAt(), "-"), timeOr(f.GetLastUsedAt(), "never"))
	}
	return w.Flush()
}

// proofs maps the -proof values of enroll create to the API's Proof.
var proofs = map[string]sfv1.Proof{
	"password-only":   sfv1.Proof_PROOF_PASSWORD_ONLY,
	"strong":          sfv1.Proof_PROOF_STRONG,
	"existing-factor": sfv1.Proof_PROOF_EXISTING_FACTOR,
}

func parseProof(s string) (sfv1.Proof, error) {
	if p, ok := proofs[s]; ok {
		return p, nil
	}
	return 0, usageErrorf("-proof %q: want password-only, strong or existing-factor", s)
}

func runEnrollCreate(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	cf := a.addConnFlags(fs)
	proofFlag := fs.String("proof", "", "how the user was authenticated: `password-only|strong|existing-factor` (required)")
	name := fs.String("name", "", "display `name` of the user, shown in authenticator apps")
	returnURL := fs.String("return-url", "", "`URL` the hosted page returns to, on the server's allow-list")
	asJSON := fs.Bool("json", false, "print the response as JSON (protojson)")
	pos, err := parse(fs, args, "USER_ID")
	if err != nil {
		return err
	}
	if err := required(fs, "proof"); err != nil {
		return err
	}
	proof, err := parseProof(*proofFlag)
	if err != nil {
		return err
	}
	c, err := a.dial(cf)
	if err != nil {
		return err
	}
	defer hangUp(c)
	cctx, cancel := c.Call(ctx)
	defer cancel()
	resp, err := sfv1.NewSecondFactorServiceClient(c).CreateEnrollment(cctx, &sfv1.CreateEnrollmentRequest{
		UserId: pos[0], DisplayName: *name, ReturnUrl: *returnURL, Proof: proof,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, resp)
	}
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "token\t%s\n", clean(resp.GetToken()))
	fmt.Fprintf(w, "url\t%s\n", orDash(clean(resp.GetUrl())))
	fmt.Fprintf(w, "expires\t%s\n", timeOr(resp.GetExpiresAt(), "-"))
	fmt.Fprintf(w, "activation required\t%s\n", yesNo(resp.GetActivationRequired()))
	if err := w.Flush(); err != nil {
		return err
	}
	if resp.GetActivationRequired() {
		fmt.Fprintf(a.stderr, "# the session enrols nothing without an activation code: after an identity check,\n"+
			"#   secondfactor activation issue %s -reason \"...\"\n", shellQuote(pos[0]))
	}
	return nil
}

func runActivationIssue(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	cf := a.addConnFlags(fs)
	reason := fs.String("reason", "", "how the user's identity was checked, for the audit trail (required)")
	asJSON := fs.Bool("json", false, "print the response as JSON (protojson)")
	pos, err := parse(fs, args, "USER_ID")
	if err != nil {
		return err
	}
	if err := required(fs, "reason"); err != nil {
		return err
	}
	c, err := a.dial(cf)
	if err != nil {
		return err
	}
	defer hangUp(c)
	cctx, cancel := c.Call(ctx)
	defer cancel()
	resp, err := sfv1.NewAdminServiceClient(c).IssueActivationCode(cctx, &sfv1.IssueActivationCodeRequest{
		UserId: pos[0], Reason: *reason,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, resp)
	}
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "code\t%s\n", clean(resp.GetCode()))
	fmt.Fprintf(w, "expires\t%s\n", timeOr(resp.GetExpiresAt(), "-"))
	return w.Flush()
}

func runVerifyTOTP(ctx context.Context, a *app, cmd *command, args []string) error {
	return runVerify(ctx, a, cmd, args, func(ctx context.Context, c sfv1.SecondFactorServiceClient, user, code string, client *sfv1.ClientInfo) (verdict sfv1.Verdict, retry *durationpb.Duration, note string, err error) {
		resp, err := c.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: user, Code: code, Client: client})
		return resp.GetVerdict(), resp.GetRetryAfter(), "", err
	})
}

func runVerifyRecovery(ctx context.Context, a *app, cmd *command, args []string) error {
	return runVerify(ctx, a, cmd, args, func(ctx context.Context, c sfv1.SecondFactorServiceClient, user, code string, client *sfv1.ClientInfo) (verdict sfv1.Verdict, retry *durationpb.Duration, note string, err error) {
		resp, err := c.VerifyRecoveryCode(ctx, &sfv1.VerifyRecoveryCodeRequest{UserId: user, Code: code, Client: client})
		switch {
		case resp.GetVerdict() != sfv1.Verdict_VERDICT_ACCEPTED:
		case resp.GetBypass():
			note = " (a bypass code, now used up: no factor was verified)"
		default:
			note = fmt.Sprintf(" (%d recovery codes left)", resp.GetRemaining())
		}
		return resp.GetVerdict(), resp.GetRetryAfter(), note, err
	})
}

// verifyFunc makes one verification call.
type verifyFunc func(ctx context.Context, c sfv1.SecondFactorServiceClient, user, code string, client *sfv1.ClientInfo) (sfv1.Verdict, *durationpb.Duration, string, error)

// runVerify parses USER_ID CODE [-ip IP], calls verify and prints its
// verdict; the exit status is 0 only for ACCEPTED.
func runVerify(ctx context.Context, a *app, cmd *command, args []string, verify verifyFunc) error {
	fs := a.flagSet(cmd)
	cf := a.addConnFlags(fs)
	ip := fs.String("ip", "", "the user's `IP` address, for the audit trail and per-source limits")
	pos, err := parse(fs, args, "USER_ID", "CODE")
	if err != nil {
		return err
	}
	var client *sfv1.ClientInfo
	if *ip != "" {
		addr, err := netip.ParseAddr(*ip)
		if err != nil {
			return usageErrorf("-ip %q: not an IP address", *ip)
		}
		client = &sfv1.ClientInfo{Ip: addr.String()}
	}
	c, err := a.dial(cf)
	if err != nil {
		return err
	}
	defer hangUp(c)
	cctx, cancel := c.Call(ctx)
	defer cancel()
	verdict, retry, note, err := verify(cctx, sfv1.NewSecondFactorServiceClient(c), pos[0], pos[1], client)
	if err != nil {
		return err
	}
	switch verdict {
	case sfv1.Verdict_VERDICT_ACCEPTED:
		fmt.Fprintln(a.stdout, "ACCEPTED"+note)
		return nil
	case sfv1.Verdict_VERDICT_REJECTED:
		fmt.Fprintln(a.stdout, "REJECTED")
	case sfv1.Verdict_VERDICT_LOCKED:
		if retry != nil {
			fmt.Fprintf(a.stdout, "LOCKED (retry after %s)\n", retry.AsDuration().Round(time.Second))
		} else {
			fmt.Fprintln(a.stdout, "LOCKED")
		}
	default:
		fmt.Fprintf(a.stdout, "UNKNOWN verdict %s\n", verdict)
	}
	return errFailed
}

// printJSON prints m as indented protojson.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("json: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// timeOr formats ts in UTC, RFC 3339, or returns none when ts is unset.
func timeOr(ts *timestamppb.Timestamp, none string) string {
	if ts == nil {
		return none
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// kindName is the short name of a factor kind: "totp", "webauthn".
func kindName(k sfv1.FactorKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "FACTOR_KIND_"))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// clean makes a string from the server safe to print in a terminal and a
// table: control and other non-printable characters (a factor name chosen by
// a user could hold escape sequences) are shown escaped, as %q would.
func clean(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	q := fmt.Sprintf("%q", s)
	return q[1 : len(q)-1]
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	safe := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r)
	}
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return !safe(r) }) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
