package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"google.golang.org/protobuf/types/known/durationpb"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/client"
	"github.com/secondfactor/secondfactor/internal/mfa"
)

// The break-glass commands: bypass issue, audit review (the bypasses of a
// period, for a second administrator) and bypass review.

func runBypassIssue(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	f := a.addChangeFlags(fs, "how the identity was checked and why a bypass", false)
	ttl := fs.Duration("ttl", mfa.MaxBypassTTL, fmt.Sprintf("lifetime of the code, `DURATION` from %s to %s", mfa.MinBypassTTL, mfa.MaxBypassTTL))
	asJSON := fs.Bool("json", false, "print the response as JSON (protojson)")
	pos, err := parse(fs, args, "USER_ID")
	if err != nil {
		return err
	}
	if err := a.check(fs, f, "", ""); err != nil {
		return err
	}
	if *ttl < mfa.MinBypassTTL || *ttl > mfa.MaxBypassTTL {
		return usageErrorf("-ttl %s: want %s to %s", *ttl, mfa.MinBypassTTL, mfa.MaxBypassTTL)
	}
	user := pos[0]
	var resp *sfv1.IssueBypassCodeResponse
	err = a.adminCall(ctx, f.conn, func(ctx context.Context, c sfv1.AdminServiceClient) (err error) {
		resp, err = c.IssueBypassCode(ctx, &sfv1.IssueBypassCodeRequest{UserId: user, Reason: *f.reason, Ttl: durationpb.New(*ttl)})
		return err
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
	fmt.Fprintf(w, "bypass id\t%s\n", clean(resp.GetBypassId()))
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "# read the code to %s, who types it where a recovery code goes: it works once.\n"+
		"# another administrator reviews it: secondfactor audit review, then\n"+
		"#   secondfactor bypass review %s -note ...\n", clean(user), shellQuote(resp.GetBypassId()))
	return nil
}

func runAuditReview(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	cf := a.addConnFlags(fs)
	since := fs.String("since", "", "only bypasses issued at or after `WHEN`: RFC 3339, a date, or a duration ago (24h)")
	until := fs.String("until", "", "only bypasses issued before `WHEN`, as -since")
	asJSON := fs.Bool("json", false, "print the response as JSON (protojson), one response holding every page")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	req := &sfv1.ListBypassesRequest{Limit: mfa.MaxBypassLimit}
	now := a.now()
	var err error
	if req.Since, err = parseWhen("since", *since, now); err != nil {
		return err
	}
	if req.Until, err = parseWhen("until", *until, now); err != nil {
		return err
	}
	resp, err := a.listBypasses(ctx, cf, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, resp)
	}
	return printBypasses(a, resp.GetBypasses())
}

// listBypasses reads every page of bypasses from the request's, each with
// its own deadline; the response holds them all.
func (a *app) listBypasses(ctx context.Context, cf *client.Target, req *sfv1.ListBypassesRequest) (*sfv1.ListBypassesResponse, error) {
	c, err := a.dial(cf)
	if err != nil {
		return nil, err
	}
	defer hangUp(c)
	admin := sfv1.NewAdminServiceClient(c)
	out := &sfv1.ListBypassesResponse{}
	seen := map[string]bool{}
	for {
		cctx, cancel := c.Call(ctx)
		resp, err := admin.ListBypasses(cctx, req)
		cancel()
		if err != nil {
			return nil, err
		}
		out.Bypasses = append(out.Bypasses, resp.GetBypasses()...)
		next := resp.GetNextPageToken()
		if next == "" {
			return out, nil
		}
		if seen[next] {
			return nil, fmt.Errorf("list bypasses: the server returned page token %q twice", next)
		}
		seen[next] = true
		req.PageToken = next
	}
}

// printBypasses prints a table of bypasses, newest first as the server
// sends them, and on stderr how many are not reviewed.
func printBypasses(a *app, bs []*sfv1.Bypass) error {
	if len(bs) == 0 {
		fmt.Fprintln(a.stderr, "no bypasses")
		return nil
	}
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ISSUED\tBYPASS\tUSER\tISSUED BY\tEXPIRES\tUSED\tREVIEWED BY\tREASON\tREVIEW NOTE")
	unreviewed := 0
	for _, b := range bs {
		reviewer := clean(b.GetReviewedBy())
		if b.GetReviewedAt() == nil {
			reviewer = "NOT REVIEWED"
			unreviewed++
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", timeOr(b.GetIssuedAt(), "-"), clean(b.GetBypassId()), clean(b.GetUserId()),
			orDash(clean(b.GetIssuedBy())), timeOr(b.GetExpiresAt(), "-"), timeOr(b.GetUsedAt(), "unused"), reviewer,
			orDash(clean(b.GetReason())), orDash(clean(b.GetReviewNote())))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "# %d bypass(es), %d not reviewed\n", len(bs), unreviewed)
	return nil
}

func runBypassReview(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	cf := a.addConnFlags(fs)
	note := fs.String("note", "", "what you checked (the user, the reason, the use), for the audit trail (required)")
	asJSON := fs.Bool("json", false, "print the response as JSON (protojson)")
	pos, err := parse(fs, args, "BYPASS_ID")
	if err != nil {
		return err
	}
	if err := required(fs, "note"); err != nil {
		return err
	}
	var resp *sfv1.ReviewBypassResponse
	err = a.adminCall(ctx, cf, func(ctx context.Context, c sfv1.AdminServiceClient) (err error) {
		resp, err = c.ReviewBypass(ctx, &sfv1.ReviewBypassRequest{BypassId: pos[0], Note: *note})
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, resp)
	}
	b := resp.GetBypass()
	used := "unused"
	if b.GetUsedAt() != nil {
		used = "used " + timeOr(b.GetUsedAt(), "-")
	}
	fmt.Fprintf(a.stdout, "reviewed bypass %s of user %s, issued by %s (%s)\n", clean(b.GetBypassId()), clean(b.GetUserId()),
		clean(b.GetIssuedBy()), used)
	return nil
}
