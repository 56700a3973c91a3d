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
)

// Config is everything the server is told.
type Config struct {
	DataDir  string
	GRPCAddr string
	HTTPAddr string
	TLSCert  string
	TLSKey   string

	Store         string // "bolt" or "redis"
	RedisAddrs    []string
	RedisMaster   string // Sentinel master name
	RedisUsername string
	RedisPassword string
	RedisDB       int
	RedisTLS      bool

	Callers     []string // NAME:ROLE[+ROLE]:SHA256HEX
	SealKeys    string   // id:base64key,...
	SealKeyFile string

	Policy            string
	Issuer            string
	TOTPAlgorithm     string
	TOTPDigits        int
	MaxFailures       int
	LockoutBase       time.Duration
	LockoutMax        time.Duration
	EnrollmentTTL     time.Duration
	ActivationTTL     time.Duration
	FreshVerification time.Duration
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
}

// EnvPrefix starts the name of every environment variable.
const EnvPrefix = "SECONDFACTOR_"

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

// Load parses args (without the program name) and the environment given as
// getenv. Usage and errors go to out.
func Load(name string, args []string, getenv func(string) string, out io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.DataDir, "data-dir", "data", "folder for the embedded store, generated keys and the local token")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", "127.0.0.1:7070", "gRPC listen address; anything but loopback needs -tls-cert and -tls-key")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:7080", "HTTP listen address for /healthz and /metrics; off (or empty) to disable")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate file (PEM) for the gRPC server")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key file (PEM) for the gRPC server")
	fs.StringVar(&c.Store, "store", "bolt", "state store: bolt (embedded file in -data-dir, one node) or redis (several replicas)")
	fs.Var(listFlag{&c.RedisAddrs}, "redis-addrs", "Redis addresses host:port, comma-separated: one for standalone, several for Cluster, Sentinels with -redis-master")
	fs.StringVar(&c.RedisMaster, "redis-master", "", "Sentinel master name (makes -redis-addrs the Sentinels)")
	fs.StringVar(&c.RedisUsername, "redis-username", "", "Redis ACL user name")
	fs.StringVar(&c.RedisPassword, "redis-password", "", "Redis password (prefer the environment variable)")
	fs.IntVar(&c.RedisDB, "redis-db", 0, "Redis database number (standalone and Sentinel)")
	fs.BoolVar(&c.RedisTLS, "redis-tls", false, "connect to Redis over TLS")
	fs.Var(listFlag{&c.Callers}, "callers", "API callers NAME:ROLE[+ROLE]:SHA256HEX, comma-separated (secondfactor token new prints one); none on loopback: a local token is generated")
	fs.StringVar(&c.SealKeys, "seal-keys", "", "keys that seal TOTP secrets, id:base64key comma-separated, first seals (prefer the environment variable)")
	fs.StringVar(&c.SealKeyFile, "seal-key-file", "", "file of sealing keys, one id:base64key per line, first seals")
	fs.StringVar(&c.Policy, "enrollment-policy", "activation-code", "what a password-only session may enrol: activation-code, strong-only, or open (UNSAFE: a stolen password enrols a factor)")
	fs.StringVar(&c.Issuer, "issuer", "secondfactor", "issuer name shown in authenticator apps")
	fs.StringVar(&c.TOTPAlgorithm, "totp-algorithm", "SHA1", "HMAC of new TOTP factors: SHA1, SHA256 or SHA512 (many apps only know SHA1)")
	fs.IntVar(&c.TOTPDigits, "totp-digits", 6, "digits of new TOTP codes: 6 or 8")
	fs.IntVar(&c.MaxFailures, "max-failures", 10, "consecutive failed attempts that lock a user's TOTP")
	fs.DurationVar(&c.LockoutBase, "lockout-base", 30*time.Second, "first lock; each further lock doubles it")
	fs.DurationVar(&c.LockoutMax, "lockout-max", time.Hour, "longest lock")
	fs.DurationVar(&c.EnrollmentTTL, "enrollment-ttl", 15*time.Minute, "lifetime of an enrolment session")
	fs.DurationVar(&c.ActivationTTL, "activation-ttl", time.Hour, "lifetime of an activation code")
	fs.DurationVar(&c.FreshVerification, "fresh-verification", 5*time.Minute, "how recent a verification must be to back PROOF_EXISTING_FACTOR")
	fs.StringVar(&c.PublicURL, "public-url", "", "public base URL of the web UI, e.g. https://mfa.example.org (enrolment links)")
	fs.Var(listFlag{&c.ReturnURLs}, "return-urls", "allowed return URLs after enrolment or verification, exact match, comma-separated")
	fs.StringVar(&c.WebAuthnRPID, "webauthn-rp-id", "localhost", "WebAuthn relying party ID: the portal's domain, e.g. portal.example (not an IP address)")
	fs.StringVar(&c.WebAuthnRPName, "webauthn-rp-name", "secondfactor", "WebAuthn relying party name shown by browsers")
	fs.Var(listFlag{&c.WebAuthnOrigins}, "webauthn-origins", "origins allowed in WebAuthn ceremonies, exact, comma-separated: https://…, or http://localhost:PORT for development (default http://localhost:7080)")
	fs.StringVar(&c.WebAuthnUserVerification, "webauthn-user-verification", "preferred", "WebAuthn user verification (PIN, biometrics): preferred, required or discouraged")
	fs.StringVar(&c.WebAuthnResidentKey, "webauthn-resident-key", "discouraged", "WebAuthn discoverable credentials: discouraged, preferred or required")
	fs.StringVar(&c.WebAuthnAttestation, "webauthn-attestation", "none", "WebAuthn attestation conveyance: none, indirect, direct or enterprise")
	fs.Var(listFlag{&c.WebAuthnAAGUIDs}, "webauthn-aaguids", "if set, the only authenticator models (AAGUIDs, hex) accepted at registration, comma-separated")
	fs.BoolVar(&c.WebAuthnRefuseSynced, "webauthn-refuse-synced", false, "refuse backup-eligible (synced) passkeys: only device-bound keys")
	fs.DurationVar(&c.WebAuthnTimeout, "webauthn-timeout", 5*time.Minute, "lifetime of a WebAuthn challenge")
	fs.IntVar(&c.MaxRequestBytes, "max-request-bytes", 64<<10, "largest gRPC request accepted")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(out, `%s: the secondfactor server (gRPC API for the portal and admins).

With no flags it runs on loopback with the embedded store in ./data, generates
a sealing key and a local API token there (printed paths), and is ready for
the quickstart. Every flag -some-name can also be set as SECONDFACTOR_SOME_NAME.

Flags:
`, name)
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
				err = fmt.Errorf("%s: %v", env, e)
			}
		}
	})
	if err != nil {
		return Config{}, err
	}
	if c.HTTPAddr == "off" {
		c.HTTPAddr = ""
	}
	if len(c.WebAuthnOrigins) == 0 {
		c.WebAuthnOrigins = []string{"http://localhost:7080"}
	}
	return c, c.Validate()
}

