package grpcapi_test

import (
	"context"
	"encoding/base32"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/boltstore"
	"github.com/secondfactor/secondfactor/internal/grpcapi"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/passkey"
	"github.com/secondfactor/secondfactor/internal/redisstore"
	"github.com/secondfactor/secondfactor/internal/redistest"
	"github.com/secondfactor/secondfactor/internal/seal"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/totp"
)

// clock is the injected time of a test server: it moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)} }

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

// storeKinds are the stores every end-to-end test runs on.
var storeKinds = []string{"bolt", "redis"}

// redisAddr is set by newStore for the redis kind, for tests that look
// inside the store.
func newStore(t testing.TB, kind string) (mfa.Store, string) {
	switch kind {
	case "bolt":
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "sf.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, ""
	default:
		addr := redistest.Start(t)
		return redisstore.New(redistest.Client(t, addr)), addr
	}
}

const (
	portalToken = "portal-token-for-tests-0123456789abcdef"
	adminToken  = "admin-token-for-tests-0123456789abcdef"
)

// env is a server on a loopback listener and clients for it.
type env struct {
	clock     *clock
	portal    sfv1.SecondFactorServiceClient
	admin     sfv1.AdminServiceClient
	conn      *grpc.ClientConn
	redisAddr string
}

type envOptions struct {
	policy  mfa.Policy
	limits  mfa.Limits
	params  totp.Params
	passkey passkey.Config // RPID and Origins default to portal.example
}

// origin is the portal's origin in WebAuthn tests.
const origin = "https://portal.example"

