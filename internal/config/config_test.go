package config_test

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/config"
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
		EnrollmentTTL:     15 * time.Minute,
		ActivationTTL:     time.Hour,
		FreshVerification: 5 * time.Minute,
		MaxRequestBytes:   64 << 10,
		LogLevel:          "info",

		WebAuthnRPID:             "localhost",
		WebAuthnRPName:           "secondfactor",
		WebAuthnOrigins:          []string{"http://localhost:7080"},
		WebAuthnUserVerification: "preferred",
		WebAuthnResidentKey:      "discouraged",
		WebAuthnAttestation:      "none",
		WebAuthnTimeout:          5 * time.Minute,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults mismatch (-want +got):\n%s", diff)
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
		GRPCAddr, HTTPAddr, TLSCert, TLSKey, Store, RedisPassword string
		RedisAddrs, ReturnURLs                                    []string
		RedisDB, TOTPDigits, MaxFailures                          int
		RedisTLS                                                  bool
		Policy, TOTPAlgorithm, PublicURL, LogLevel                string
		LockoutBase, LockoutMax                                   time.Duration
	}
	want := subset{
		GRPCAddr: "0.0.0.0:9000", HTTPAddr: "127.0.0.1:9001", TLSCert: "/etc/sf/cert.pem", TLSKey: "/etc/sf/key.pem",
		Store: "redis", RedisPassword: "pw",
		RedisAddrs: []string{"r1:6379", "r2:6379"},
		ReturnURLs: []string{"https://app.example.org/done", "https://other.example.org/"},
		RedisDB:    3, TOTPDigits: 8, MaxFailures: 5, RedisTLS: true,
		Policy: "strong-only", TOTPAlgorithm: "SHA256", PublicURL: "https://mfa.example.org", LogLevel: "debug",
		LockoutBase: time.Minute, LockoutMax: 2 * time.Hour,
	}
	gotSubset := subset{
		got.GRPCAddr, got.HTTPAddr, got.TLSCert, got.TLSKey, got.Store, got.RedisPassword,
		got.RedisAddrs, got.ReturnURLs,
		got.RedisDB, got.TOTPDigits, got.MaxFailures,
		got.RedisTLS,
		got.Policy, got.TOTPAlgorithm, got.PublicURL, got.LogLevel,
		got.LockoutBase, got.LockoutMax,
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

func TestLoadInvalid(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // the flag the error must name
	}{
		{"non-loopback grpc without TLS", []string{"-grpc-addr", "0.0.0.0:7070"}, "-grpc-addr"},
		{"all interfaces grpc without TLS", []string{"-grpc-addr", ":7070"}, "-grpc-addr"},
		{"grpc addr without port", []string{"-grpc-addr", "127.0.0.1"}, "-grpc-addr"},
		{"http addr without port", []string{"-http-addr", "localhost"}, "-http-addr"},
		{"tls cert without key", []string{"-tls-cert", "c.pem"}, "-tls-key"},
		{"tls key without cert", []string{"-tls-key", "k.pem"}, "-tls-cert"},
		{"redis without addrs", []string{"-store", "redis"}, "-redis-addrs"},
		{"unknown store", []string{"-store", "memory"}, "-store"},
		{"seal keys and file", []string{"-seal-keys", "k:AAAA", "-seal-key-file", "f"}, "-seal-key-file"},
		{"bad policy", []string{"-enrollment-policy", "anything"}, "-enrollment-policy"},
		{"bad algorithm", []string{"-totp-algorithm", "MD5"}, "-totp-algorithm"},
		{"lower-case algorithm", []string{"-totp-algorithm", "sha1"}, "-totp-algorithm"},
		{"7 digits", []string{"-totp-digits", "7"}, "-totp-digits"},
		{"max failures 0", []string{"-max-failures", "0"}, "-max-failures"},
		{"lockout max below base", []string{"-lockout-base", "2m", "-lockout-max", "1m"}, "-lockout-max"},
		{"lockout base 0", []string{"-lockout-base", "0s"}, "-lockout-base"},
		{"enrollment ttl 0", []string{"-enrollment-ttl", "0s"}, "-enrollment-ttl"},
		{"activation ttl over a week", []string{"-activation-ttl", "169h"}, "-activation-ttl"},
		{"fresh verification negative", []string{"-fresh-verification", "-1s"}, "-fresh-verification"},
		{"public url without scheme", []string{"-public-url", "mfa.example.org"}, "-public-url"},
		{"public url ftp", []string{"-public-url", "ftp://mfa.example.org"}, "-public-url"},
		{"public url unparsable", []string{"-public-url", "https://exa mple.org/%zz"}, "-public-url"},
		{"relative return url", []string{"-return-urls", "/done"}, "-return-urls"},
		{"javascript return url", []string{"-return-urls", "https://ok.example/,javascript:alert(1)"}, "-return-urls"},
		{"max request bytes too small", []string{"-max-request-bytes", "100"}, "-max-request-bytes"},
		{"bad log level", []string{"-log-level", "verbose"}, "-log-level"},
		{"empty data dir", []string{"-data-dir", ""}, "-data-dir"},
		{"positional argument", []string{"serve"}, "serve"},
		{"unknown flag", []string{"-no-such-flag"}, "no-such-flag"},
		{"bad int flag", []string{"-totp-digits", "six"}, "-totp-digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.args, nil)
			if err == nil {
				t.Fatalf("Load(%q) = nil error, want one naming %s", tt.args, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%q) error = %q, want it to name %s", tt.args, err, tt.want)
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
