// Package config reads the server's one Config from command-line flags and
// SECONDFACTOR_* environment variables, and validates it at start-up so that
// a mistake stops the server with a message naming the setting.
//
// Every flag -some-name has the variable SECONDFACTOR_SOME_NAME; a flag on
// the command line wins over the variable.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/secondfactor/secondfactor/internal/grpcapi"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/notify"
	"github.com/secondfactor/secondfactor/internal/passkey"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/totp"
)

// Config is everything the server is told. The secrets in it print as
// REDACTED (secret.String), so a printed or logged Config shows none.
type Config struct {
	DataDir  string
	GRPCAddr string
	HTTPAddr string
	TLSCert  string
	TLSKey   string
	// ClientCA is a PEM bundle of the CAs that sign callers' client
	// certificates; CertCallers maps those certificates to callers.
	ClientCA    string
	CertCallers []string // NAME:ROLE[+ROLE]:MATCH

	Store         string // "bolt" or "redis"
	RedisAddrs    []string
	RedisMaster   string // Sentinel master name
	RedisUsername string
	RedisPassword secret.String
	RedisDB       int
	RedisTLS      bool

	Callers     []string      // NAME:ROLE[+ROLE]:SHA256HEX
	SealKeys    secret.String // id:base64key,...
	SealKeyFile string

	Policy            string
	Issuer            string
	TOTPAlgorithm     string
	TOTPDigits        int
	MaxFailures       int
	LockoutBase       time.Duration
	LockoutMax        time.Duration
	FailureTTL        time.Duration
	EnrollmentTTL     time.Duration
	ActivationTTL     time.Duration
	FreshVerification time.Duration
	Bypass            string // "on" or "off": administrators' bypass codes
	PublicURL         string
	ReturnURLs        []string

	WebAuthnRPID             string
	WebAuthnRPName           string
	WebAuthnOrigins          []string
	WebAuthnUserVerification string
	WebAuthnResidentKey      string
	WebAuthnAttestation      string
	WebAuthnAAGUIDs          []string
	WebAuthnRefuseSynced     bool
	WebAuthnTimeout          time.Duration

	MaxRequestBytes int
	LogLevel        string
	// AuditRetention is how long audit events are kept (0: for ever).
	AuditRetention time.Duration

	// WebhookURL receives the notifications (package notify); "" sends
	// none. WebhookSecret signs them.
	WebhookURL     string
	WebhookSecret  secret.String
	WebhookTimeout time.Duration
}

// EnvPrefix starts the name of every environment variable.
const EnvPrefix = "SECONDFACTOR_"

// The defaults the command-line tools share with the server: where it
// listens, its data folder, and the local token it writes there for a
// loopback run with no caller configured.
const (
	DefaultGRPCAddr = "127.0.0.1:7070"
	DefaultDataDir  = "data"
	LocalTokenFile  = "local-token"
	// DefaultOrigin is the default WebAuthn origin: the web UI on the
	// default HTTP port, as a browser on the same machine names it.
	DefaultOrigin = "http://localhost:" + defaultHTTPPort
)

// DefaultAuditRetention is how long audit events are kept by default: 400
// days, 13 months, a common retention of audit logs (a year and the month
// it takes to review it).
const DefaultAuditRetention = 400 * 24 * time.Hour

// MinAuditRetention is the shortest retention of audit events but 0 (none).
const MinAuditRetention = 24 * time.Hour

const (
	defaultHTTPPort = "7080"
	defaultHTTPAddr = "127.0.0.1:" + defaultHTTPPort
)

type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

// Set appends comma-separated values; a flag may be repeated.
func (l listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l.v = append(*l.v, p)
		}
	}
	return nil
}

// secretFlag is a flag holding a secret.String; its value is never printed.
type secretFlag struct{ v *secret.String }

func (f secretFlag) String() string {
	if f.v == nil || *f.v == "" {
		return ""
	}
	return f.v.String()
}

// Set keeps the value as given.
func (f secretFlag) Set(s string) error {
	*f.v = secret.String(s)
	return nil
}

