package grpcapi_test

import (
	"context"
	"encoding/base32"
	"fmt"
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
	"github.com/secondfactor/secondfactor/internal/config"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/redistest"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/server"
	"github.com/secondfactor/secondfactor/internal/server/servertest"
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

const (
	portalToken = "portal-token-for-tests-0123456789abcdef"
	adminToken  = "admin-token-for-tests-0123456789abcdef"
)

// env is a server on a loopback listener and clients for it.
type env struct {
	httpAddr  string // "" unless the test's config sets HTTPAddr
	clock     *clock
	portal    sfv1.SecondFactorServiceClient
	admin     sfv1.AdminServiceClient
	conn      *grpc.ClientConn
	redisAddr string // for the redis kind, for tests that look inside the store
}

// envOptions change the server's settings from those of newEnv.
type envOptions struct {
	policy mfa.Policy           // "" keeps the default
	limits mfa.Limits           // zero keeps the defaults
	params totp.Params          // zero keeps the defaults; the period is always 30 s
	config func(*config.Config) // any other setting
}

// origin is the portal's origin in WebAuthn tests.
const origin = "https://portal.example"

// newEnv starts the server as secondfactord builds it (server.New), on the
// store kind, at a clock the test moves: a zero sealing key, a portal and
// an admin caller, the relying party portal.example, and o's changes.
func newEnv(t testing.TB, kind string, o envOptions) *env {
	t.Helper()
	cfg := servertest.Config(t)
	cfg.Callers = []string{
		"portal:portal:" + secret.Hash(portalToken),
		"alice-admin:admin:" + secret.Hash(adminToken),
	}
	cfg.Issuer = "Portail Pro"
	cfg.ReturnURLs = []string{"https://portal.example/mfa/done"}
	cfg.WebAuthnRPID, cfg.WebAuthnOrigins = "portal.example", []string{origin}
	if o.policy != "" {
		cfg.Policy = string(o.policy)
	}
	if o.limits != (mfa.Limits{}) {
		cfg.MaxFailures, cfg.LockoutBase, cfg.LockoutMax, cfg.FailureTTL = o.limits.MaxFailures, o.limits.BaseLockout, o.limits.MaxLockout, o.limits.FailureTTL
	}
	if o.params != (totp.Params{}) {
		if o.params.Period != totp.DefaultParams().Period {
			t.Fatalf("TOTP period %s: the server's is always %s", o.params.Period, totp.DefaultParams().Period)
		}
		cfg.TOTPAlgorithm, cfg.TOTPDigits = string(o.params.Algorithm), o.params.Digits
	}
	var redisAddr string
	if kind == "redis" {
		redisAddr = redistest.Start(t)
		cfg.Store, cfg.RedisAddrs = "redis", []string{redisAddr}
	}
	if o.config != nil {
		o.config(&cfg)
	}
	clk := newClock()
	addrs := servertest.Start(t, cfg, discardLogger(), server.WithClock(clk.Now))
	conn := dial(t, addrs.GRPC)
	return &env{
		clock: clk, conn: conn, redisAddr: redisAddr, httpAddr: addrs.HTTP,
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
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
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
	return e.codeAt(t, u, 0)
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

// codeAt returns the user's code offset steps from the env's clock.
func (e *env) codeAt(t testing.TB, u enrolled, offset int64) string {
	t.Helper()
	c, err := totp.Code(u.secret, u.params, u.params.Step(e.clock.Now())+offset)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wrongCode returns a code of the right length that matches none of the
// steps the server accepts at the env's clock.
func (e *env) wrongCode(t testing.TB, u enrolled) string {
	t.Helper()
	return e.wrongCodes(t, u, 1)[0]
}

// wrongCodes returns n different codes of the right length, none of which
// matches a step the server accepts at the env's clock.
func (e *env) wrongCodes(t testing.TB, u enrolled, n int) []string {
	t.Helper()
	taken := map[string]bool{}
	for s := int64(-1); s <= 1; s++ {
		taken[e.codeAt(t, u, s)] = true
	}
	var codes []string
	for i := 0; len(codes) < n; i++ {
		if c := fmt.Sprintf("%0*d", u.params.Digits, i); !taken[c] {
			codes = append(codes, c)
		}
	}
	return codes
}

// getUser returns what GetUser answers for userID.
func (e *env) getUser(t testing.TB, userID string) *sfv1.GetUserResponse {
	t.Helper()
	r, err := e.portal.GetUser(context.Background(), &sfv1.GetUserRequest{UserId: userID}, asPortal)
	if err != nil {
		t.Fatalf("GetUser(%s): %v", userID, err)
	}
	return r
}

// beginTOTP starts a TOTP enrolment in the session token.
func (e *env) beginTOTP(t testing.TB, token string) *sfv1.BeginTOTPEnrollmentResponse {
	t.Helper()
	b, err := e.portal.BeginTOTPEnrollment(context.Background(), &sfv1.BeginTOTPEnrollmentRequest{EnrollmentToken: token, Name: "phone"}, asPortal)
	if err != nil {
		t.Fatalf("BeginTOTPEnrollment: %v", err)
	}
	return b
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
	defer func() {
		if err := rdb.Close(); err != nil {
			t.Error(err)
		}
	}()
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
