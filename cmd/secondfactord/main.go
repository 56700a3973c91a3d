// Command secondfactord is the secondfactor server: the gRPC API that the
// portal backend and administrators call, with health and metrics over HTTP.
//
// It only wires: config → logger → server (package server assembles it) →
// serve → graceful shutdown on SIGINT or SIGTERM. Run it with -h for the
// settings.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/secondfactor/secondfactor/internal/config"
	"github.com/secondfactor/secondfactor/internal/server"
)

// shutdownTimeout bounds the graceful stop; calls still running then are cut.
const shutdownTimeout = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], config.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "secondfactord:", err)
		os.Exit(1)
	}
}

// run starts the server and blocks until ctx ends, then shuts down.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.Load("secondfactord", args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	var opts []server.Option
	if len(cfg.Callers) == 0 && len(cfg.CertCallers) == 0 && cfg.LoopbackOnly() {
		opt, err := localToken(cfg, log)
		if err != nil {
			return err
		}
		opts = append(opts, opt)
	}
	srv, err := server.New(ctx, cfg, log, opts...)
	if err != nil {
		return err
	}
	lis, err := listen(cfg)
	if err != nil {
		return errors.Join(err, srv.Shutdown(ctx))
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	stopped := false
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-served:
		stopped = true
		log.Error("server failed", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		log.Error("shutdown", "err", serr)
		err = errors.Join(err, serr)
	}
	if !stopped {
		err = errors.Join(err, <-served)
	}
	log.Info("stopped")
	return err
}

// newLogger is the one logger of the server: JSON lines at the configured
// level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// localToken admits the caller of the local token in the data folder,
// creating it on the first run: with no caller configured, a loopback-only
// server serves the CLI on the same machine.
func localToken(cfg config.Config, log *slog.Logger) (server.Option, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	path := cfg.Path(config.LocalTokenFile)
	hash, c, created, err := localCaller(path)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	log.Warn("no caller configured: the local token grants roles portal and admin on loopback", "file", abs, "created", created)
	return server.WithCaller(hash, c), nil
}

// listen opens the listeners cfg names.
func listen(cfg config.Config) (server.Listeners, error) {
	var l server.Listeners
	var err error
	if l.GRPC, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return l, fmt.Errorf("-grpc-addr: %w", err)
	}
	if cfg.HTTPAddr != "" {
		if l.HTTP, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return l, errors.Join(fmt.Errorf("-http-addr: %w", err), l.GRPC.Close())
		}
	}
	return l, nil
}