// define registers the flags on fs, each bound to its field of c and
// holding its default there. The defaults of the flows, TOTP and WebAuthn
// settings are those of their packages.
func (c *Config) define(fs *flag.FlagSet) {
	mo := mfa.DefaultOptions()
	pc := passkey.DefaultConfig()
	fs.StringVar(&c.DataDir, "data-dir", DefaultDataDir, "folder for the embedded store, generated keys and the local token")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", DefaultGRPCAddr, "gRPC listen address; anything but loopback needs -tls-cert and -tls-key")
	fs.StringVar(&c.HTTPAddr, "http-addr", defaultHTTPAddr, "HTTP listen address for /healthz and /metrics; off (or empty) to disable")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate file (PEM) for the gRPC server")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key file (PEM) for the gRPC server")
	fs.StringVar(&c.ClientCA, "client-ca", "", "CA bundle (PEM) that signs callers' client certificates; needs -tls-cert, -tls-key and -cert-callers")
	fs.Var(listFlag{&c.CertCallers}, "cert-callers", "API callers by client certificate NAME:ROLE[+ROLE]:MATCH, comma-separated, MATCH one of cn=, dns=, uri=, email= (exact); needs -client-ca")
	fs.StringVar(&c.Store, "store", "bolt", "state store: bolt (embedded file in -data-dir, one node) or redis (several replicas)")
	fs.Var(listFlag{&c.RedisAddrs}, "redis-addrs", "Redis addresses host:port, comma-separated: one for standalone, several for Cluster, Sentinels with -redis-master")
	fs.StringVar(&c.RedisMaster, "redis-master", "", "Sentinel master name (makes -redis-addrs the Sentinels)")
	fs.StringVar(&c.RedisUsername, "redis-username", "", "Redis ACL user name")
	fs.Var(secretFlag{&c.RedisPassword}, "redis-password", "Redis password (prefer the environment variable)")
	fs.IntVar(&c.RedisDB, "redis-db", 0, "Redis database number (standalone and Sentinel)")
	fs.BoolVar(&c.RedisTLS, "redis-tls", false, "connect to Redis over TLS")
	fs.Var(listFlag{&c.Callers}, "callers", "API callers NAME:ROLE[+ROLE]:SHA256HEX, comma-separated (secondfactor token new prints one); none on loopback: a local token is generated")
	fs.Var(secretFlag{&c.SealKeys}, "seal-keys", "keys that seal TOTP secrets, id:base64key comma-separated, first seals (prefer the environment variable)")
	fs.StringVar(&c.SealKeyFile, "seal-key-file", "", "file of sealing keys, one id:base64key per line, first seals")
	fs.StringVar(&c.Policy, "enrollment-policy", string(mo.Policy), "what a password-only session may enrol: activation-code, strong-only, or open (UNSAFE: a stolen password enrols a factor)")
	fs.StringVar(&c.Issuer, "issuer", mo.Issuer, "issuer name shown in authenticator apps")
	fs.StringVar(&c.TOTPAlgorithm, "totp-algorithm", string(mo.TOTP.Algorithm), "HMAC of new TOTP factors: SHA1, SHA256 or SHA512 (many apps only know SHA1)")
	fs.IntVar(&c.TOTPDigits, "totp-digits", mo.TOTP.Digits, "digits of new TOTP codes: 6 or 8")
	fs.IntVar(&c.MaxFailures, "max-failures", mo.Limits.MaxFailures, "consecutive failed attempts that lock a user's TOTP")
	fs.DurationVar(&c.LockoutBase, "lockout-base", mo.Limits.BaseLockout, "first lock; each further lock doubles it")
	fs.DurationVar(&c.LockoutMax, "lockout-max", mo.Limits.MaxLockout, "longest lock")
	fs.DurationVar(&c.FailureTTL, "failure-ttl", mo.Limits.FailureTTL, "how long without a failure before a user's failures are forgotten")
	fs.DurationVar(&c.EnrollmentTTL, "enrollment-ttl", mo.EnrollmentTTL, "lifetime of an enrolment session")
	fs.DurationVar(&c.ActivationTTL, "activation-ttl", mo.ActivationTTL, "lifetime of an activation code")
	fs.DurationVar(&c.FreshVerification, "fresh-verification", mo.FreshVerification, "how recent a verification must be to back PROOF_EXISTING_FACTOR")
	fs.StringVar(&c.Bypass, "bypass", "on", "break-glass bypass codes: on (administrators may issue one-time codes, accepted at login as recovery codes) or off (none issued or accepted)")
	fs.StringVar(&c.PublicURL, "public-url", "", "public base URL of the web UI, e.g. https://mfa.example.org (enrolment links)")
	fs.Var(listFlag{&c.ReturnURLs}, "return-urls", "allowed return URLs after enrolment or verification, exact match, comma-separated")
	fs.StringVar(&c.WebAuthnRPID, "webauthn-rp-id", "localhost", "WebAuthn relying party ID: the portal's domain, e.g. portal.example (not an IP address)")
	fs.StringVar(&c.WebAuthnRPName, "webauthn-rp-name", "secondfactor", "WebAuthn relying party name shown by browsers")
	fs.Var(listFlag{&c.WebAuthnOrigins}, "webauthn-origins", "origins allowed in WebAuthn ceremonies, exact, comma-separated: https://…, or http://localhost:PORT for development (default "+DefaultOrigin+")")
	fs.StringVar(&c.WebAuthnUserVerification, "webauthn-user-verification", pc.UserVerification, "WebAuthn user verification (PIN, biometrics): preferred, required or discouraged")
	fs.StringVar(&c.WebAuthnResidentKey, "webauthn-resident-key", pc.ResidentKey, "WebAuthn discoverable credentials: discouraged, preferred or required")
	fs.StringVar(&c.WebAuthnAttestation, "webauthn-attestation", pc.Attestation, "WebAuthn attestation conveyance: none, indirect, direct or enterprise")
	fs.Var(listFlag{&c.WebAuthnAAGUIDs}, "webauthn-aaguids", "if set, the only authenticator models (AAGUIDs, hex) accepted at registration, comma-separated")
	fs.BoolVar(&c.WebAuthnRefuseSynced, "webauthn-refuse-synced", false, "refuse backup-eligible (synced) passkeys: only device-bound keys")
	fs.DurationVar(&c.WebAuthnTimeout, "webauthn-timeout", pc.Timeout, "lifetime of a WebAuthn challenge")
	fs.IntVar(&c.MaxRequestBytes, "max-request-bytes", grpcapi.DefaultMaxRequestBytes, "largest gRPC request accepted")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&c.AuditRetention, "audit-retention", DefaultAuditRetention, "how long audit events are kept: older ones are removed, from the start of each user's chain; 0 keeps them for ever, else at least 24h")
	fs.StringVar(&c.WebhookURL, "webhook-url", "", "URL that receives a signed POST for each change a user should hear of (factor added, removed, suspended, reset, lockout, recovery code used, ...): https, or http on loopback; empty sends none")
	fs.Var(secretFlag{&c.WebhookSecret}, "webhook-secret", "secret of at least 32 bytes that signs each webhook request (HMAC-SHA256); required with -webhook-url (prefer the environment variable)")
	fs.DurationVar(&c.WebhookTimeout, "webhook-timeout", notify.DefaultTimeout, "bound on one webhook request, answer included: 1s to 1m")
}

