// Command secondfactor is the admin and operator CLI of secondfactord: it
// mints caller tokens, looks users up, opens enrolments, issues activation
// codes, enrols a TOTP factor from the terminal and checks codes; for
// administrators, it lists, deletes and enables factors, resets and unlocks
// users, issues and reviews break-glass bypass codes, and reads and
// verifies the audit trail. It is a gRPC client of the server; run
// "secondfactor -h" for the subcommands.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/secondfactor/secondfactor/internal/client"
)

func main() {
	a := &app{
		stdin:    bufio.NewReader(os.Stdin),
		stdout:   os.Stdout,
		stderr:   os.Stderr,
		getenv:   os.Getenv,
		stdinTTY: isTerminal(os.Stdin),
		clock:    time.Now,
	}
	os.Exit(a.run(context.Background(), os.Args[1:]))
}

// app is one run of the CLI: its input, outputs and environment.
type app struct {
	stdin    *bufio.Reader
	stdout   io.Writer
	stderr   io.Writer
	getenv   func(string) string
	stdinTTY bool             // prompt on stderr before reading stdin
	clock    func() time.Time // for -since and -until given as durations; time.Now if nil

	tokenSource string // where dial found the bearer token, for error hints
}

// now is the time of the app's clock.
func (a *app) now() time.Time {
	if a.clock == nil {
		return time.Now()
	}
	return a.clock()
}

// command is one subcommand, "group verb".
type command struct {
	name     string // "user show"
	synopsis string // arguments and main flags, after the name
	summary  string // one line, for the top-level usage
	help     string // what it does, for -h
	run      func(ctx context.Context, a *app, cmd *command, args []string) error
}

