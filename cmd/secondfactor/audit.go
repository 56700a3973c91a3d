package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/client"
	"github.com/secondfactor/secondfactor/internal/mfa"
)

// listFlag is a flag that may be given several times, each value a
// comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// actionNames lists the audit actions, for the help of audit list.
func actionNames() string {
	names := make([]string, 0, len(mfa.Actions()))
	for _, a := range mfa.Actions() {
		names = append(names, string(a))
	}
	return strings.Join(names, ", ")
}

// wrap breaks s into lines of at most width bytes, at spaces.
func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(s) {
		if i > 0 && n+1+len(w) > width {
			b.WriteByte('\n')
			n = 0
		} else if i > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// parseWhen reads a -since or -until value: an RFC 3339 time, a date (UTC
// midnight) or a duration before now ("24h", "90m").
func parseWhen(name, s string, now time.Time) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return timestamppb.New(t), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return timestamppb.New(t), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return timestamppb.New(now.Add(-d)), nil
	}
	return nil, usageErrorf("-%s %q: want an RFC 3339 time (2026-03-01T09:30:00Z), a date (2026-03-01) or a duration ago (24h)", name, s)
}

func runAuditList(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	cf := a.addConnFlags(fs)
	since := fs.String("since", "", "only events at or after `WHEN`: RFC 3339, a date, or a duration ago (24h)")
	until := fs.String("until", "", "only events before `WHEN`, as -since")
	var actions listFlag
	fs.Var(&actions, "action", "only events of this `action` (factor.removed, verify.totp, ...); repeat or separate with commas")
	limit := fs.Uint("limit", mfa.DefaultEventLimit, fmt.Sprintf("events per page, `N` from 1 to %d", mfa.MaxEventLimit))
	all := fs.Bool("all", false, "read every page, not only the first")
	pageToken := fs.String("page-token", "", "start at this `token`, printed after the previous page")
	asJSON := fs.Bool("json", false, "print the response as JSON (protojson); with -all, one response holding every page")
	user, err := parseOptional(fs, args, "USER_ID")
	if err != nil {
		return err
	}
	if *limit < 1 || *limit > mfa.MaxEventLimit {
		return usageErrorf("-limit %d: want 1 to %d", *limit, mfa.MaxEventLimit)
	}
	req := &sfv1.ListAuditEventsRequest{UserId: user, Actions: actions, Limit: uint32(*limit), PageToken: *pageToken}
	now := a.now()
	if req.Since, err = parseWhen("since", *since, now); err != nil {
		return err
	}
	if req.Until, err = parseWhen("until", *until, now); err != nil {
		return err
	}
	resp, err := a.listEvents(ctx, cf, req, *all)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, resp)
	}
	if err := printEvents(a, resp.GetEvents()); err != nil {
		return err
	}
	if next := resp.GetNextPageToken(); next != "" {
		fmt.Fprintf(a.stderr, "# more events: add -page-token %s (or -all)\n", shellQuote(next))
	}
	return nil
}

// listEvents reads one page of events or, with all, every page from the
// request's, each with its own deadline; the response holds them all.
func (a *app) listEvents(ctx context.Context, cf *client.Target, req *sfv1.ListAuditEventsRequest, all bool) (*sfv1.ListAuditEventsResponse, error) {
	c, err := a.dial(cf)
	if err != nil {
		return nil, err
	}
	defer hangUp(c)
	admin := sfv1.NewAdminServiceClient(c)
	out := &sfv1.ListAuditEventsResponse{}
	seen := map[string]bool{}
	for {
		cctx, cancel := c.Call(ctx)
		resp, err := admin.ListAuditEvents(cctx, req)
		cancel()
		if err != nil {
			return nil, err
		}
		out.Events = append(out.Events, resp.GetEvents()...)
		out.NextPageToken = resp.GetNextPageToken()
		if !all || out.NextPageToken == "" {
			return out, nil
		}
		if seen[out.NextPageToken] {
			return nil, fmt.Errorf("list audit events: the server returned page token %q twice", out.NextPageToken)
		}
		seen[out.NextPageToken] = true
		req.PageToken = out.NextPageToken
	}
}

// printEvents prints a table of events, newest first as the server sends
// them. The user agent and request id are in -json.
func printEvents(a *app, events []*sfv1.AuditEvent) error {
	if len(events) == 0 {
		fmt.Fprintln(a.stderr, "no events")
		return nil
	}
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TIME\tID\tACTION\tRESULT\tFACTOR\tACTOR\tCLIENT IP\tREASON")
	for _, e := range events {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", timeOr(e.GetTime(), "-"), clean(e.GetId()), clean(e.GetAction()),
			orDash(clean(e.GetResult())), orDash(clean(e.GetFactorId())), orDash(clean(e.GetActor())),
			orDash(clean(e.GetClientIp())), orDash(clean(e.GetReason())))
	}
	return w.Flush()
}

func runAuditVerify(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	cf := a.addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print the response as JSON (protojson); the exit status still says whether the trail is intact")
	user, err := parseOptional(fs, args, "USER_ID")
	if err != nil {
		return err
	}
	var resp *sfv1.VerifyAuditTrailResponse
	err = a.adminCall(ctx, cf, func(ctx context.Context, c sfv1.AdminServiceClient) (err error) {
		resp, err = c.VerifyAuditTrail(ctx, &sfv1.VerifyAuditTrailRequest{UserId: user})
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		if err := printJSON(a.stdout, resp); err != nil {
			return err
		}
	} else {
		printVerdict(a, user, resp)
	}
	if !resp.GetOk() {
		return errFailed
	}
	return nil
}

// printVerdict says whether the chains checked are intact and, if not,
// which event is the first broken one.
func printVerdict(a *app, user string, resp *sfv1.VerifyAuditTrailResponse) {
	scope := "every chain"
	if user != "" {
		scope = "the chain of user " + clean(user)
	}
	if resp.GetOk() {
		fmt.Fprintf(a.stdout, "OK: %s intact, %d event(s) checked\n", scope, resp.GetEvents())
		return
	}
	fmt.Fprintf(a.stdout, "BROKEN: event %s: %s\n", orDash(clean(resp.GetBrokenEventId())), clean(resp.GetProblem()))
	fmt.Fprintf(a.stdout, "%s: %d event(s) checked\n", scope, resp.GetEvents())
}
