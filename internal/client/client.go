// Package client opens the gRPC connection through which the command-line
// tools (secondfactor, secondfactor-loadgen) call secondfactord: the address,
// the bearer token and the choice of TLS, with the same flags in each tool.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/secondfactor/secondfactor/internal/config"
)

// Connection defaults: secondfactord's own, run from the same folder.
const (
	DefaultAddr      = config.DefaultGRPCAddr
	DefaultTokenFile = config.DefaultDataDir + "/" + config.LocalTokenFile
)

// Target says where the server is and how to authenticate to it.
type Target struct {
	Addr       string
	TokenFile  string
	ForceTLS   bool
	CAFile     string
	ServerName string
	Timeout    time.Duration
}

// AddFlags defines the connection flags on fs, their defaults taken from
// getenv (SECONDFACTOR_ADDR, SECONDFACTOR_TOKEN_FILE).
func (t *Target) AddFlags(fs *flag.FlagSet, getenv func(string) string) {
	envOr := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&t.Addr, "addr", envOr("SECONDFACTOR_ADDR", DefaultAddr),
		"server gRPC `host:port` (env SECONDFACTOR_ADDR); plaintext only on loopback, TLS otherwise")
	fs.StringVar(&t.TokenFile, "token-file", envOr("SECONDFACTOR_TOKEN_FILE", DefaultTokenFile),
		"`file` holding the bearer token, used when SECONDFACTOR_TOKEN is unset (env SECONDFACTOR_TOKEN_FILE)")
	fs.BoolVar(&t.ForceTLS, "tls", false, "use TLS even on a loopback address")
	fs.StringVar(&t.CAFile, "ca", "", "PEM `file` of the CA that signed the server certificate (default: system roots)")
	fs.StringVar(&t.ServerName, "tls-server-name", "", "`name` to check in the server certificate (default: the host of -addr)")
	fs.DurationVar(&t.Timeout, "timeout", 10*time.Second, "deadline of each call to the server")
}

// Check reports a target that cannot be dialled, naming the flag.
func (t Target) Check() error {
	if host, _, err := net.SplitHostPort(t.Addr); err != nil || host == "" {
		return fmt.Errorf("-addr %q: want host:port", t.Addr)
	}
	if t.Timeout <= 0 {
		return errors.New("-timeout must be positive")
	}
	return nil
}

// UseTLS reports whether to use TLS: always but to a loopback address (as
// the server defines it), and there too with -tls, -ca or -tls-server-name.
// The bearer token never crosses a network in clear.
func (t Target) UseTLS() bool {
	return t.ForceTLS || t.CAFile != "" || t.ServerName != "" || !config.IsLoopback(t.Addr)
}

// Conn is an open connection to the server.
type Conn struct {
	*grpc.ClientConn
	// TokenSource says where the bearer token came from (never the token).
	TokenSource string
	timeout     time.Duration
}

// Call returns a context for one call to the server, with the target's
// deadline.
func (c *Conn) Call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// Dial reads the bearer token (SECONDFACTOR_TOKEN from getenv, else the
// target's token file) and opens a client connection. grpc.NewClient
// connects lazily: a server that is down shows up as Unavailable on the
// first call. Check the target first.
func Dial(t Target, getenv func(string) string, userAgent string) (*Conn, error) {
	token, source, err := LoadToken(getenv, t.TokenFile)
	if err != nil {
		return nil, err
	}
	useTLS := t.UseTLS()
	var creds credentials.TransportCredentials
	if useTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read -ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("read -ca %s: no PEM certificate in it", t.CAFile)
			}
		}
		creds = credentials.NewTLS(cfg)
	} else {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient(t.Addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(bearer{token: token, requireTLS: useTLS}),
		grpc.WithUserAgent(userAgent),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", t.Addr, err)
	}
	return &Conn{ClientConn: cc, TokenSource: source, timeout: t.Timeout}, nil
}

// LoadToken returns the bearer token, from SECONDFACTOR_TOKEN or else from
// file, and a description of where it came from (never the token itself).
func LoadToken(getenv func(string) string, file string) (token, source string, err error) {
	if t := strings.TrimSpace(getenv("SECONDFACTOR_TOKEN")); t != "" {
		token, source = t, "SECONDFACTOR_TOKEN"
	} else {
		if file == "" {
			return "", "", errors.New("no bearer token: set SECONDFACTOR_TOKEN or -token-file")
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", "", fmt.Errorf("no bearer token: SECONDFACTOR_TOKEN is unset and %w", err)
		}
		token, source = strings.TrimSpace(string(b)), file
		if token == "" {
			return "", "", fmt.Errorf("no bearer token: %s is empty", file)
		}
	}
	for i := 0; i < len(token); i++ {
		if token[i] <= ' ' || token[i] > '~' {
			return "", "", fmt.Errorf("bearer token from %s: not printable ASCII without spaces", source)
		}
	}
	return token, source, nil
}

// bearer sends the caller's token with every call.
type bearer struct {
	token      string
	requireTLS bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.requireTLS }

// String keeps the token out of anything that prints a bearer.
func (b bearer) String() string { return "bearer(REDACTED)" }