// complete applies the defaults that depend on the parsed values.
func (c *Config) complete() {
	if c.HTTPAddr == "off" {
		c.HTTPAddr = ""
	}
	if len(c.WebAuthnOrigins) == 0 {
		c.WebAuthnOrigins = []string{DefaultOrigin}
	}
}

// Default returns the settings of a server given no flag and no variable.
func Default() Config {
	var c Config
	c.define(flag.NewFlagSet("", flag.ContinueOnError))
	c.complete()
	return c
}

// Load parses args (without the program name) and the environment given as
// getenv, and validates the result. Usage and errors go to out.
func Load(name string, args []string, getenv func(string) string, out io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	c.define(fs)
	fs.Usage = func() {
		if _, err := fmt.Fprintf(out, `%s: the secondfactor server (gRPC API for the portal and admins).

With no flags it runs on loopback with the embedded store in ./data, generates
a sealing key and a local API token there (printed paths), and is ready for
the quickstart. Every flag -some-name can also be set as SECONDFACTOR_SOME_NAME.

Flags:
`, name); err != nil {
			return // out is gone: nobody to tell
		}
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !set[f.Name] && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s: %w", env, e)
			}
		}
	})
	if err != nil {
		return Config{}, err
	}
	c.complete()
	return c, c.Validate()
}

