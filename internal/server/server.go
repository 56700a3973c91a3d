// Package server assembles the secondfactor server from its configuration:
// the store, the sealing keys, the WebAuthn relying party, the flows, the
// gRPC API, and the HTTP endpoints for health and metrics. The command
// secondfactord and the end-to-end tests build the server with the same
// function, New; what tests change (the clock, an open store) they pass as
// options.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
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
	"github.com/secondfactor/secondfactor/internal/notify"
	"github.com/secondfactor/secondfactor/internal/passkey"
	"github.com/secondfactor/secondfactor/internal/redisstore"
	"github.com/secondfactor/secondfactor/internal/seal"
)

const (
	// redisPingTimeout bounds the first round trip to Redis at start-up.
	redisPingTimeout = 5 * time.Second
	// sweepEvery is how often expired records leave the embedded store.
	sweepEvery = 10 * time.Minute
	// readHeaderTimeout bounds a client's request headers on the HTTP side.
	readHeaderTimeout = 10 * time.Second
	// pruneBatch is how many audit events one PruneEvents of the retention
	// removes at most.
	pruneBatch = 1000
)

// Option changes how New builds a server, for what a Config cannot say.
type Option func(*options)

type options struct {
	now     func() time.Time
	store   mfa.Store
	callers grpcapi.Callers
}

// WithClock makes the flows read the time from now instead of time.Now, so
// that a test moves time by hand.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithStore makes the server use a store that is already open instead of
// opening the one the Config names. The server does not close it.
func WithStore(s mfa.Store) Option {
	return func(o *options) { o.store = s }
}

// WithCaller admits one more API caller, beside those of the Config's
// Callers, by the hash of its bearer token (secret.Hash).
func WithCaller(hash string, c grpcapi.Caller) Option {
	return func(o *options) {
		if o.callers == nil {
			o.callers = grpcapi.Callers{}
		}
		o.callers[hash] = c
	}
}

// Server is an assembled server, ready to Serve.
type Server struct {
	log        *slog.Logger
	now        func() time.Time
	tls        bool
	store      string // the kind, for the log
	policy     string
	grpc       *grpcapi.Server
	http       *http.Server
	bolt       *boltstore.Store // the embedded store New opened, swept while serving; nil otherwise
	failureTTL time.Duration
	closeStore func() error // nil for a store given WithStore
	outbox     mfa.Outbox
	deliverer  *notify.Deliverer // nil without -webhook-url
	audit      pruner
	retention  time.Duration // -audit-retention; 0 keeps the audit events

	stop         chan struct{}  // closed by Shutdown
	loops        sync.WaitGroup // the loops that use the store: Shutdown waits for them before closing it
	shutdownOnce sync.Once
	shutdownErr  error
}

// New validates cfg and builds the server it describes: it creates the data
// folder, loads the sealing keys (generating a key file for a loopback-only
// embedded run that has none), parses the callers, opens the store (pinging
// Redis, and pointing the Redis client's process-wide logger at log), and
// builds the relying party, the flows, the gRPC server with its TLS and
// client CAs, and the HTTP handler. Nothing listens until Serve. On error,
// whatever New opened is closed.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	ring, err := loadRing(cfg, log)
	if err != nil {
		return nil, err
	}
	callers, err := parseCallers(cfg.Callers, cfg.CertCallers, o.callers)
	if err != nil {
		return nil, err
	}
	s := &Server{
		log: log, now: o.now, tls: cfg.TLS(), store: cfg.Store, policy: cfg.Policy,
		failureTTL: cfg.FailureTTL, retention: cfg.AuditRetention, stop: make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	store := o.store
	if store == nil {
		if store, err = s.openStore(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if err := s.build(cfg, store, ring, callers); err != nil {
		if s.closeStore != nil {
			err = errors.Join(err, s.closeStore())
		}
		return nil, err
	}
	return s, nil
}

// build makes the relying party, the flows and the two servers.
func (s *Server) build(cfg config.Config, store mfa.Store, ring *seal.Ring, callers grpcapi.Callers) error {
	pc := cfg.Passkey()
	pc.DecoyKey = ring.Derive("webauthn decoy credential")
	rp, err := passkey.New(pc)
	if err != nil {
		return fmt.Errorf("webauthn settings (-webauthn-*): %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "secondfactor_audit_events_total",
		Help: "Audit events by action and result: verifications by method and verdict (verify.*), locks (user.locked), suspensions (factor.suspended), resets, ...",
	}, []string{"action", "result"})
	reg.MustRegister(events)
	mo := cfg.MFA()
	mo.Store, mo.Ring, mo.RP, mo.Logger, mo.Now = store, ring, rp, s.log, s.now
	mo.OnEvent = func(e mfa.Event) { events.WithLabelValues(string(e.Action), e.Result).Inc() }
	svc, err := mfa.New(mo)
	if err != nil {
		return err
	}
	creds, err := serverTLS(cfg)
	if err != nil {
		return err
	}
	s.outbox, s.audit = store, store
	if cfg.WebhookURL != "" {
		s.deliverer, err = notify.New(notify.Options{
			Outbox: store, URL: cfg.WebhookURL, Secret: cfg.WebhookSecret, Timeout: cfg.WebhookTimeout,
			Now: s.now, Logger: s.log, Metrics: reg,
		})
		if err != nil {
			return err
		}
	}
	s.grpc = grpcapi.New(grpcapi.Options{
		Service: svc, Callers: callers, Logger: s.log, TLS: creds,
		MaxRequestBytes: cfg.MaxRequestBytes, Metrics: reg,
	})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := io.WriteString(w, "ok\n"); err != nil {
			s.log.Debug("healthz: write", "err", err)
		}
	})
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
	return nil
}

