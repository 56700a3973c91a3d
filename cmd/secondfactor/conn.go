package main

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

// Connection defaults, shared with secondfactord.
const (
	defaultAddr      = "127.0.0.1:7070"
	defaultTokenFile = "data/local-token"
)

// connFlags are the flags of every subcommand that calls the server.
type connFlags struct {
	addr       string
	tokenFile  string
	forceTLS   bool
	caFile     string
	serverName string
	timeout    time.Duration
}

// addConnFlags defines the connection flags on fs, with defaults from the
// environment.
func (a *app) addConnFlags(fs *flag.FlagSet) *connFlags {
	c := &connFlags{}
	fs.StringVar(&c.addr, "addr", a.envOr("SECONDFACTOR_ADDR", defaultAddr),
		"server gRPC `host:port` (env SECONDFACTOR_ADDR); plaintext only on loopback, TLS otherwise")
	fs.StringVar(&c.tokenFile, "token-file", a.envOr("SECONDFACTOR_TOKEN_FILE", defaultTokenFile),
		"`file` holding the bearer token, used when SECONDFACTOR_TOKEN is unset (env SECONDFACTOR_TOKEN_FILE)")
	fs.BoolVar(&c.forceTLS, "tls", false, "use TLS even on a loopback address")
	fs.StringVar(&c.caFile, "ca", "", "PEM `file` of the CA that signed the server certificate (default: system roots)")
	fs.StringVar(&c.serverName, "tls-server-name", "", "`name` to check in the server certificate (default: the host of -addr)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of each call to the server")
	return c
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

// conn is an open connection to the server.
type conn struct {
	*grpc.ClientConn
	timeout time.Duration
}

// call returns a context for one call to the server, with the -timeout deadline.
func (c *conn) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// dial checks the flags, reads the token and opens a client connection.
// grpc.NewClient connects lazily: a server that is down shows up as
// Unavailable on the first call.
func (a *app) dial(c *connFlags) (*conn, error) {
	if host, _, err := net.SplitHostPort(c.addr); err != nil || host == "" {
		return nil, usageErrorf("-addr %q: want host:port", c.addr)
	}
	if c.timeout <= 0 {
		return nil, usageErrorf("-timeout must be positive")
	}
	useTLS := c.useTLS()

	token, source, err := a.loadToken(c.tokenFile)
	if err != nil {
		return nil, err
	}

	var creds credentials.TransportCredentials
	if useTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.serverName}
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				return nil, fmt.Errorf("read -ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("read -ca %s: no PEM certificate in it", c.caFile)
			}
		}
		creds = credentials.NewTLS(cfg)
	} else {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient(c.addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(bearer{token: token, requireTLS: useTLS}),
		grpc.WithUserAgent("secondfactor-cli"),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", c.addr, err)
	}
	a.tokenSource = source
	return &conn{ClientConn: cc, timeout: c.timeout}, nil
}

// useTLS reports whether to use TLS: always but to a loopback address (as
// the server defines it), and there too with -tls, -ca or -tls-server-name.
// The bearer token never crosses a network in clear.
func (c *connFlags) useTLS() bool {
	return c.forceTLS || c.caFile != "" || c.serverName != "" || !config.IsLoopback(c.addr)
}

// loadToken returns the bearer token, from SECONDFACTOR_TOKEN or else from
// file, and a description of where it came from (never the token itself).
func (a *app) loadToken(file string) (token, source string, err error) {
	if t := strings.TrimSpace(a.getenv("SECONDFACTOR_TOKEN")); t != "" {
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
