package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/boltstore"
	"github.com/secondfactor/secondfactor/internal/config"
	"github.com/secondfactor/secondfactor/internal/grpcapi"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/notify"
	"github.com/secondfactor/secondfactor/internal/redistest"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/server"
)

const (
	adminToken    = "admin-caller-token-0123456789"
	webhookSecret = "whsec-0123456789abcdef0123456789abcdef"
	// waitDelivery bounds the wait for a server's deliverer, which claims
	// every second of real time.
	waitDelivery = 20 * time.Second
)

// clock is the servers' injected time, moved by the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// hookReceiver records the webhook requests it gets, checking each one's
// signature, and tells each new id on a channel.
type hookReceiver struct {
	t     *testing.T
	mu    sync.Mutex
	count map[string]int
	ids   chan string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	return &hookReceiver{t: t, count: map[string]int{}, ids: make(chan string, 1000)}
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		h.t.Error(err)
		return
	}
	sig := r.Header.Get(notify.HeaderSignature)
	ts, _, _ := strings.Cut(strings.TrimPrefix(sig, "t="), ",")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig != notify.Signature([]byte(webhookSecret), time.Unix(sec, 0), body) {
		h.t.Errorf("request with signature %q does not verify", sig)
	}
	var p notify.Payload
	if err := json.Unmarshal(body, &p); err != nil || p.ID != r.Header.Get(notify.HeaderEventID) {
		h.t.Errorf("body %s (%v) for id %q", body, err, r.Header.Get(notify.HeaderEventID))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.count[p.ID]++
	if h.count[p.ID] == 1 {
		h.ids <- p.ID
	}
}

// wait waits until the receiver has got n distinct ids, and returns them.
func (h *hookReceiver) wait(n int) map[string]bool {
	h.t.Helper()
	got := map[string]bool{}
	timeout := time.After(waitDelivery)
	for len(got) < n {
		select {
		case id := <-h.ids:
			got[id] = true
		case <-timeout:
			h.t.Fatalf("after %s the receiver got %d ids, want %d: %v", waitDelivery, len(got), n, got)
		}
	}
	return got
}

func (h *hookReceiver) counts() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for k, v := range h.count {
		out[k] = v
	}
	return out
}

// serving is a server serving on loopback, with an admin client.
type serving struct {
	srv    *server.Server
	admin  sfv1.AdminServiceClient
	http   string // base URL of health and metrics
	served chan error
}

