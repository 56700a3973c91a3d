package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/client"
)

// The commands of the Admin service that read or change a user's factors.
// Every change needs -reason; the destructive ones (factor delete, user
// reset) ask for confirmation on a terminal, or -yes.

func runFactorsList(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	cf := a.addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print the response as JSON (protojson)")
	pos, err := parse(fs, args, "USER_ID")
	if err != nil {
		return err
	}
	var resp *sfv1.ListFactorsResponse
	err = a.adminCall(ctx, cf, func(ctx context.Context, c sfv1.AdminServiceClient) (err error) {
		resp, err = c.ListFactors(ctx, &sfv1.ListFactorsRequest{UserId: pos[0]})
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, resp)
	}
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "user\t%s\n", clean(pos[0]))
	if resp.GetLockedUntil() != nil {
		fmt.Fprintf(w, "locked\tuntil %s\n", timeOr(resp.GetLockedUntil(), "-"))
	} else {
		fmt.Fprintf(w, "locked\tno\n")
	}
	fmt.Fprintf(w, "recovery codes\t%d left\n", resp.GetRecoveryCodes())
	if err := w.Flush(); err != nil {
		return err
	}
	return printFactors(a.stdout, resp.GetFactors())
}

// printFactors prints a table of factors, with their suspension.
func printFactors(out io.Writer, factors []*sfv1.Factor) error {
	if len(factors) == 0 {
		fmt.Fprintln(out, "\nno factors")
		return nil
	}
	fmt.Fprintln(out)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tKIND\tNAME\tCREATED\tLAST USED\tSUSPENDED")
	for _, f := range factors {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", clean(f.GetId()), kindName(f.GetKind()), clean(f.GetName()),
			timeOr(f.GetCreatedAt(), "-"), timeOr(f.GetLastUsedAt(), "never"), timeOr(f.GetSuspendedAt(), "no"))
	}
	return w.Flush()
}

// changeFlags are the flags of a command that changes a user's factors or
// state: the connection, the reason and, for a destructive change, -yes.
type changeFlags struct {
	conn   *client.Target
	reason *string
	yes    *bool
}

// addChangeFlags defines the flags of a change; destructive adds -yes.
func (a *app) addChangeFlags(fs *flag.FlagSet, reasonHelp string, destructive bool) changeFlags {
	f := changeFlags{conn: a.addConnFlags(fs), reason: fs.String("reason", "", reasonHelp+", for the audit trail (required)")}
	if destructive {
		f.yes = fs.Bool("yes", false, "do not ask for confirmation (needed when stdin is not a terminal)")
	}
	return f
}

// check refuses a change without a reason and, for a destructive one,
// asks for confirmation of action ("reset user alice"), saying what goes.
func (a *app) check(fs *flag.FlagSet, f changeFlags, action, what string) error {
	if err := required(fs, "reason"); err != nil {
		return err
	}
	if f.yes == nil || *f.yes {
		return nil
	}
	return a.confirm(action, what)
}

// confirm asks on the terminal whether to go on with action. Without a
// terminal there is no one to ask: it refuses, and -yes is the way.
func (a *app) confirm(action, what string) error {
	if !a.stdinTTY {
		return usageErrorf("refusing to %s without confirmation: stdin is not a terminal; pass -yes", action)
	}
	fmt.Fprintf(a.stderr, "%s: %s.\nType yes to go on: ", action, what)
	line, err := a.stdin.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read confirmation: %w", err)
	}
	if strings.TrimSpace(line) != "yes" {
		fmt.Fprintln(a.stderr, "secondfactor: not confirmed: nothing changed")
		return errFailed
	}
	return nil
}

// adminCall dials the server and makes one call of the Admin service, with
// the target's deadline.
func (a *app) adminCall(ctx context.Context, t *client.Target, call func(context.Context, sfv1.AdminServiceClient) error) error {
	c, err := a.dial(t)
	if err != nil {
		return err
	}
	defer hangUp(c)
	cctx, cancel := c.Call(ctx)
	defer cancel()
	return call(cctx, sfv1.NewAdminServiceClient(c))
}

func runFactorDelete(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	f := a.addChangeFlags(fs, "why the factor goes", true)
	pos, err := parse(fs, args, "USER_ID", "FACTOR_ID")
	if err != nil {
		return err
	}
	user, factor := pos[0], pos[1]
	action := fmt.Sprintf("delete factor %s of user %s", clean(factor), clean(user))
	if err := a.check(fs, f, action, "it stops working at once, and every enrolment or login the user has begun is ended"); err != nil {
		return err
	}
	err = a.adminCall(ctx, f.conn, func(ctx context.Context, c sfv1.AdminServiceClient) error {
		_, err := c.DeleteFactor(ctx, &sfv1.DeleteFactorRequest{UserId: user, FactorId: factor, Reason: *f.reason})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "deleted factor %s of user %s\n", clean(factor), clean(user))
	return nil
}

func runFactorEnable(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	f := a.addChangeFlags(fs, "why the key is trusted again (what the user said of it)", false)
	pos, err := parse(fs, args, "USER_ID", "FACTOR_ID")
	if err != nil {
		return err
	}
	user, factor := pos[0], pos[1]
	if err := a.check(fs, f, "", ""); err != nil {
		return err
	}
	err = a.adminCall(ctx, f.conn, func(ctx context.Context, c sfv1.AdminServiceClient) error {
		_, err := c.EnableFactor(ctx, &sfv1.EnableFactorRequest{UserId: user, FactorId: factor, Reason: *f.reason})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "enabled factor %s of user %s\n", clean(factor), clean(user))
	return nil
}

func runUserReset(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	f := a.addChangeFlags(fs, "why (lost device, and how the identity was checked)", true)
	asJSON := fs.Bool("json", false, "print the response as JSON (protojson)")
	pos, err := parse(fs, args, "USER_ID")
	if err != nil {
		return err
	}
	user := pos[0]
	action := "reset user " + clean(user)
	if err := a.check(fs, f, action, "every factor and recovery code goes, every enrolment or login begun is ended, and the user must enrol again"); err != nil {
		return err
	}
	var resp *sfv1.ResetUserResponse
	err = a.adminCall(ctx, f.conn, func(ctx context.Context, c sfv1.AdminServiceClient) (err error) {
		resp, err = c.ResetUser(ctx, &sfv1.ResetUserRequest{UserId: user, Reason: *f.reason})
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, resp)
	}
	fmt.Fprintf(a.stdout, "reset user %s: %d factor(s) removed\n", clean(user), resp.GetFactorsRemoved())
	fmt.Fprintf(a.stderr, "# the user enrols again: secondfactor enroll create %s -proof ... (a password-only\n"+
		"#   enrolment needs an activation code: secondfactor activation issue %s -reason ...)\n", shellQuote(user), shellQuote(user))
	return nil
}

func runUserUnlock(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	f := a.addChangeFlags(fs, "why the user may try again", false)
	pos, err := parse(fs, args, "USER_ID")
	if err != nil {
		return err
	}
	user := pos[0]
	if err := a.check(fs, f, "", ""); err != nil {
		return err
	}
	err = a.adminCall(ctx, f.conn, func(ctx context.Context, c sfv1.AdminServiceClient) error {
		_, err := c.UnlockUser(ctx, &sfv1.UnlockUserRequest{UserId: user, Reason: *f.reason})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "unlocked user %s\n", clean(user))
	return nil
}