// serverTLS is the TLS of the gRPC server, nil without -tls-cert. With
// -client-ca, a caller may present a client certificate, which must then
// verify against those CAs (expired, not yet valid and foreign certificates
// fail the handshake); a caller without one still connects, and
// authenticates with a bearer token.
func serverTLS(cfg config.Config) (credentials.TransportCredentials, error) {
	if !cfg.TLS() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.ClientCA != "" {
		pem, err := os.ReadFile(cfg.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-client-ca %s: no PEM certificate in it", cfg.ClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return credentials.NewTLS(tc), nil
}

// Listeners are where a Server serves.
type Listeners struct {
	GRPC net.Listener // the API
	HTTP net.Listener // health and metrics; nil serves none
}

// Serve serves the API on l.GRPC and, if it is not nil, health and metrics
// on l.HTTP, sweeps the embedded store it opened, removes the audit events
// older than the retention, and delivers the outbox's notifications to the
// webhook (without one, drops those older than notify.GiveUp, which no
// replica would send any more), until Shutdown;
// call it once. It refuses a gRPC listener that is not on loopback when the
// server has no TLS. It returns nil once Shutdown has stopped the servers,
// or the error of the first one that fails; after a failure, call Shutdown.
// The listeners are closed when it returns.
func (s *Server) Serve(l Listeners) error {
	addr := l.GRPC.Addr().String()
	if !s.tls && !config.IsLoopback(addr) {
		err := fmt.Errorf("grpc listener %s is not loopback: plaintext gRPC is refused there", addr)
		for _, lis := range []net.Listener{l.GRPC, l.HTTP} {
			if lis != nil {
				err = errors.Join(err, lis.Close())
			}
		}
		return err
	}
	// The store's loops first: once the API answers, they run.
	s.startLoops()
	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(l.GRPC) }()
	if l.HTTP != nil {
		go func() {
			err := s.http.Serve(l.HTTP)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errc <- err
		}()
		s.log.Info("http listening", "addr", l.HTTP.Addr().String())
	}
	if s.bolt != nil {
		go s.sweep()
	}
	s.log.Info("grpc listening", "addr", addr, "tls", s.tls, "store", s.store, "policy", s.policy, "webhook", s.deliverer != nil)
	return <-errc
}

// Shutdown stops the servers gracefully, at once when ctx ends first, lets
// a webhook delivery in flight finish (until ctx ends), then closes the
// store New opened. Only the first call does anything.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		close(s.stop)
		err := s.http.Shutdown(ctx)
		s.grpc.Shutdown(ctx)
		loops := make(chan struct{})
		go func() { s.loops.Wait(); close(loops) }()
		select {
		case <-loops:
		case <-ctx.Done():
			s.log.Warn("shutdown: webhook delivery still in flight; its notifications are sent again when their lease ends")
		}
		if s.closeStore != nil {
			err = errors.Join(err, s.closeStore())
		}
		s.shutdownErr = err
	})
	return s.shutdownErr
}

// sweep deletes expired records of the embedded store every sweepEvery,
// until Shutdown.
func (s *Server) sweep() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			n, err := s.bolt.Sweep(s.now(), s.failureTTL)
			if err != nil {
				s.log.Error("sweep", "err", err)
			} else if n > 0 {
				s.log.Info("swept expired records", "deleted", n)
			}
		}
	}
}