// MFA returns the settings of the flows: mfa.DefaultOptions with what c
// sets. Store, Ring, RP and the injections are the caller's to add.
func (c Config) MFA() mfa.Options {
	o := mfa.DefaultOptions()
	o.Policy = mfa.Policy(c.Policy)
	o.Issuer = c.Issuer
	o.TOTP.Algorithm = totp.Algorithm(c.TOTPAlgorithm)
	o.TOTP.Digits = c.TOTPDigits
	o.Limits = mfa.Limits{MaxFailures: c.MaxFailures, BaseLockout: c.LockoutBase, MaxLockout: c.LockoutMax, FailureTTL: c.FailureTTL}
	o.EnrollmentTTL = c.EnrollmentTTL
	o.ActivationTTL = c.ActivationTTL
	o.FreshVerification = c.FreshVerification
	o.DisableBypass = c.Bypass == "off"
	o.EnrollURL = c.enrollURL()
	o.ReturnURLs = c.ReturnURLs
	return o
}

// Passkey returns the WebAuthn relying party's policy. DecoyKey is the
// caller's to add.
func (c Config) Passkey() passkey.Config {
	return passkey.Config{
		RPID:             c.WebAuthnRPID,
		RPDisplayName:    c.WebAuthnRPName,
		Origins:          c.WebAuthnOrigins,
		UserVerification: c.WebAuthnUserVerification,
		ResidentKey:      c.WebAuthnResidentKey,
		Attestation:      c.WebAuthnAttestation,
		AAGUIDs:          c.WebAuthnAAGUIDs,
		RefuseSynced:     c.WebAuthnRefuseSynced,
		Timeout:          c.WebAuthnTimeout,
	}
}

// enrollURL is the base of the hosted enrolment page, or "" without a
// public URL.
func (c Config) enrollURL() string {
	if c.PublicURL == "" {
		return ""
	}
	return strings.TrimSuffix(c.PublicURL, "/") + "/enroll/"
}

// Validate checks the settings, alone and against each other, and reports
// every problem at once, each naming its flag. The settings of the flows,
// TOTP and WebAuthn are checked by their packages' validators
// (mfa.Options.Validate, which calls totp.Params.Validate and
// mfa.Limits.Validate, and passkey.Config.Validate).
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.DataDir == "" {
		bad("-data-dir: must not be empty")
	}
	c.validateListeners(bad)
	c.validateClientCerts(bad)
	c.validateStore(bad)
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("-public-url %q: want an absolute http(s) URL", c.PublicURL)
		}
	}
	if c.MaxRequestBytes < 1024 || c.MaxRequestBytes > 16<<20 {
		bad("-max-request-bytes %d: want 1024 to 16777216", c.MaxRequestBytes)
	}
	if c.AuditRetention != 0 && c.AuditRetention < MinAuditRetention {
		bad("-audit-retention %v: want 0 (keep for ever) or at least %v", c.AuditRetention, MinAuditRetention)
	}
	if c.Bypass != "on" && c.Bypass != "off" {
		bad("-bypass %q: want on or off", c.Bypass)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("-log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	errs = append(errs, underFlags(c.MFA().Validate())...)
	errs = append(errs, underFlags(c.Passkey().Validate())...)
	errs = append(errs, c.validateWebhook()...)
	return errors.Join(errs...)
}

// validateWebhook checks the webhook's settings (notify.Check) when a URL
// is given, and refuses a secret without one.
func (c Config) validateWebhook() []error {
	if c.WebhookURL == "" {
		if c.WebhookSecret != "" {
			return []error{errors.New("-webhook-secret: needs -webhook-url (the secret signs what is sent there)")}
		}
		return nil
	}
	return underFlags(notify.Check(c.WebhookURL, c.WebhookSecret, c.WebhookTimeout))
}

// validateListeners checks the listen addresses and TLS files.
func (c Config) validateListeners(bad func(format string, args ...any)) {
	if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
		bad("-grpc-addr %q: want host:port", c.GRPCAddr)
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			bad("-http-addr %q: want host:port", c.HTTPAddr)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("-tls-cert and -tls-key: give both or neither")
	}
	if !c.TLS() && !IsLoopback(c.GRPCAddr) {
		bad("-grpc-addr %q is not loopback: plaintext gRPC is refused there; give -tls-cert and -tls-key", c.GRPCAddr)
	}
}

