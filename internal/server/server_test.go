package server_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/boltstore"
	"github.com/secondfactor/secondfactor/internal/config"
	"github.com/secondfactor/secondfactor/internal/grpcapi"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/server"
)

const (
	configToken = "config-caller-token-0123456789"
	extraToken  = "extra-caller-token-0123456789"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testConfig is a loopback server on the embedded store in a fresh folder,
// with a sealing key and one caller.
func testConfig(t *testing.T) config.Config {
	c := config.Default()
	c.DataDir = t.TempDir()
	c.SealKeys = secret.String("k1:" + base64.StdEncoding.EncodeToString(make([]byte, 32)))
	c.Callers = []string{"portal:portal:" + secret.Hash(configToken)}
	return c
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	})
	return conn
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	return string(b)
}

// TestServeAndShutdown: the server built from a Config answers the API (for
// the configured caller and one added WithCaller), the gRPC health service,
// /healthz and /metrics; Shutdown stops it and closes the store it opened.
func TestServeAndShutdown(t *testing.T) {
	cfg := testConfig(t)
	srv, err := server.New(t.Context(), cfg, discard(),
		server.WithCaller(secret.Hash(extraToken), grpcapi.Caller{Name: "extra", Roles: []grpcapi.Role{grpcapi.RolePortal}}))
	if err != nil {
		t.Fatal(err)
	}
	gl, hl := listen(t), listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(server.Listeners{GRPC: gl, HTTP: hl}) }()

	conn := dial(t, gl.Addr().String())
	ctx := t.Context()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: sfv1.SecondFactorService_ServiceDesc.ServiceName})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v %v, want SERVING", h, err)
	}
	portal := sfv1.NewSecondFactorServiceClient(conn)
	for _, tok := range []string{configToken, extraToken} {
		if _, err := portal.GetUser(ctx, &sfv1.GetUserRequest{UserId: "u1"}, grpc.PerRPCCredentials(bearer(tok))); err != nil {
			t.Errorf("GetUser as a caller: %v", err)
		}
	}
	base := "http://" + hl.Addr().String()
	if got := get(t, base+"/healthz"); got != "ok\n" {
		t.Errorf("/healthz = %q, want ok", got)
	}
	if got := get(t, base+"/metrics"); !strings.Contains(got, "secondfactor_grpc_request_duration_seconds") || !strings.Contains(got, "go_goroutines") {
		t.Errorf("/metrics lacks the RPC and Go metrics:\n%s", got)
	}

	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after Shutdown: %v, want nil", err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	// The store file is free again: the server closed it.
	s, err := boltstore.Open(cfg.Path("secondfactor.db"))
	if err != nil {
		t.Fatalf("the store is still held after Shutdown: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWithStore: a store given WithStore is used instead of opening one, and
// is left open.
func TestWithStore(t *testing.T) {
	cfg := testConfig(t)
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "given.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	srv, err := server.New(t.Context(), cfg, discard(), server.WithStore(store))
	if err != nil {
		t.Fatal(err)
	}
	gl := listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(server.Listeners{GRPC: gl}) }()
	portal := sfv1.NewSecondFactorServiceClient(dial(t, gl.Addr().String()))
	_, err = portal.CreateEnrollment(t.Context(), &sfv1.CreateEnrollmentRequest{UserId: "u1", Proof: sfv1.Proof_PROOF_STRONG}, grpc.PerRPCCredentials(bearer(configToken)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Path("secondfactor.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the configured store file was created (%v): the given store should be used instead", err)
	}
	if _, err := store.User(t.Context(), "u1"); err != nil {
		t.Errorf("the given store after Shutdown: %v, want it still open", err)
	}
}

// TestNewRefuses: New refuses what would not run, and closes what it
// opened before the refusal.
func TestNewRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*config.Config)
		want string
	}{
		{"invalid settings, all reported", func(c *config.Config) { c.MaxFailures, c.LogLevel = 0, "loud" }, "-log-level \"loud\": want debug, info, warn or error\n-max-failures 0: want at least 1"},
		{"no caller", func(c *config.Config) { c.Callers = nil }, "no API caller"},
		{"bad caller", func(c *config.Config) { c.Callers = []string{"portal:root:abc"} }, "-callers: caller"},
		{"redis without sealing keys", func(c *config.Config) { c.SealKeys, c.Store, c.RedisAddrs = "", "redis", []string{"127.0.0.1:1"} }, "no sealing key"},
		{"bad sealing key", func(c *config.Config) { c.SealKeys = "k1:c2hvcnQ=" }, "sealing keys"},
		{"missing TLS files", func(c *config.Config) { c.TLSCert, c.TLSKey = "/nonexistent/cert.pem", "/nonexistent/key.pem" }, "-tls-cert/-tls-key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t)
			c.mod(&cfg)
			srv, err := server.New(t.Context(), cfg, discard())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New = %v, %v; want an error containing %q", srv, err, c.want)
			}
			if _, err := os.Stat(cfg.Path("secondfactor.db")); err == nil {
				s, err := boltstore.Open(cfg.Path("secondfactor.db"))
				if err != nil {
					t.Fatalf("the store is still held after a refusal: %v", err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// publicListener is a loopback listener that says it listens on a public
// address.
type publicListener struct{ net.Listener }

func (publicListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7070} }

// TestServeRefusesPlaintextOnPublicAddress: without TLS, Serve refuses a
// gRPC listener that is not on loopback, whatever the Config said, and
// closes the listeners.
func TestServeRefusesPlaintextOnPublicAddress(t *testing.T) {
	srv, err := server.New(t.Context(), testConfig(t), discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	gl := listen(t)
	err = srv.Serve(server.Listeners{GRPC: publicListener{gl}})
	if err == nil || !strings.Contains(err.Error(), "not loopback") {
		t.Fatalf("Serve on a public address without TLS = %v, want a refusal", err)
	}
	if _, err := gl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on the refused listener = %v, want net.ErrClosed", err)
	}
}
