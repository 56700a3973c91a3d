// Package servertest runs the real server (server.New) on loopback
// listeners for the length of a test, so that every end-to-end test starts
// the service exactly as secondfactord does.
package servertest

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/secondfactor/secondfactor/internal/config"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/server"
)

// Config returns the settings of a test server: the defaults, a temporary
// data folder, no HTTP listener and a fixed (all-zero) sealing key.
func Config(t testing.TB) config.Config {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = ""
	cfg.SealKeys = secret.String("k1:" + base64.StdEncoding.EncodeToString(make([]byte, 32)))
	return cfg
}

// Addrs are where a started server listens.
type Addrs struct {
	GRPC string
	HTTP string // empty when cfg.HTTPAddr was empty
}

// Start builds the server of cfg with server.New and serves it on fresh
// loopback listeners (the addresses in cfg are ignored, but an empty
// cfg.HTTPAddr still means no HTTP listener) until the test ends, when it
// shuts it down and reports any serving error. log nil discards the log.
func Start(t testing.TB, cfg config.Config, log *slog.Logger, opts ...server.Option) Addrs {
	t.Helper()
	if log == nil {
		log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	srv, err := server.New(t.Context(), cfg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	ls := server.Listeners{GRPC: listen()}
	addrs := Addrs{GRPC: ls.GRPC.Addr().String()}
	if cfg.HTTPAddr != "" {
		ls.HTTP = listen()
		addrs.HTTP = ls.HTTP.Addr().String()
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ls) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return addrs
}