func serve(t *testing.T, cfg config.Config, c *clock) *serving {
	t.Helper()
	srv, err := server.New(t.Context(), cfg, discard(), server.WithClock(c.Now),
		server.WithCaller(secret.Hash(adminToken), grpcapi.Caller{Name: "ops-alice", Roles: []grpcapi.Role{grpcapi.RoleAdmin}}))
	if err != nil {
		t.Fatal(err)
	}
	gl, hl := listen(t), listen(t)
	s := &serving{srv: srv, http: "http://" + hl.Addr().String(), served: make(chan error, 1)}
	go func() { s.served <- srv.Serve(server.Listeners{GRPC: gl, HTTP: hl}) }()
	s.admin = sfv1.NewAdminServiceClient(dial(t, gl.Addr().String()))
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop shuts the server down; a second call does nothing.
func (s *serving) stop(t *testing.T) {
	t.Helper()
	if err := s.srv.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if s.served != nil {
		if err := <-s.served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		s.served = nil
	}
}

func (s *serving) reset(t *testing.T, userID string) {
	t.Helper()
	_, err := s.admin.ResetUser(t.Context(), &sfv1.ResetUserRequest{UserId: userID, Reason: "lost phone, ticket 4711"}, grpc.PerRPCCredentials(bearer(adminToken)))
	if err != nil {
		t.Fatalf("ResetUser(%s): %v", userID, err)
	}
}

func withWebhook(cfg config.Config, url string) config.Config {
	cfg.WebhookURL, cfg.WebhookSecret, cfg.WebhookTimeout = url, webhookSecret, time.Second
	return cfg
}

// TestWebhookAcrossRestart: an administrator's reset and activation code
// while the receiver is down, the service restarted, then the receiver
// up: both notifications arrive, signed, from the restarted service.
func TestWebhookAcrossRestart(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	rcv := newHookReceiver(t)
	down := listen(t)
	addr := down.Addr().String()
	if err := down.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := withWebhook(testConfig(t), "http://"+addr+"/hooks/mfa")

	a := serve(t, cfg, c)
	a.reset(t, "dr-martin")
	if _, err := a.admin.IssueActivationCode(t.Context(), &sfv1.IssueActivationCodeRequest{UserId: "dr-martin", Reason: "identity checked"},
		grpc.PerRPCCredentials(bearer(adminToken))); err != nil {
		t.Fatal(err)
	}
	a.stop(t)

	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(rcv)
	hs.Listener = l
	hs.Start()
	t.Cleanup(hs.Close)
	// Past any back-off and any lease the first server left.
	c.Advance(10 * time.Minute)
	b := serve(t, cfg, c)
	got := rcv.wait(2)
	if !got["dr-martin/1"] || !got["dr-martin/2"] {
		t.Errorf("delivered %v, want dr-martin/1 (user.reset) and dr-martin/2 (activation.issued)", got)
	}
	if m := get(t, b.http+"/metrics"); !strings.Contains(m, "secondfactor_webhook_backlog") || !strings.Contains(m, `secondfactor_webhook_deliveries_total{outcome="delivered"}`) {
		t.Errorf("/metrics lacks the webhook's metrics:\n%s", m)
	}
}

// TestWebhookTwoReplicasOneRedis: two servers on one Redis, changes made
// through both: each notification reaches the receiver once.
func TestWebhookTwoReplicasOneRedis(t *testing.T) {
	addr := redistest.Start(t)
	c := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	rcv := newHookReceiver(t)
	hs := httptest.NewServer(rcv)
	t.Cleanup(hs.Close)
	var replicas []*serving
	for range 2 {
		cfg := withWebhook(testConfig(t), hs.URL)
		cfg.Store, cfg.RedisAddrs = "redis", []string{addr}
		replicas = append(replicas, serve(t, cfg, c))
	}
	const users = 40
	for i := range users {
		replicas[i%2].reset(t, fmt.Sprint("dr-", i))
	}
	rcv.wait(users)
	for _, r := range replicas {
		r.stop(t)
	}
	for id, n := range rcv.counts() {
		if n != 1 {
			t.Errorf("%s delivered %d times, want once", id, n)
		}
	}
}

// TestNoWebhookDropsOld: without a webhook, the server drops the
// notifications older than notify.GiveUp and keeps the others, for a
// webhook configured later.
func TestNoWebhookDropsOld(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	c := &clock{t: now}
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "given.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, at := range []time.Time{now.Add(-notify.GiveUp - time.Millisecond), now.Add(-notify.GiveUp)} {
		if _, err := store.AppendEvent(t.Context(), mfa.Event{UserID: "dr-martin", Time: at, Action: mfa.ActionUserReset}); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := server.New(t.Context(), testConfig(t), discard(), server.WithClock(c.Now), server.WithStore(store))
	if err != nil {
		t.Fatal(err)
	}
	gl := listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(server.Listeners{GRPC: gl}) }()
	// Once the API answers, the drop has begun; Shutdown waits for it.
	portal := sfv1.NewSecondFactorServiceClient(dial(t, gl.Addr().String()))
	if _, err := portal.GetUser(t.Context(), &sfv1.GetUserRequest{UserId: "dr-martin"}, grpc.PerRPCCredentials(bearer(configToken))); err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	ns, err := store.ClaimNotifications(t.Context(), now, time.Minute, 10)
	if err != nil || len(ns) != 1 || ns[0].Event.ID() != "dr-martin/2" {
		t.Fatalf("outbox after a run without webhook: %v, %v; want only dr-martin/2", ns, err)
	}
}