// commands lists the subcommands in the order of the top-level usage.
var commands = []*command{
	{
		name: "token new", synopsis: "-name NAME -role ROLE[+ROLE]",
		summary: "mint a caller token and its server config line (local, no server call)",
		help: `Generates a 256-bit random bearer token and prints it, then, on a second
line, the caller entry NAME:ROLES:SHA256HEX to add to SECONDFACTOR_CALLERS on
the server (comma-separated entries). The server stores only the hash: keep
the token secret and give it to the caller (SECONDFACTOR_TOKEN). Roles are
"portal" and "admin", joined with "+".`,
		run: runTokenNew,
	},
	{
		name: "user show", synopsis: "USER_ID [-json]",
		summary: "show whether a user is enrolled or locked, and their factors",
		help: `Calls GetUser and prints whether the user is enrolled and locked, and a
table of their confirmed factors. An unknown user is a user with no factor.
Needs the "portal" role.`,
		run: runUserShow,
	},
	{
		name: "enroll create", synopsis: "USER_ID -proof password-only|strong|existing-factor [-name DISPLAY_NAME] [-return-url URL]",
		summary: "open an enrolment session and print its single-use token and link",
		help: `Calls CreateEnrollment. -proof says how the user was authenticated:
  password-only    username and password only: under the default policy the
                   session enrols a first factor only with an activation code
                   (see "activation issue")
  strong           strong authentication (CPS card)
  existing-factor  the user verified an existing factor moments ago; needed to
                   add a factor to a user who has one
Prints the token (shown only here), the hosted enrolment URL, the expiry and
whether an activation code is required. Needs the "portal" role.`,
		run: runEnrollCreate,
	},
	{
		name: "activation issue", synopsis: "USER_ID -reason TEXT",
		summary: "issue the activation code of a password-only enrolment",
		help: `Calls Admin.IssueActivationCode. Do it only after checking the user's
identity by other means, and say how in -reason (it goes to the audit trail).
The code is shown only here and replaces any previous one: read it to the user
or send it through a channel that is not the portal password. Needs the
"admin" role.`,
		run: runActivationIssue,
	},
	{
		name: "totp enroll", synopsis: "-token ENROLLMENT_TOKEN -name NAME [-activation-code CODE]",
		summary: "enrol an authenticator app: QR code in the terminal, then confirm a code",
		help: `Calls BeginTOTPEnrollment with the token from "enroll create", prints the
QR code to scan with the authenticator app, the key for manual entry and the
pending factor's id, then reads a current code from stdin (prompting "code: "
on a terminal) and confirms it with FinishTOTPEnrollment. Prints the confirmed
factor and, for a user's first factor, the recovery codes (shown only once).

With -factor-id, skips the first step and only confirms that pending factor
(with -code, or a code read from stdin), like "totp finish". The QR code draws
light modules for a light-on-dark terminal; use -invert on a dark-on-light one.
Needs the "portal" role.`,
		run: runTOTPEnroll,
	},
	{
		name: "totp finish", synopsis: "-token ENROLLMENT_TOKEN -factor-id ID [-code CODE]",
		summary: "confirm a pending TOTP factor with a code (second half of totp enroll)",
		help: `Calls FinishTOTPEnrollment for a pending factor created by "totp enroll", with
-code or a code read from stdin. Prints the confirmed factor and any recovery
codes (shown only once). Needs the "portal" role.`,
		run: runTOTPFinish,
	},
	{
		name: "verify totp", synopsis: "USER_ID CODE [-ip IP]",
		summary: "check a TOTP code; exit status 0 only when accepted",
		help: `Calls VerifyTOTP and prints ACCEPTED, REJECTED, or LOCKED with the time until
the next attempt is evaluated. The exit status is 0 only for ACCEPTED. A code
is accepted at most once per time step: checking a user's code here uses it
up. Every rejection counts towards the user's lockout. Needs the "portal" role.`,
		run: runVerifyTOTP,
	},
	{
		name: "verify recovery", synopsis: "USER_ID CODE [-ip IP]",
		summary: "use up one of a user's recovery codes; exit status 0 only when accepted",
		help: `Calls VerifyRecoveryCode and prints ACCEPTED with the number of codes left,
REJECTED, or LOCKED with the time until the next attempt is evaluated. An
accepted code is used up. Dashes, spaces and case do not matter. Wrong codes
count towards the same lockout as TOTP codes. A bypass code from "bypass
issue" is checked here too: ACCEPTED then says so. Needs the "portal" role.`,
		run: runVerifyRecovery,
	},
	{
		name: "factors list", synopsis: "USER_ID [-json]",
		summary: "list a user's factors, suspended ones included, lock and recovery codes",
		help: `Calls Admin.ListFactors and prints whether the user is locked (and until
when), how many recovery codes are left, and a table of the confirmed factors
with their suspension: a security key whose signature counter went backwards
is suspended until "factor enable" or "factor delete". No secret is shown.
Needs the "admin" role.`,
		run: runFactorsList,
	},
	{
		name: "factor delete", synopsis: "USER_ID FACTOR_ID -reason TEXT [-yes]",
		summary: "remove one factor of a user (asks for confirmation)",
		help: `Calls Admin.DeleteFactor: the factor stops working at once, and every
enrolment session, pending factor and login challenge the user had begun is
ended. If it was the user's last factor, the recovery codes go too. The reason
goes to the audit trail. On a terminal it asks for confirmation first; -yes
skips the question, and without a terminal -yes is required. Needs the
"admin" role.`,
		run: runFactorDelete,
	},
	{
		name: "factor enable", synopsis: "USER_ID FACTOR_ID -reason TEXT",
		summary: "lift the suspension of a security key whose counter went backwards",
		help: `Calls Admin.EnableFactor. A security key or passkey whose signature counter
went backwards (a sign of a cloned key) is suspended: every login with it is
rejected until an administrator enables it again or deletes it. Enable it only
when the user can account for it (say how in -reason); otherwise delete it
("factor delete") and have the user enrol a new one. Needs the "admin" role.`,
		run: runFactorEnable,
	},
	{
		name: "user reset", synopsis: "USER_ID -reason TEXT [-yes] [-json]",
		summary: "remove all of a user's factors, for a lost device (asks for confirmation)",
		help: `Calls Admin.ResetUser: every factor, recovery code, enrolment session,
pending factor and challenge of the user goes, in one step, and nothing begun
before the reset can finish after it. The user must enrol again ("enroll
create"; a password-only enrolment needs "activation issue"). Check the user's
identity first, and say how in -reason (it goes to the audit trail). On a
terminal it asks for confirmation first; -yes skips the question, and without
a terminal -yes is required. Prints how many factors were removed. Needs the
"admin" role.`,
		run: runUserReset,
	},
	{
		name: "user unlock", synopsis: "USER_ID -reason TEXT",
		summary: "clear a user's failed-attempt lock",
		help: `Calls Admin.UnlockUser: the user's failed TOTP and recovery code attempts and
lock are cleared, so that the next code is evaluated at once. The reason goes
to the audit trail. Needs the "admin" role.`,
		run: runUserUnlock,
	},
	{
		name: "bypass issue", synopsis: "USER_ID -reason TEXT [-ttl DURATION] [-json]",
		summary: "issue a one-time break-glass code for a user who lost every factor",
		help: `Calls Admin.IssueBypassCode, for a professional who lost every factor in the
middle of a shift. Check the identity first by other means, and say how and
why in -reason (it goes to the audit trail and to the review). Prints the
code (shown only here), its expiry and the bypass id. The user types the code
where a recovery code goes: it lets them in once, before it expires (-ttl,
1m to 1h, default 1h), counted against their failed-attempt lock (while they
are locked it is not evaluated: see "factors list", "user unlock"); it is not
a verification of a factor, so it enrols and manages nothing. A new code for
the same user replaces the previous one. Another administrator then reviews
it ("audit review", "bypass review"). A server run with -bypass off refuses.
Needs the "admin" role.`,
		run: runBypassIssue,
	},
	{
		name: "audit list", synopsis: "[USER_ID] [-since WHEN] [-until WHEN] [-action ACTION] [-limit N] [-all] [-json]",
		summary: "read the audit trail, newest first, of one user or all",
		help: `Calls Admin.ListAuditEvents and prints the events, newest first: time, id
(USER_ID/SEQ), action, result of a verification, factor, the API caller
(actor), the end user's IP address and the administrator's reason; -json adds
the user agent, request id and hashes. Without USER_ID, every user's events.

-since and -until take an RFC 3339 time (2026-03-01T09:30:00Z), a date
(2026-03-01, UTC) or a duration before now (24h). -action keeps only the
events of the actions given (repeat it, or separate with commas):
` + wrap(actionNames(), 78) + `.
One page of -limit events is read unless -all; the token of the next page
is printed on stderr. Needs the "admin" role.`,
		run: runAuditList,
	},
	{
		name: "audit verify", synopsis: "[USER_ID] [-json]",
		summary: "check the audit trail's hash chains; exit status 0 only when intact",
		help: `Calls Admin.VerifyAuditTrail: each user's events form a hash chain, each
event holding the hash of the one before, so that an event edited or removed
in the store breaks it. Checks the chain of USER_ID, or every chain, and
prints OK with the number of events checked, or BROKEN with the first broken
event (USER_ID/SEQ) and what is wrong with it. The exit status is 0 only when
the chains are intact. Needs the "admin" role.`,
		run: runAuditVerify,
	},
	{
		name: "audit review", synopsis: "[-since WHEN] [-until WHEN] [-json]",
		summary: "list every bypass code of a period, used or not, and whether it was reviewed",
		help: `Calls Admin.ListBypasses for every page and prints the bypasses issued in
the period, newest first: when, the bypass id, the user, the administrator who
issued it, its expiry, when it was used ("unused" if never: an unused code
expired, or was replaced by a later one for the same user), who reviewed it
("NOT REVIEWED" until someone does), the reason and the review note. Stderr
says how many are not reviewed. -since and -until take an RFC 3339 time, a
date (UTC) or a duration before now (24h); without them, every bypass. Needs
the "admin" role.`,
		run: runAuditReview,
	},
	{
		name: "bypass review", synopsis: "BYPASS_ID -note TEXT [-json]",
		summary: "sign off a bypass code issued by another administrator",
		help: `Calls Admin.ReviewBypass: records that you, a second administrator, reviewed
the bypass (say what you checked in -note: it goes to the audit trail). The
administrator who issued it cannot review it, and a bypass is reviewed once.
Needs the "admin" role.`,
		run: runBypassReview,
	},
}