// Validate checks the settings against each other.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.DataDir == "" {
		bad("-data-dir: must not be empty")
	}
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
	switch c.Policy {
	case "activation-code", "strong-only", "open":
	default:
		bad("-enrollment-policy %q: want activation-code, strong-only or open", c.Policy)
	}
	switch c.TOTPAlgorithm {
	case "SHA1", "SHA256", "SHA512":
	default:
		bad("-totp-algorithm %q: want SHA1, SHA256 or SHA512", c.TOTPAlgorithm)
	}
	if c.TOTPDigits != 6 && c.TOTPDigits != 8 {
		bad("-totp-digits %d: want 6 or 8", c.TOTPDigits)
	}
	if c.MaxFailures < 1 {
		bad("-max-failures %d: want at least 1", c.MaxFailures)
	}
	if c.LockoutBase <= 0 || c.LockoutMax < c.LockoutBase {
		bad("-lockout-base %s, -lockout-max %s: want 0 < base ≤ max", c.LockoutBase, c.LockoutMax)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-enrollment-ttl", c.EnrollmentTTL}, {"-activation-ttl", c.ActivationTTL}, {"-fresh-verification", c.FreshVerification}} {
		if d.v <= 0 || d.v > 7*24*time.Hour {
			bad("%s %s: want between 0 and 168h", d.name, d.v)
		}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("-public-url %q: want an absolute http(s) URL", c.PublicURL)
		}
	}
	for _, r := range c.ReturnURLs {
		if u, err := url.Parse(r); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("-return-urls: %q is not an absolute http(s) URL", r)
		}
	}
	if c.MaxRequestBytes < 1024 || c.MaxRequestBytes > 16<<20 {
		bad("-max-request-bytes %d: want 1024 to 16777216", c.MaxRequestBytes)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("-log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return errors.Join(errs...)
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
