// Command secondfactord is the secondfactor server: the gRPC API that the
// portal backend and administrators call, with health and metrics over HTTP.
//
// It only wires: config → logger → store → service → servers → graceful
// shutdown on SIGINT or SIGTERM. Run it with -h for the settings.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/credentials"

	"github.com/secondfactor/secondfactor/internal/boltstore"
	"github.com/secondfactor/secondfactor/internal/config"
	"github.com/secondfactor/secondfactor/internal/grpcapi"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/passkey"
	"github.com/secondfactor/secondfactor/internal/redisstore"
	"github.com/secondfactor/secondfactor/internal/seal"
)

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
	log := newLogger(stderr, cfg.LogLevel)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}

	ring, err := loadRing(cfg, log)
	if err != nil {
		return err
	}
	callers, err := loadCallers(cfg, log)
	if err != nil {
		return err
	}
	store, closeStore, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeStore()

	pc := cfg.Passkey()
	pc.DecoyKey = ring.Derive("webauthn decoy credential")
	rp, err := passkey.New(pc)
	if err != nil {
		return fmt.Errorf("webauthn settings (-webauthn-*): %w", err)
	}
	mo := cfg.MFA()
	mo.Store, mo.Ring, mo.RP, mo.Logger = store, ring, rp, log
	svc, err := mfa.New(mo)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var creds credentials.TransportCredentials
	if cfg.TLS() {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		creds = credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	gs := grpcapi.New(grpcapi.Options{
		Service: svc, Callers: callers, Logger: log, TLS: creds,
		MaxRequestBytes: cfg.MaxRequestBytes, Metrics: reg,
	})
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("-grpc-addr: %w", err)
	}
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(lis) }()

	var hs *http.Server
	if cfg.HTTPAddr != "" {
		hl, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			gs.Stop()
			return fmt.Errorf("-http-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- hs.Serve(hl) }()
		log.Info("http listening", "addr", hl.Addr().String())
	}
	if bs, ok := store.(*boltstore.Store); ok {
		go sweep(ctx, bs, cfg.FailureTTL, log)
	}
	log.Info("grpc listening", "addr", lis.Addr().String(), "tls", cfg.TLS(), "store", cfg.Store, "policy", cfg.Policy)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-errc:
		log.Error("server failed", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if hs != nil {
		hs.Shutdown(sctx)
	}
	gs.Shutdown(sctx)
	log.Info("stopped")
	return err
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level)) // validated by config
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// loadRing reads the sealing keys. With none configured, a loopback-only
// embedded run generates a key file in the data folder; anything else
// refuses to start.
func loadRing(cfg config.Config, log *slog.Logger) (*seal.Ring, error) {
	file := cfg.SealKeyFile
	if cfg.SealKeys == "" && file == "" {
		if cfg.Store != "bolt" || !cfg.LoopbackOnly() {
			return nil, errors.New("no sealing key: set SECONDFACTOR_SEAL_KEYS or -seal-key-file (a key is generated only for a loopback-only embedded run)")
		}
		file = cfg.Path("seal.keys")
		err := seal.GenerateKeyFile(file, "k1")
		switch {
		case err == nil:
			log.Warn("GENERATED A SEALING KEY: TOTP secrets are sealed with a key stored beside them. Fine for trying the service on this machine; in production give keys with SECONDFACTOR_SEAL_KEYS or -seal-key-file and keep them away from the data.", "file", file)
		case errors.Is(err, os.ErrExist):
			log.Warn("using the generated sealing key in the data folder: not for production", "file", file)
		default:
			return nil, err
		}
	}
	ring, err := seal.LoadRing(cfg.SealKeys.Reveal(), file)
	if err != nil {
		return nil, fmt.Errorf("sealing keys: %w", err)
	}
	return ring, nil
}

// loadCallers parses the configured callers. With none configured, a
// loopback-only run creates a local token in the data folder.
func loadCallers(cfg config.Config, log *slog.Logger) (grpcapi.Callers, error) {
	callers := grpcapi.Callers{}
	for _, s := range cfg.Callers {
		hash, c, err := grpcapi.ParseCaller(s)
		if err != nil {
			return nil, fmt.Errorf("-callers: %w", err)
		}
		callers[hash] = c
	}
	if len(callers) > 0 {
		return callers, nil
	}
	if !cfg.LoopbackOnly() {
		return nil, errors.New("no API caller: set SECONDFACTOR_CALLERS (secondfactor token new prints a caller line)")
	}
	path := cfg.Path("local-token")
	hash, c, created, err := grpcapi.LocalCaller(path)
	if err != nil {
		return nil, err
	}
	abs, _ := filepath.Abs(path)
	log.Warn("no caller configured: the local token grants roles portal and admin on loopback", "file", abs, "created", created)
	callers[hash] = c
	return callers, nil
}

func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (mfa.Store, func(), error) {
	if cfg.Store == "bolt" {
		path := cfg.Path("secondfactor.db")
		s, err := boltstore.Open(path)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	opts := &redis.UniversalOptions{
		Addrs:      cfg.RedisAddrs,
		MasterName: cfg.RedisMaster,
		Username:   cfg.RedisUsername,
		Password:   cfg.RedisPassword.Reveal(),
		DB:         cfg.RedisDB,
	}
	if cfg.RedisTLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	rdb := redis.NewUniversalClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("redis %v: %w", cfg.RedisAddrs, err)
	}
	log.Info("redis connected", "addrs", cfg.RedisAddrs, "sentinel_master", cfg.RedisMaster)
	return redisstore.New(rdb), func() { rdb.Close() }, nil
}

// sweep deletes expired records of the embedded store every ten minutes.
func sweep(ctx context.Context, s *boltstore.Store, failureTTL time.Duration, log *slog.Logger) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := s.Sweep(now, failureTTL)
			if err != nil {
				log.Error("sweep", "err", err)
			} else if n > 0 {
				log.Info("swept expired records", "deleted", n)
			}
		}
	}
}
