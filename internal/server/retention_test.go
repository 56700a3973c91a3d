package server_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/boltstore"
	"github.com/secondfactor/secondfactor/internal/grpcapi"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/server"
)

// TestAuditRetention: the server prunes, by its clock, the audit events
// older than -audit-retention (one exactly that old stays), and the audit
// trail still verifies, each pruned chain from its first event left.
func TestAuditRetention(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	c := &clock{t: now}
	const retention = 48 * time.Hour
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "given.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, e := range []struct {
		user string
		at   time.Time
	}{
		{"dr-martin", now.Add(-100 * time.Hour)},
		{"dr-martin", now.Add(-retention - time.Millisecond)},
		{"dr-martin", now.Add(-retention)}, // stays: not older than the retention
		{"dr-martin", now.Add(-time.Hour)},
		{"dr-okafor", now.Add(-72 * time.Hour)}, // the whole chain goes
	} {
		if _, err := store.AppendEvent(t.Context(), mfa.Event{UserID: e.user, Time: e.at, Action: mfa.ActionUserReset, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(t)
	cfg.AuditRetention = retention

	start := func() (*server.Server, chan error, sfv1.AdminServiceClient) {
		srv, err := server.New(t.Context(), cfg, discard(), server.WithClock(c.Now), server.WithStore(store),
			server.WithCaller(secret.Hash(adminToken), grpcapi.Caller{Name: "ops-alice", Roles: []grpcapi.Role{grpcapi.RoleAdmin}}))
		if err != nil {
			t.Fatal(err)
		}
		gl := listen(t)
		served := make(chan error, 1)
		go func() { served <- srv.Serve(server.Listeners{GRPC: gl}) }()
		return srv, served, sfv1.NewAdminServiceClient(dial(t, gl.Addr().String()))
	}
	stop := func(srv *server.Server, served chan error) {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := <-served; err != nil {
			t.Fatal(err)
		}
	}
	srv, served, admin := start()
	creds := grpc.PerRPCCredentials(bearer(adminToken))
	// Once the API answers, the retention's loop has begun; Shutdown
	// waits for its first pruning.
	if _, err := admin.VerifyAuditTrail(t.Context(), &sfv1.VerifyAuditTrailRequest{UserId: "dr-nobody"}, creds); err != nil {
		t.Fatal(err)
	}
	stop(srv, served)

	chain := func(user string) []uint64 {
		evs, err := store.Chain(t.Context(), user, 1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, e := range evs {
			seqs = append(seqs, e.Seq)
		}
		return seqs
	}
	if got := chain("dr-martin"); len(got) != 2 || got[0] != 3 || got[1] != 4 {
		t.Errorf("dr-martin's chain after pruning: Seq %v, want [3 4]", got)
	}
	if got := chain("dr-okafor"); len(got) != 0 {
		t.Errorf("dr-okafor's chain after pruning: Seq %v, want none", got)
	}

	// A second server on the same store, a reset appended after the
	// pruned chain: the trail verifies.
	srv, served, admin = start()
	defer stop(srv, served)
	if _, err := admin.ResetUser(t.Context(), &sfv1.ResetUserRequest{UserId: "dr-okafor", Reason: "lost phone, ticket 4711"}, creds); err != nil {
		t.Fatal(err)
	}
	got, err := admin.VerifyAuditTrail(t.Context(), &sfv1.VerifyAuditTrailRequest{}, creds)
	if err != nil {
		t.Fatal(err)
	}
	if !got.GetOk() || got.GetEvents() != 3 {
		t.Errorf("VerifyAuditTrail after pruning: ok %v, %d events, broken %q (%s); want ok, 3 events",
			got.GetOk(), got.GetEvents(), got.GetBrokenEventId(), got.GetProblem())
	}
}