func (a *app) usage(w io.Writer) {
	fmt.Fprint(w, `secondfactor is the admin and operator CLI of secondfactord (a gRPC client).

usage: secondfactor <command> [arguments] [flags]

commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-17s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Run "secondfactor <command> -h" for a command's arguments and flags.

Connection (every command but "token new"):
  -addr host:port   env SECONDFACTOR_ADDR, default %s
  bearer token      env SECONDFACTOR_TOKEN, else the file -token-file (env
                    SECONDFACTOR_TOKEN_FILE, default %s: secondfactord
                    writes it when it runs on loopback with no caller configured)
  TLS               plaintext only to a loopback address, TLS to any other
                    (system roots, or -ca FILE); -tls forces it on loopback

Quickstart, next to a secondfactord running on loopback in this directory:
  secondfactor enroll create alice -proof strong -name "Alice Martin"
  secondfactor totp enroll -token <token printed above> -name phone
  secondfactor user show alice
  secondfactor verify totp alice <code from the app, 30 s later>
A password-only enrolment also needs an activation code:
  secondfactor enroll create bob -proof password-only
  secondfactor activation issue bob -reason "identity checked by phone call"
  secondfactor totp enroll -token <token> -name phone -activation-code <code>
Administration (role "admin"; every change needs -reason):
  secondfactor factors list alice
  secondfactor user reset alice -reason "lost phone, identity checked by video call"
  secondfactor audit list alice -since 24h
  secondfactor audit verify
Break-glass (a second administrator reviews each bypass):
  secondfactor bypass issue alice -reason "lost every factor, identity checked by video call"
  secondfactor audit review -since 168h
  secondfactor bypass review <bypass id> -note "called the ward back: she was on shift"
A caller for a remote server (add line 2 to its SECONDFACTOR_CALLERS):
  secondfactor token new -name ops-alice -role admin

Errors go to stderr as "secondfactor: <gRPC code>: <message>", exit status 1;
usage errors exit with status 2.
`, client.DefaultAddr, client.DefaultTokenFile)
}