// startLoops starts the loops that use the store until Shutdown: the audit
// retention's, and the outbox's: the webhook's deliverer, or, without a
// webhook, the drop of notifications nobody will send.
func (s *Server) startLoops() {
	ctx, cancel := context.WithCancel(context.Background())
	s.loops.Go(func() {
		<-s.stop
		cancel()
	})
	if s.retention > 0 {
		s.loops.Go(func() { s.pruneAudit(ctx) })
	} else {
		s.log.Info("-audit-retention 0: audit events are kept for ever")
	}
	if s.deliverer != nil {
		s.loops.Go(func() { s.deliverer.Run(ctx) })
		return
	}
	s.log.Info("no -webhook-url: notifications are not sent; the outbox drops them after " + notify.GiveUp.String())
	s.loops.Go(func() { s.dropNotifications(ctx) })
}

// dropNotifications removes, every sweepEvery until ctx ends, the
// notifications older than notify.GiveUp: a webhook replica would have
// given them up; without one the outbox would only grow.
func (s *Server) dropNotifications(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		// Not cut by Shutdown: a drop begun ends, before the store closes.
		n, err := s.outbox.DropNotifications(context.WithoutCancel(ctx), s.now().Add(-notify.GiveUp))
		switch {
		case err != nil:
			s.log.Error("drop old notifications", "err", err)
		case n > 0:
			s.log.Info("dropped notifications nobody sent", "dropped", n, "older_than", notify.GiveUp)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruner is the part of the store the audit retention uses.
type pruner interface {
	PruneEvents(ctx context.Context, before time.Time, max int) (int, error)
}

// pruneAudit removes the audit events older than the retention at once,
// then every sweepEvery until ctx ends.
func (s *Server) pruneAudit(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		s.pruneAuditOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruneAuditOnce removes the audit events older than the retention, by the
// server's clock, pruneBatch at a time until a batch removes fewer. A batch
// begun ends, before the store closes; once ctx ends, no other begins.
func (s *Server) pruneAuditOnce(ctx context.Context) {
	before := s.now().Add(-s.retention)
	removed := 0
	for {
		n, err := s.audit.PruneEvents(context.WithoutCancel(ctx), before, pruneBatch)
		removed += n
		if err != nil {
			s.log.Error("prune audit events", "err", err, "removed", removed)
			return
		}
		if n < pruneBatch || ctx.Err() != nil {
			break
		}
	}
	if removed > 0 {
		s.log.Info("pruned audit events past the retention", "removed", removed, "before", before, "retention", s.retention)
	}
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

// parseCallers reads the configured callers, by bearer token and by client
// certificate, and adds the extra ones. A server with no caller at all is
// refused: nobody could call it.
func parseCallers(tokens, certs []string, extra grpcapi.Callers) (grpcapi.Callers, error) {
	callers := grpcapi.Callers{}
	for _, line := range tokens {
		hash, c, err := grpcapi.ParseCaller(line)
		if err != nil {
			return nil, fmt.Errorf("-callers: %w", err)
		}
		callers[hash] = c
	}
	for _, line := range certs {
		match, c, err := grpcapi.ParseCertCaller(line)
		if err != nil {
			return nil, fmt.Errorf("-cert-callers: %w", err)
		}
		callers[match] = c
	}
	for hash, c := range extra {
		callers[hash] = c
	}
	if len(callers) == 0 {
		return nil, errors.New("no API caller: set SECONDFACTOR_CALLERS (secondfactor token new prints a caller line) or SECONDFACTOR_CERT_CALLERS")
	}
	return callers, nil
}

// redisLogger writes what the Redis client logs on its own (a pool that
// cannot dial, a connection dropped) as warnings through slog, where the
// default would print plain text to stderr.
type redisLogger struct{ log *slog.Logger }

// Printf logs one line of the Redis client.
func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	l.log.LogAttrs(ctx, slog.LevelWarn, "redis client", slog.String("detail", msg))
}

// openStore opens the store cfg names and keeps how to close it. For Redis
// it sends the client's own log lines to the server's logger: go-redis has
// one logger per process (redis.SetLogger), so every Redis client of the
// process, whichever server opened it, logs to the logger of the last
// server that opened Redis.
func (s *Server) openStore(ctx context.Context, cfg config.Config) (mfa.Store, error) {
	if cfg.Store == "bolt" {
		b, err := boltstore.Open(cfg.Path("secondfactor.db"))
		if err != nil {
			return nil, err
		}
		s.bolt, s.closeStore = b, b.Close
		return b, nil
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
	redis.SetLogger(redisLogger{s.log})
	rdb := redis.NewUniversalClient(opts)
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		return nil, errors.Join(fmt.Errorf("redis %v: %w", cfg.RedisAddrs, err), rdb.Close())
	}
	s.log.Info("redis connected", "addrs", cfg.RedisAddrs, "sentinel_master", cfg.RedisMaster)
	s.closeStore = rdb.Close
	return redisstore.New(rdb), nil
}