func newEnv(t testing.TB, kind string, o envOptions) *env {
	t.Helper()
	store, redisAddr := newStore(t, kind)
	ring, err := seal.NewRing([]seal.Key{{ID: "k1", Bytes: make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	pc := o.passkey
	if pc.RPID == "" {
		pc.RPID, pc.Origins = "portal.example", []string{origin}
	}
	pc.DecoyKey = ring.Derive("webauthn decoy credential")
	rp, err := passkey.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := mfa.New(mfa.Options{
		Store: store, Ring: ring, RP: rp, Policy: o.policy, Limits: o.limits, TOTP: o.params,
		Issuer: "Portail Pro", Now: clk.Now,
		ReturnURLs: []string{"https://portal.example/mfa/done"},
	})
	if err != nil {
		t.Fatal(err)
	}
	callers := grpcapi.Callers{
		secret.Hash(portalToken): {Name: "portal", Roles: []grpcapi.Role{grpcapi.RolePortal}},
		secret.Hash(adminToken):  {Name: "alice-admin", Roles: []grpcapi.Role{grpcapi.RoleAdmin}},
	}
	srv := grpcapi.New(grpcapi.Options{Service: svc, Callers: callers, Logger: discardLogger()})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn := dial(t, lis.Addr().String())
	return &env{
		clock: clk, conn: conn, redisAddr: redisAddr,
		portal: sfv1.NewSecondFactorServiceClient(conn),
		admin:  sfv1.NewAdminServiceClient(conn),
	}
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

func dial(t testing.TB, addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// as returns call options that authenticate as the given token.
func as(token string) grpc.CallOption { return grpc.PerRPCCredentials(bearer(token)) }

var (
	asPortal = as(portalToken)
	asAdmin  = as(adminToken)
)

// enrolled is a user with one confirmed TOTP factor.
type enrolled struct {
	userID   string
	secret   []byte
	params   totp.Params
	factorID string
}

// code returns the user's code at the env's clock.
func (e *env) code(t testing.TB, u enrolled) string {
	t.Helper()
	c, err := totp.Code(u.secret, u.params, u.params.Step(e.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrollTOTP enrols userID with PROOF_STRONG and returns its secret. The
// clock moves one step on, so that the next code is not the confirming one.
func (e *env) enrollTOTP(t testing.TB, userID string) enrolled {
	t.Helper()
	ctx := context.Background()
	ce, err := e.portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: userID, DisplayName: "Dr " + userID, Proof: sfv1.Proof_PROOF_STRONG}, asPortal)
	if err != nil {
		t.Fatalf("CreateEnrollment: %v", err)
	}
	return e.finishTOTP(t, userID, ce.GetToken(), "")
}

func (e *env) finishTOTP(t testing.TB, userID, token, activation string) enrolled {
	t.Helper()
	ctx := context.Background()
	b, err := e.portal.BeginTOTPEnrollment(ctx, &sfv1.BeginTOTPEnrollmentRequest{EnrollmentToken: token, Name: "phone", ActivationCode: activation}, asPortal)
	if err != nil {
		t.Fatalf("BeginTOTPEnrollment: %v", err)
	}
	u := enrolledFrom(t, userID, b)
	_, err = e.portal.FinishTOTPEnrollment(ctx, &sfv1.FinishTOTPEnrollmentRequest{EnrollmentToken: token, FactorId: b.GetFactorId(), Code: e.code(t, u)}, asPortal)
	if err != nil {
		t.Fatalf("FinishTOTPEnrollment: %v", err)
	}
	e.clock.Advance(u.params.Period)
	return u
}

func (e *env) verify(t testing.TB, userID, code string) *sfv1.VerifyTOTPResponse {
	t.Helper()
	r, err := e.portal.VerifyTOTP(context.Background(), &sfv1.VerifyTOTPRequest{UserId: userID, Code: code}, asPortal)
	if err != nil {
		t.Fatalf("VerifyTOTP: %v", err)
	}
	return r
}

func wantCode(t testing.TB, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: got %v (%v), want %v", what, got, err, want)
	}
}

// wrongCode returns a code of the right length that matches none of the
// steps the server accepts at the env's clock.
func (e *env) wrongCode(t testing.TB, u enrolled) string {
	t.Helper()
	step := u.params.Step(e.clock.Now())
	taken := map[string]bool{}
	for s := step - 1; s <= step+1; s++ {
		c, err := totp.Code(u.secret, u.params, s)
		if err != nil {
			t.Fatal(err)
		}
		taken[c] = true
	}
	for n := 0; ; n++ {
		c := fmt.Sprintf("%0*d", u.params.Digits, n)
		if !taken[c] {
			return c
		}
	}
}

// enrolledFrom reads a pending TOTP factor's secret and parameters.
func enrolledFrom(t testing.TB, userID string, b *sfv1.BeginTOTPEnrollmentResponse) enrolled {
	t.Helper()
	sec, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(b.GetSecret())
	if err != nil {
		t.Fatal(err)
	}
	return enrolled{userID: userID, secret: sec, factorID: b.GetFactorId(), params: totp.Params{
		Algorithm: totp.Algorithm(map[sfv1.TOTPAlgorithm]string{1: "SHA1", 2: "SHA256", 3: "SHA512"}[b.GetAlgorithm()]),
		Digits:    int(b.GetDigits()), Period: b.GetPeriod().AsDuration(),
	}}
}

// verdictsAtOnce runs call n times at once, released together, and counts
// the verdicts. Any error fails the test.
func verdictsAtOnce(t *testing.T, n int, call func(i int) (sfv1.Verdict, error)) map[sfv1.Verdict]int {
	t.Helper()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[sfv1.Verdict]int{}
		start  = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			v, err := call(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("call %d: %v", i, err)
				return
			}
			counts[v]++
		})
	}
	close(start)
	wg.Wait()
	return counts
}

// assertNotInRedis reads every key and value in Redis (DUMP) and fails for
// each secret found in them, as given or, for a code, without its dashes.
func assertNotInRedis(t *testing.T, addr string, secrets map[string]string) {
	t.Helper()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("redis holds no key (%v): the test looks at the wrong server", err)
	}
	var dump strings.Builder
	for _, k := range keys {
		raw, err := rdb.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		dump.WriteString(k + "\n" + raw + "\n")
	}
	for what, s := range secrets {
		for _, form := range []string{s, strings.ReplaceAll(s, "-", "")} {
			if strings.Contains(dump.String(), form) {
				t.Errorf("redis holds the %s in plain text", what)
				break
			}
		}
	}
}