// usageError is bad command-line input: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errFailed ends a run with exit status 1 after the command printed why.
var errFailed = errors.New("failed")

// run runs the CLI on args (without the program name) and returns the exit
// status.
func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		a.usage(a.stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		a.usage(a.stdout)
		return 0
	}
	if strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(a.stderr, "secondfactor: flags go after the command, as in: secondfactor user show -addr host:port USER_ID\n")
		return 2
	}
	cmd := a.find(args)
	if cmd == nil {
		return 2
	}
	return a.exitStatus(cmd, cmd.run(ctx, a, cmd, args[2:]))
}

// find returns the command that args name, or prints why none and returns
// nil.
func (a *app) find(args []string) *command {
	var verbs []string
	for _, c := range commands {
		group, verb, _ := strings.Cut(c.name, " ")
		if group != args[0] {
			continue
		}
		if len(args) > 1 && args[1] == verb {
			return c
		}
		verbs = append(verbs, verb)
	}
	if len(verbs) == 0 {
		fmt.Fprintf(a.stderr, "secondfactor: unknown command %q\nRun \"secondfactor -h\" for the commands.\n", args[0])
	} else {
		fmt.Fprintf(a.stderr, "secondfactor: %s wants one of: %s\nRun \"secondfactor -h\" for the commands.\n",
			args[0], strings.Join(verbs, ", "))
	}
	return nil
}