// validateClientCerts checks the settings of callers that authenticate with
// a client certificate: each line of -cert-callers, no identity mapped
// twice, and the TLS settings they depend on.
func (c Config) validateClientCerts(bad func(format string, args ...any)) {
	if c.ClientCA != "" && !c.TLS() {
		bad("-client-ca: needs -tls-cert and -tls-key (client certificates come over TLS)")
	}
	switch {
	case c.ClientCA != "" && len(c.CertCallers) == 0:
		bad("-client-ca: needs -cert-callers (a certificate that maps to no caller is refused)")
	case c.ClientCA == "" && len(c.CertCallers) > 0:
		bad("-cert-callers: needs -client-ca (the CA that signs the callers' certificates)")
	}
	seen := map[string]bool{}
	for _, line := range c.CertCallers {
		match, _, err := grpcapi.ParseCertCaller(line)
		switch {
		case err != nil:
			bad("-cert-callers: %v", err)
		case seen[match]:
			bad("-cert-callers: %s is mapped twice", match)
		default:
			seen[match] = true
		}
	}
}

// validateStore checks the store and the sealing keys.
func (c Config) validateStore(bad func(format string, args ...any)) {
	switch c.Store {
	case "bolt":
	case "redis":
		if len(c.RedisAddrs) == 0 {
			bad("-store redis: -redis-addrs is required")
		}
	default:
		bad("-store %q: want bolt or redis", c.Store)
	}
	if c.SealKeys != "" && c.SealKeyFile != "" {
		bad("-seal-keys and -seal-key-file: give one, not both")
	}
}

// underFlags turns each *mfa.SettingError in err into an error naming the
// flag of the setting.
func underFlags(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range j.Unwrap() {
			errs = append(errs, underFlags(e)...)
		}
		return errs
	}
	var se *mfa.SettingError
	if errors.As(err, &se) {
		if f := flagOf(se.Setting); f != "" {
			return []error{fmt.Errorf("%s %s", f, se.Reason)}
		}
	}
	return []error{err}
}

// flagOf names the flag of a setting that mfa or passkey validates, or ""
// for a setting that is not a flag.
func flagOf(setting string) string { return settingFlags[setting] }

// settingFlags maps the settings that mfa and passkey name in their
// *mfa.SettingError to the flags that set them.
var settingFlags = map[string]string{
	"enrolment policy":           "-enrollment-policy",
	"totp algorithm":             "-totp-algorithm",
	"totp digits":                "-totp-digits",
	"max failures":               "-max-failures",
	"base lockout":               "-lockout-base",
	"max lockout":                "-lockout-max",
	"failure ttl":                "-failure-ttl",
	"enrolment ttl":              "-enrollment-ttl",
	"activation ttl":             "-activation-ttl",
	"fresh verification":         "-fresh-verification",
	"return url":                 "-return-urls",
	"webauthn rp id":             "-webauthn-rp-id",
	"webauthn origins":           "-webauthn-origins",
	"webauthn origin":            "-webauthn-origins",
	"webauthn user verification": "-webauthn-user-verification",
	"webauthn resident key":      "-webauthn-resident-key",
	"webauthn attestation":       "-webauthn-attestation",
	"webauthn aaguid":            "-webauthn-aaguids",
	"webauthn timeout":           "-webauthn-timeout",
	"webhook url":                "-webhook-url",
	"webhook secret":             "-webhook-secret",
	"webhook timeout":            "-webhook-timeout",
}

// TLS reports whether the gRPC server is given a certificate.
func (c Config) TLS() bool { return c.TLSCert != "" }

// LoopbackOnly reports whether every listener is on a loopback address, the
// case where the server may make up a key and a token for a newcomer.
func (c Config) LoopbackOnly() bool {
	return IsLoopback(c.GRPCAddr) && (c.HTTPAddr == "" || IsLoopback(c.HTTPAddr))
}

// IsLoopback reports whether a host:port listens on loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Path returns a file in the data folder.
func (c Config) Path(name string) string { return filepath.Join(c.DataDir, name) }

// Getenv is os.Getenv, the environment Load reads in production.
func Getenv(k string) string { return os.Getenv(k) }
