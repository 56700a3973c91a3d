package config_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/config"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/passkey"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/totp"
)

// env returns a getenv over a fixed map, so no test reads the process
// environment.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func load(t *testing.T, args []string, vars map[string]string) (config.Config, error) {
	t.Helper()
	var out bytes.Buffer
	return config.Load("secondfactord", args, env(vars), &out)
}

func TestLoadDefaults(t *testing.T) {
	got, err := load(t, nil, nil)
	if err != nil {
		t.Fatalf("Load with no args and no env: %v", err)
	}
	want := config.Config{
		DataDir:           "data",
		GRPCAddr:          "127.0.0.1:7070",
		HTTPAddr:          "127.0.0.1:7080",
		Store:             "bolt",
		Policy:            "activation-code",
		Issuer:            "secondfactor",
		TOTPAlgorithm:     "SHA1",
		TOTPDigits:        6,
		MaxFailures:       10,
		LockoutBase:       30 * time.Second,
		LockoutMax:        time.Hour,
		FailureTTL:        24 * time.Hour,
		EnrollmentTTL:     15 * time.Minute,
		ActivationTTL:     time.Hour,
		FreshVerification: 5 * time.Minute,
		Bypass:            "on",
		MaxRequestBytes:   64 << 10,
		LogLevel:          "info",
		AuditRetention:    400 * 24 * time.Hour,

		WebAuthnRPID:             "localhost",
		WebAuthnRPName:           "secondfactor",
		WebAuthnOrigins:          []string{"http://localhost:7080"},
		WebAuthnUserVerification: "preferred",
		WebAuthnResidentKey:      "discouraged",
		WebAuthnAttestation:      "none",
		WebAuthnTimeout:          5 * time.Minute,

		WebhookTimeout: 10 * time.Second,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(got, config.Default()); diff != "" {
		t.Errorf("Default() differs from Load with nothing set (-Load +Default):\n%s", diff)
	}
	if !got.LoopbackOnly() {
		t.Error("default config is not LoopbackOnly")
	}
	if got.TLS() {
		t.Error("default config has TLS")
	}
	if p := got.Path("seal.keys"); p != "data/seal.keys" {
		t.Errorf("Path(seal.keys) = %q, want data/seal.keys", p)
	}
}

func TestLoadEnv(t *testing.T) {
	vars := map[string]string{
		"SECONDFACTOR_GRPC_ADDR":         "0.0.0.0:9000",
		"SECONDFACTOR_TLS_CERT":          "/etc/sf/cert.pem",
		"SECONDFACTOR_TLS_KEY":           "/etc/sf/key.pem",
		"SECONDFACTOR_HTTP_ADDR":         "127.0.0.1:9001",
		"SECONDFACTOR_STORE":             "redis",
		"SECONDFACTOR_REDIS_ADDRS":       "r1:6379, r2:6379",
		"SECONDFACTOR_REDIS_PASSWORD":    "pw",
		"SECONDFACTOR_REDIS_DB":          "3",
		"SECONDFACTOR_REDIS_TLS":         "true",
		"SECONDFACTOR_ENROLLMENT_POLICY": "strong-only",
		"SECONDFACTOR_TOTP_ALGORITHM":    "SHA256",
		"SECONDFACTOR_TOTP_DIGITS":       "8",
		"SECONDFACTOR_MAX_FAILURES":      "5",
		"SECONDFACTOR_LOCKOUT_BASE":      "1m",
		"SECONDFACTOR_LOCKOUT_MAX":       "2h",
		"SECONDFACTOR_FAILURE_TTL":       "12h",
		"SECONDFACTOR_SEAL_KEYS":         "k1:c2VhbA==",
		"SECONDFACTOR_PUBLIC_URL":        "https://mfa.example.org",
		"SECONDFACTOR_RETURN_URLS":       "https://app.example.org/done,https://other.example.org/",
		"SECONDFACTOR_LOG_LEVEL":         "debug",
		"GRPC_ADDR":                      "ignored:1", // no prefix
	}
	got, err := load(t, nil, vars)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	type subset struct {
		GRPCAddr, HTTPAddr, TLSCert, TLSKey, Store string
		RedisPassword, SealKeys                    secret.String
		RedisAddrs, ReturnURLs                     []string
		RedisDB, TOTPDigits, MaxFailures           int
		RedisTLS                                   bool
		Policy, TOTPAlgorithm, PublicURL, LogLevel string
		LockoutBase, LockoutMax, FailureTTL        time.Duration
	}
	want := subset{
		GRPCAddr: "0.0.0.0:9000", HTTPAddr: "127.0.0.1:9001", TLSCert: "/etc/sf/cert.pem", TLSKey: "/etc/sf/key.pem",
		Store: "redis", RedisPassword: "pw", SealKeys: "k1:c2VhbA==",
		RedisAddrs: []string{"r1:6379", "r2:6379"},
		ReturnURLs: []string{"https://app.example.org/done", "https://other.example.org/"},
		RedisDB:    3, TOTPDigits: 8, MaxFailures: 5, RedisTLS: true,
		Policy: "strong-only", TOTPAlgorithm: "SHA256", PublicURL: "https://mfa.example.org", LogLevel: "debug",
		LockoutBase: time.Minute, LockoutMax: 2 * time.Hour, FailureTTL: 12 * time.Hour,
	}
	gotSubset := subset{
		got.GRPCAddr, got.HTTPAddr, got.TLSCert, got.TLSKey, got.Store,
		got.RedisPassword, got.SealKeys,
		got.RedisAddrs, got.ReturnURLs,
		got.RedisDB, got.TOTPDigits, got.MaxFailures,
		got.RedisTLS,
		got.Policy, got.TOTPAlgorithm, got.PublicURL, got.LogLevel,
		got.LockoutBase, got.LockoutMax, got.FailureTTL,
	}
	if diff := cmp.Diff(want, gotSubset); diff != "" {
		t.Errorf("env settings mismatch (-want +got):\n%s", diff)
	}
	if got.LoopbackOnly() {
		t.Error("LoopbackOnly() with gRPC on 0.0.0.0 = true, want false")
	}
}

func TestFlagWinsOverEnv(t *testing.T) {
	vars := map[string]string{
		"SECONDFACTOR_GRPC_ADDR":   "127.0.0.1:9000",
		"SECONDFACTOR_TOTP_DIGITS": "8",
		"SECONDFACTOR_CALLERS":     "env:portal:" + strings.Repeat("a", 64),
		"SECONDFACTOR_LOG_LEVEL":   "bogus", // would fail if read
		"SECONDFACTOR_ISSUER":      "From Env",
	}
	args := []string{"-grpc-addr", "127.0.0.1:9100", "-totp-digits=6", "-callers", "flag:admin:" + strings.Repeat("b", 64), "-log-level", "warn"}
	got, err := load(t, args, vars)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	type subset struct {
		GRPCAddr   string
		TOTPDigits int
		Callers    []string
		LogLevel   string
		Issuer     string
	}
	want := subset{"127.0.0.1:9100", 6, []string{"flag:admin:" + strings.Repeat("b", 64)}, "warn", "From Env"}
	if diff := cmp.Diff(want, subset{got.GRPCAddr, got.TOTPDigits, got.Callers, got.LogLevel, got.Issuer}); diff != "" {
		t.Errorf("flag over env mismatch (-want +got):\n%s", diff)
	}
}

func TestListFlags(t *testing.T) {
	h := func(c byte) string { return strings.Repeat(string(c), 64) }
	tests := []struct {
		name        string
		args        []string
		vars        map[string]string
		wantCallers []string
		wantReturn  []string
	}{
		{
			name:        "repeated flag",
			args:        []string{"-callers", "a:portal:" + h('a'), "-callers", "b:admin:" + h('b')},
			wantCallers: []string{"a:portal:" + h('a'), "b:admin:" + h('b')},
		},
		{
			name:        "comma-separated with spaces and empty items",
			args:        []string{"-callers", " a:portal:" + h('a') + " ,, b:admin:" + h('b') + ","},
			wantCallers: []string{"a:portal:" + h('a'), "b:admin:" + h('b')},
		},
		{
			name:        "repeated and comma-separated",
			args:        []string{"-callers", "a:portal:" + h('a') + ",b:admin:" + h('b'), "-callers=c:portal+admin:" + h('c')},
			wantCallers: []string{"a:portal:" + h('a'), "b:admin:" + h('b'), "c:portal+admin:" + h('c')},
		},
		{
			name:       "return urls from env",
			vars:       map[string]string{"SECONDFACTOR_RETURN_URLS": "https://a.example/x, https://b.example/y"},
			wantReturn: []string{"https://a.example/x", "https://b.example/y"},
		},
		{
			name:       "return urls flag replaces env",
			args:       []string{"-return-urls", "https://c.example/"},
			vars:       map[string]string{"SECONDFACTOR_RETURN_URLS": "https://a.example/x"},
			wantReturn: []string{"https://c.example/"},
		},
		{
			name:        "callers from env",
			vars:        map[string]string{"SECONDFACTOR_CALLERS": "a:portal:" + h('a') + ",b:admin:" + h('b')},
			wantCallers: []string{"a:portal:" + h('a'), "b:admin:" + h('b')},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := load(t, tt.args, tt.vars)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(tt.wantCallers, got.Callers); diff != "" {
				t.Errorf("Callers mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantReturn, got.ReturnURLs); diff != "" {
				t.Errorf("ReturnURLs mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoadInvalid: each bad setting is refused with a message naming its
// flag, and every problem is reported at once: want is the whole error, one
// line per problem.
func TestLoadInvalid(t *testing.T) {
	tlsArgs := []string{"-tls-cert", "c.pem", "-tls-key", "k.pem", "-client-ca", "ca.pem"}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"non-loopback grpc without TLS", []string{"-grpc-addr", "0.0.0.0:7070"}, []string{
			`-grpc-addr "0.0.0.0:7070" is not loopback: plaintext gRPC is refused there; give -tls-cert and -tls-key`,
		}},
		{"all interfaces grpc without TLS", []string{"-grpc-addr", ":7070"}, []string{
			`-grpc-addr ":7070" is not loopback: plaintext gRPC is refused there; give -tls-cert and -tls-key`,
		}},
		{"grpc addr without port", []string{"-grpc-addr", "127.0.0.1"}, []string{
			`-grpc-addr "127.0.0.1": want host:port`,
			`-grpc-addr "127.0.0.1" is not loopback: plaintext gRPC is refused there; give -tls-cert and -tls-key`,
		}},
		{"http addr without port", []string{"-http-addr", "localhost"}, []string{`-http-addr "localhost": want host:port`}},
		{"tls cert without key", []string{"-tls-cert", "c.pem"}, []string{"-tls-cert and -tls-key: give both or neither"}},
		{"tls key without cert", []string{"-tls-key", "k.pem"}, []string{"-tls-cert and -tls-key: give both or neither"}},
		{"client ca without tls", []string{"-client-ca", "ca.pem", "-cert-callers", "web:portal:cn=web"}, []string{
			"-client-ca: needs -tls-cert and -tls-key (client certificates come over TLS)",
		}},
		{"client ca without cert callers", []string{"-tls-cert", "c.pem", "-tls-key", "k.pem", "-client-ca", "ca.pem"}, []string{
			"-client-ca: needs -cert-callers (a certificate that maps to no caller is refused)",
		}},
		{"cert callers without client ca", []string{"-tls-cert", "c.pem", "-tls-key", "k.pem", "-cert-callers", "web:portal:cn=web"}, []string{
			"-cert-callers: needs -client-ca (the CA that signs the callers' certificates)",
		}},
		{"bad cert callers, each reported", slices.Concat(tlsArgs, []string{"-cert-callers", "web:root:cn=web,ops:admin:ip=10.0.0.1,web:portal,a:portal:uri=/rel"}), []string{
			`-cert-callers: caller "web": role "root": want portal, admin or portal+admin`,
			`-cert-callers: caller "ops": match "ip=10.0.0.1": want cn=, dns=, uri= or email= and a value`,
			"-cert-callers: certificate caller: 2 fields separated by ':', want NAME:ROLE[+ROLE]:MATCH",
			`-cert-callers: caller "a": match "uri=/rel": want an absolute URI such as spiffe://example.org/portal`,
		}},
		{"identity mapped twice", slices.Concat(tlsArgs, []string{"-cert-callers", "web:portal:dns=web.example", "-cert-callers", "ops:admin:dns=web.example"}), []string{
			"-cert-callers: dns=web.example is mapped twice",
		}},
		{"redis without addrs", []string{"-store", "redis"}, []string{"-store redis: -redis-addrs is required"}},
		{"unknown store", []string{"-store", "memory"}, []string{`-store "memory": want bolt or redis`}},
		{"seal keys and file", []string{"-seal-keys", "k:AAAA", "-seal-key-file", "f"}, []string{"-seal-keys and -seal-key-file: give one, not both"}},
		{"bad policy", []string{"-enrollment-policy", "anything"}, []string{`-enrollment-policy "anything": want activation-code, strong-only or open`}},
		{"bad algorithm", []string{"-totp-algorithm", "MD5"}, []string{`-totp-algorithm "MD5": want SHA1, SHA256 or SHA512`}},
		{"lower-case algorithm", []string{"-totp-algorithm", "sha1"}, []string{`-totp-algorithm "sha1": want SHA1, SHA256 or SHA512`}},
		{"7 digits", []string{"-totp-digits", "7"}, []string{"-totp-digits 7: want 6 or 8"}},
		{"max failures 0", []string{"-max-failures", "0"}, []string{"-max-failures 0: want at least 1"}},
		{"lockout max below base", []string{"-lockout-base", "2m", "-lockout-max", "1m"}, []string{"-lockout-max 1m0s: want at least the base lockout, 2m0s"}},
		{"lockout base 0", []string{"-lockout-base", "0s"}, []string{"-lockout-base 0s: want more than 0"}},
		{"failure ttl 0", []string{"-failure-ttl", "0s"}, []string{"-failure-ttl 0s: want more than 0"}},
		{"enrollment ttl 0", []string{"-enrollment-ttl", "0s"}, []string{"-enrollment-ttl 0s: want more than 0 and at most 168h0m0s"}},
		{"activation ttl over a week", []string{"-activation-ttl", "169h"}, []string{"-activation-ttl 169h0m0s: want more than 0 and at most 168h0m0s"}},
		{"fresh verification negative", []string{"-fresh-verification", "-1s"}, []string{"-fresh-verification -1s: want more than 0 and at most 168h0m0s"}},
		{"public url without scheme", []string{"-public-url", "mfa.example.org"}, []string{`-public-url "mfa.example.org": want an absolute http(s) URL`}},
		{"public url ftp", []string{"-public-url", "ftp://mfa.example.org"}, []string{`-public-url "ftp://mfa.example.org": want an absolute http(s) URL`}},
		{"public url unparsable", []string{"-public-url", "https://exa mple.org/%zz"}, []string{`-public-url "https://exa mple.org/%zz": want an absolute http(s) URL`}},
		{"relative return url", []string{"-return-urls", "/done"}, []string{`-return-urls "/done": want an absolute http(s) URL`}},
		{"javascript return url", []string{"-return-urls", "https://ok.example/,javascript:alert(1)"}, []string{`-return-urls "javascript:alert(1)": want an absolute http(s) URL`}},
		{"max request bytes too small", []string{"-max-request-bytes", "100"}, []string{"-max-request-bytes 100: want 1024 to 16777216"}},
		{"bad bypass", []string{"-bypass", "yes"}, []string{`-bypass "yes": want on or off`}},
		{"audit retention under a day", []string{"-audit-retention", "23h"}, []string{"-audit-retention 23h0m0s: want 0 (keep for ever) or at least 24h0m0s"}},
		{"audit retention negative", []string{"-audit-retention", "-24h"}, []string{"-audit-retention -24h0m0s: want 0 (keep for ever) or at least 24h0m0s"}},
		{"bad log level", []string{"-log-level", "verbose"}, []string{`-log-level "verbose": want debug, info, warn or error`}},
		{"empty data dir", []string{"-data-dir", ""}, []string{"-data-dir: must not be empty"}},
		{"rp id with a scheme", []string{"-webauthn-rp-id", "https://portal.example", "-webauthn-origins", "https://portal.example"}, []string{
			`-webauthn-rp-id "https://portal.example": want a domain such as portal.example`,
			`-webauthn-origins "https://portal.example": its host is not https://portal.example or a subdomain of it`,
		}},
		{"plain http origin", []string{"-webauthn-rp-id", "portal.example", "-webauthn-origins", "http://portal.example"}, []string{
			`-webauthn-origins "http://portal.example": want https (http only for localhost)`,
		}},
		{"bad user verification", []string{"-webauthn-user-verification", "always"}, []string{`-webauthn-user-verification "always": want preferred, required or discouraged`}},
		{"bad resident key", []string{"-webauthn-resident-key", "yes"}, []string{`-webauthn-resident-key "yes": want discouraged, preferred or required`}},
		{"bad attestation", []string{"-webauthn-attestation", "full"}, []string{`-webauthn-attestation "full": want none, indirect, direct or enterprise`}},
		{"bad aaguid", []string{"-webauthn-aaguids", "nope"}, []string{`-webauthn-aaguids "nope": want 32 hex digits`}},
		{"webauthn timeout too short", []string{"-webauthn-timeout", "1s"}, []string{"-webauthn-timeout 1s: want 10s to 30m"}},
		{"positional argument", []string{"serve"}, []string{`unexpected argument "serve" (flags only; see -h)`}},
		{"unknown flag", []string{"-no-such-flag"}, []string{"flag provided but not defined: -no-such-flag"}},
		{"bad int flag", []string{"-totp-digits", "six"}, []string{`invalid value "six" for flag -totp-digits: parse error`}},
		{"every kind of problem at once", []string{
			"-data-dir", "", "-grpc-addr", "0.0.0.0:7070", "-store", "memory", "-enrollment-policy", "lax",
			"-totp-algorithm", "MD5", "-totp-digits", "7", "-max-failures", "0", "-lockout-base", "2m", "-lockout-max", "1m",
			"-failure-ttl", "-1h", "-enrollment-ttl", "0s", "-activation-ttl", "169h", "-fresh-verification", "-1s",
			"-public-url", "ftp://x.example", "-return-urls", "/done", "-max-request-bytes", "100", "-log-level", "loud",
			"-webauthn-user-verification", "always", "-webauthn-timeout", "1h",
		}, []string{
			"-data-dir: must not be empty",
			`-grpc-addr "0.0.0.0:7070" is not loopback: plaintext gRPC is refused there; give -tls-cert and -tls-key`,
			`-store "memory": want bolt or redis`,
			`-public-url "ftp://x.example": want an absolute http(s) URL`,
			"-max-request-bytes 100: want 1024 to 16777216",
			`-log-level "loud": want debug, info, warn or error`,
			`-enrollment-policy "lax": want activation-code, strong-only or open`,
			`-totp-algorithm "MD5": want SHA1, SHA256 or SHA512`,
			"-totp-digits 7: want 6 or 8",
			"-max-failures 0: want at least 1",
			"-lockout-max 1m0s: want at least the base lockout, 2m0s",
			"-failure-ttl -1h0m0s: want more than 0",
			"-enrollment-ttl 0s: want more than 0 and at most 168h0m0s",
			"-activation-ttl 169h0m0s: want more than 0 and at most 168h0m0s",
			"-fresh-verification -1s: want more than 0 and at most 168h0m0s",
			`-return-urls "/done": want an absolute http(s) URL`,
			`-webauthn-user-verification "always": want preferred, required or discouraged`,
			"-webauthn-timeout 1h0m0s: want 10s to 30m",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.args, nil)
			if err == nil {
				t.Fatalf("Load(%q) = nil error, want %q", tt.args, tt.want)
			}
			if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("Load(%q) error mismatch (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

func TestLoadValidNonLoopbackWithTLS(t *testing.T) {
	got, err := load(t, []string{"-grpc-addr", "0.0.0.0:7070", "-tls-cert", "c.pem", "-tls-key", "k.pem"}, nil)
	if err != nil {
		t.Fatalf("Load non-loopback with TLS: %v", err)
	}
	if !got.TLS() {
		t.Error("TLS() = false with -tls-cert and -tls-key")
	}
}

// TestLoadClientCerts: the client CA and the certificate callers come from
// flags or variables, the callers comma-separated like -callers.
func TestLoadClientCerts(t *testing.T) {
	vars := map[string]string{
		"SECONDFACTOR_TLS_CERT":     "c.pem",
		"SECONDFACTOR_TLS_KEY":      "k.pem",
		"SECONDFACTOR_CLIENT_CA":    "/etc/sf/callers-ca.pem",
		"SECONDFACTOR_CERT_CALLERS": "web:portal:dns=web.example, ops:admin:uri=spiffe://example.org/ops",
	}
	got, err := load(t, []string{"-cert-callers", "bot:portal+admin:email=bot@example.org"}, vars)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.ClientCA != "/etc/sf/callers-ca.pem" {
		t.Errorf("ClientCA = %q, want the variable's", got.ClientCA)
	}
	if diff := cmp.Diff([]string{"bot:portal+admin:email=bot@example.org"}, got.CertCallers); diff != "" {
		t.Errorf("CertCallers: the flag should replace the variable (-want +got):\n%s", diff)
	}
	got, err = load(t, nil, vars)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := []string{"web:portal:dns=web.example", "ops:admin:uri=spiffe://example.org/ops"}
	if diff := cmp.Diff(want, got.CertCallers); diff != "" {
		t.Errorf("CertCallers from the variable mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadBadEnv(t *testing.T) {
	// A value that does not parse is reported under the variable's name; one
	// that parses but is refused, under the flag's.
	tests := []struct {
		name, key, value, want string
	}{
		{"int", "SECONDFACTOR_TOTP_DIGITS", "eight", "SECONDFACTOR_TOTP_DIGITS"},
		{"redis db", "SECONDFACTOR_REDIS_DB", "x", "SECONDFACTOR_REDIS_DB"},
		{"bool", "SECONDFACTOR_REDIS_TLS", "sometimes", "SECONDFACTOR_REDIS_TLS"},
		{"duration", "SECONDFACTOR_LOCKOUT_MAX", "an hour", "SECONDFACTOR_LOCKOUT_MAX"},
		{"validated string", "SECONDFACTOR_LOG_LEVEL", "loud", "-log-level"},
		{"validated int", "SECONDFACTOR_MAX_FAILURES", "0", "-max-failures"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, nil, map[string]string{tt.key: tt.value})
			if err == nil {
				t.Fatalf("Load with %s=%q = nil error, want one", tt.key, tt.value)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) {
				t.Errorf("Load with %s=%q error = %q, want it to name %s", tt.key, tt.value, msg, tt.want)
			}
		})
	}
}

func TestLoadHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		var out bytes.Buffer
		_, err := config.Load("secondfactord", []string{arg}, env(nil), &out)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("Load(%s) error = %v, want flag.ErrHelp", arg, err)
		}
		usage := out.String()
		for _, want := range []string{"secondfactord", "SECONDFACTOR_", "-grpc-addr", "-enrollment-policy"} {
			if !strings.Contains(usage, want) {
				t.Errorf("Load(%s) usage does not mention %q:\n%s", arg, want, usage)
			}
		}
	}
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:7070", true},
		{"127.1.2.3:7070", true},
		{"[::1]:7070", true},
		{"localhost:7070", true},
		{"0.0.0.0:7070", false},
		{"10.0.0.1:7070", false},
		{"[::]:7070", false},
		{"[2001:db8::1]:7070", false},
		{":7070", false}, // empty host listens on every interface
		{"example.org:7070", false},
		{"127.0.0.1", false}, // no port
		{"::1", false},       // no brackets, no port
		{"", false},
	}
	for _, tt := range tests {
		if got := config.IsLoopback(tt.addr); got != tt.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestLoopbackOnly(t *testing.T) {
	tests := []struct {
		grpc, http string
		want       bool
	}{
		{"127.0.0.1:7070", "127.0.0.1:7080", true},
		{"127.0.0.1:7070", "", true},
		{"127.0.0.1:7070", ":7080", false},
		{"0.0.0.0:7070", "127.0.0.1:7080", false},
	}
	for _, tt := range tests {
		c := config.Config{GRPCAddr: tt.grpc, HTTPAddr: tt.http}
		if got := c.LoopbackOnly(); got != tt.want {
			t.Errorf("Config{GRPCAddr: %q, HTTPAddr: %q}.LoopbackOnly() = %v, want %v", tt.grpc, tt.http, got, tt.want)
		}
	}
}

// TestSecretsNotPrinted: the Redis password and the sealing keys show in no
// printed or logged form of a Config, nor in the usage text.
func TestSecretsNotPrinted(t *testing.T) {
	const password, keys = "redis-pass-word-1234", "k1:c2VhbGluZy1rZXktbWF0ZXJpYWw="
	c, err := load(t, []string{"-redis-password", password}, map[string]string{"SECONDFACTOR_SEAL_KEYS": keys})
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisPassword.Reveal() != password || c.SealKeys.Reveal() != keys {
		t.Fatalf("RedisPassword %q, SealKeys %q: the values were not kept", c.RedisPassword.Reveal(), c.SealKeys.Reveal())
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", c)
	var usage bytes.Buffer
	if _, err := config.Load("secondfactord", []string{"-redis-password", password, "-h"}, env(map[string]string{"SECONDFACTOR_SEAL_KEYS": keys}), &usage); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Load -h: %v, want flag.ErrHelp", err)
	}
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), logged.String(), usage.String()} {
		for _, s := range []string{password, keys, "c2VhbGluZy1rZXktbWF0ZXJpYWw="} {
			if strings.Contains(out, s) {
				t.Errorf("a secret shows in %s", out)
			}
		}
	}
	if !strings.Contains(fmt.Sprintf("%+v", c), "RedisPassword:"+secret.Redacted) {
		t.Errorf("%%+v of a Config does not show RedisPassword as %s: %+v", secret.Redacted, c)
	}
}

// TestDefaultsComeFromPackages: with nothing set, the settings handed to the
// flows and to the relying party are the packages' own defaults.
func TestDefaultsComeFromPackages(t *testing.T) {
	c := config.Default()
	if diff := cmp.Diff(mfa.DefaultOptions(), c.MFA()); diff != "" {
		t.Errorf("Default().MFA() differs from mfa.DefaultOptions() (-want +got):\n%s", diff)
	}
	want := passkey.DefaultConfig()
	want.RPID, want.RPDisplayName, want.Origins = "localhost", "secondfactor", []string{"http://localhost:7080"}
	if diff := cmp.Diff(want, c.Passkey()); diff != "" {
		t.Errorf("Default().Passkey() mismatch (-want +got):\n%s", diff)
	}
}

// TestMFAAndPasskey: every flag reaches the setting it names.
func TestMFAAndPasskey(t *testing.T) {
	c, err := load(t, []string{
		"-enrollment-policy", "strong-only", "-issuer", "Portail Pro", "-totp-algorithm", "SHA512", "-totp-digits", "8",
		"-max-failures", "3", "-lockout-base", "1m", "-lockout-max", "2h", "-failure-ttl", "3h",
		"-enrollment-ttl", "20m", "-activation-ttl", "2h", "-fresh-verification", "1m", "-bypass", "off",
		"-public-url", "https://mfa.example.org/", "-return-urls", "https://portal.example/done",
		"-webauthn-rp-id", "portal.example", "-webauthn-rp-name", "Portail", "-webauthn-origins", "https://portal.example",
		"-webauthn-user-verification", "required", "-webauthn-resident-key", "preferred", "-webauthn-attestation", "direct",
		"-webauthn-aaguids", "00112233445566778899aabbccddeeff", "-webauthn-refuse-synced", "-webauthn-timeout", "2m",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantMFA := mfa.DefaultOptions()
	wantMFA.Policy, wantMFA.Issuer = mfa.PolicyStrongOnly, "Portail Pro"
	wantMFA.TOTP = totp.Params{Algorithm: totp.SHA512, Digits: 8, Period: totp.DefaultParams().Period}
	wantMFA.Limits = mfa.Limits{MaxFailures: 3, BaseLockout: time.Minute, MaxLockout: 2 * time.Hour, FailureTTL: 3 * time.Hour}
	wantMFA.EnrollmentTTL, wantMFA.ActivationTTL, wantMFA.FreshVerification = 20*time.Minute, 2*time.Hour, time.Minute
	wantMFA.EnrollURL = "https://mfa.example.org/enroll/"
	wantMFA.ReturnURLs = []string{"https://portal.example/done"}
	wantMFA.DisableBypass = true
	if diff := cmp.Diff(wantMFA, c.MFA()); diff != "" {
		t.Errorf("MFA() mismatch (-want +got):\n%s", diff)
	}
	wantPK := passkey.Config{
		RPID: "portal.example", RPDisplayName: "Portail", Origins: []string{"https://portal.example"},
		UserVerification: "required", ResidentKey: "preferred", Attestation: "direct",
		AAGUIDs: []string{"00112233445566778899aabbccddeeff"}, RefuseSynced: true, Timeout: 2 * time.Minute,
	}
	if diff := cmp.Diff(wantPK, c.Passkey()); diff != "" {
		t.Errorf("Passkey() mismatch (-want +got):\n%s", diff)
	}
	c.PublicURL = "https://mfa.example.org/sf"
	if got, want := c.MFA().EnrollURL, "https://mfa.example.org/sf/enroll/"; got != want {
		t.Errorf("EnrollURL of a public URL without a final slash = %q, want %q", got, want)
	}
}

// TestAuditRetentionAccepted: 0 (keep for ever) and exactly a day are
// accepted, from a flag or the environment.
func TestAuditRetentionAccepted(t *testing.T) {
	for v, want := range map[string]time.Duration{"0": 0, "24h": 24 * time.Hour, "8760h": 365 * 24 * time.Hour} {
		got, err := load(t, []string{"-audit-retention", v}, nil)
		if err != nil {
			t.Fatalf("-audit-retention %s: %v", v, err)
		}
		if got.AuditRetention != want {
			t.Errorf("-audit-retention %s: %v, want %v", v, got.AuditRetention, want)
		}
	}
	got, err := load(t, nil, map[string]string{"SECONDFACTOR_AUDIT_RETENTION": "0s"})
	if err != nil || got.AuditRetention != 0 {
		t.Fatalf("SECONDFACTOR_AUDIT_RETENTION=0s: %v, %v; want 0", got.AuditRetention, err)
	}
}