// exitStatus prints what err says, if the command has not, and returns the
// exit status: 0 success, 1 failure, 2 bad usage.
func (a *app) exitStatus(cmd *command, err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFailed):
		return 1
	case errors.As(err, &ue):
		fmt.Fprintf(a.stderr, "secondfactor %s: %s\nRun \"secondfactor %s -h\" for usage.\n", cmd.name, ue.msg, cmd.name)
		return 2
	case errors.Is(err, errFlagParse):
		return 2 // the flag package has printed the error and the usage
	}
	if st, ok := status.FromError(err); ok {
		fmt.Fprintf(a.stderr, "secondfactor: %s: %s\n", st.Code(), st.Message())
		if hint := a.hintFor(st.Code()); hint != "" {
			fmt.Fprintf(a.stderr, "secondfactor: hint: %s\n", hint)
		}
		return 1
	}
	fmt.Fprintf(a.stderr, "secondfactor: %v\n", err)
	return 1
}

func (a *app) hintFor(c codes.Code) string {
	switch c {
	case codes.Unauthenticated:
		return "the server did not accept the bearer token read from " + a.tokenSource
	case codes.PermissionDenied:
		return "this caller lacks the role the method needs (see the command's -h)"
	case codes.Unavailable:
		return "is secondfactord running at -addr, and does it expect TLS (-tls, -ca)?"
	}
	return ""
}

// errFlagParse is a flag the flag package rejected; it has printed why.
var errFlagParse = errors.New("bad flag")

// flagSet returns the flag set of cmd, its -h printing the command's help.
func (a *app) flagSet(cmd *command) *flag.FlagSet {
	fs := flag.NewFlagSet("secondfactor "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: secondfactor %s %s\n\n%s\n\nflags:\n", cmd.name, cmd.synopsis, cmd.help)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args with fs, flags and positional arguments in any order
// ("--" ends the flags), and checks there are exactly len(names) positional
// arguments, none empty.
func parse(fs *flag.FlagSet, args []string, names ...string) ([]string, error) {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != len(names) {
		if len(names) == 0 {
			return nil, usageErrorf("unexpected argument %q", pos[0])
		}
		return nil, usageErrorf("want %s, got %d argument(s)", strings.Join(names, " "), len(pos))
	}
	for i, p := range pos {
		if strings.TrimSpace(p) == "" {
			return nil, usageErrorf("%s is empty", names[i])
		}
	}
	return pos, nil
}

// parseOptional is parse for a command with one optional positional
// argument, name: it returns "" when there is none.
func parseOptional(fs *flag.FlagSet, args []string, name string) (string, error) {
	pos, err := parseFlags(fs, args)
	switch {
	case err != nil:
		return "", err
	case len(pos) == 0:
		return "", nil
	case len(pos) > 1:
		return "", usageErrorf("want at most %s, got %d arguments", name, len(pos))
	case strings.TrimSpace(pos[0]) == "":
		return "", usageErrorf("%s is empty", name)
	}
	return pos[0], nil
}

// parseFlags parses the flags of args with fs and returns the positional
// arguments.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	flags, pos := splitArgs(fs, args)
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errFlagParse
	}
	return pos, nil
}

// splitArgs separates flags (with their values) from positional arguments.
func splitArgs(fs *flag.FlagSet, args []string) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return flags, append(pos, args[i+1:]...)
		}
		if len(arg) < 2 || arg[0] != '-' {
			pos = append(pos, arg)
			continue
		}
		flags = append(flags, arg)
		if takesValue(fs, arg) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return flags, pos
}

// takesValue reports whether arg is a flag of fs written without "=" whose
// value is the next argument (a known, non-boolean flag).
func takesValue(fs *flag.FlagSet, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return false
	}
	f := fs.Lookup(name)
	if f == nil {
		return false // fs.Parse reports it
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// required checks that the named string flags were given a non-blank value.
func required(fs *flag.FlagSet, names ...string) error {
	for _, n := range names {
		if strings.TrimSpace(fs.Lookup(n).Value.String()) == "" {
			return usageErrorf("-%s is required", n)
		}
	}
	return nil
}

// isTerminal reports whether f is a character device, such as a terminal,
// other than the null device (a job's "< /dev/null" is no one to ask).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}
