package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/redistest"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/totp"
)

// The test binary doubles as the server: started with SECONDFACTORD_TEST_MAIN
// set, it runs main instead of the tests. Each server is a real process.
func TestMain(m *testing.M) {
	if os.Getenv("SECONDFACTORD_TEST_MAIN") != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type proc struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{} // closed when the process has exited and err is set
	err    error         // what cmd.Wait returned
}

// startServer runs secondfactord as a child process and waits until its gRPC
// listener is up. The process is killed, if still running, when the test
// ends.
func startServer(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), append(env, "SECONDFACTORD_TEST_MAIN=1")...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	addrc := make(chan string, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "grpc listening" {
				addrc <- line.Addr
			} else if testing.Verbose() {
				t.Logf("server: %s", sc.Text())
			}
		}
	}()
	go func() {
		<-read // Wait closes the pipe: read it to the end first
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("kill the server: %v", err)
		}
		<-p.exited
	})
	select {
	case p.addr = <-addrc:
	case <-p.exited:
		t.Fatalf("server exited before listening: %v", p.err)
	case <-time.After(20 * time.Second):
		t.Fatal("server did not listen within 20s")
	}
	return p
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

func client(t *testing.T, addr, token string) sfv1.SecondFactorServiceClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearer(token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return sfv1.NewSecondFactorServiceClient(conn)
}

// TestTwoReplicasOneRedis: two server processes on one Redis; the same code
// sent to both at once is accepted once.
func TestTwoReplicasOneRedis(t *testing.T) {
	redisAddr := redistest.Start(t)
	key := make([]byte, 32)
	rand.Read(key)
	token := "replica-test-token-0123456789"
	env := []string{
		"SECONDFACTOR_STORE=redis",
		"SECONDFACTOR_REDIS_ADDRS=" + redisAddr,
		"SECONDFACTOR_SEAL_KEYS=k1:" + base64.StdEncoding.EncodeToString(key),
		"SECONDFACTOR_CALLERS=portal:portal+admin:" + secret.Hash(token),
		"SECONDFACTOR_MAX_FAILURES=1000",
	}
	a := startServer(t, env, "-grpc-addr", "127.0.0.1:0", "-http-addr", "", "-data-dir", t.TempDir())
	b := startServer(t, env, "-grpc-addr", "127.0.0.1:0", "-http-addr", "", "-data-dir", t.TempDir())
	ca, cb := client(t, a.addr, token), client(t, b.addr, token)
	ctx := context.Background()

	// Enrol through replica A.
	ce, err := ca.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: "dr-replica", Proof: sfv1.Proof_PROOF_STRONG})
	if err != nil {
		t.Fatal(err)
	}
	bt, err := ca.BeginTOTPEnrollment(ctx, &sfv1.BeginTOTPEnrollmentRequest{EnrollmentToken: ce.GetToken(), Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(bt.GetSecret())
	if err != nil {
		t.Fatal(err)
	}
	step := totp.DefaultParams().Step(time.Now())
	code := func(s int64) string {
		c, err := totp.Code(sec, totp.DefaultParams(), s)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := cb.FinishTOTPEnrollment(ctx, &sfv1.FinishTOTPEnrollmentRequest{EnrollmentToken: ce.GetToken(), FactorId: bt.GetFactorId(), Code: code(step)}); err != nil {
		t.Fatalf("finish on replica B: %v", err)
	}

	// The next step's code (inside the ±1 skew), 25 times to each replica at once.
	next := code(step + 1)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[sfv1.Verdict]int{}
		start  = make(chan struct{})
	)
	for i := range 50 {
		c := ca
		if i%2 == 1 {
			c = cb
		}
		wg.Go(func() {
			<-start
			r, err := c.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: "dr-replica", Code: next})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("VerifyTOTP: %v", err)
				return
			}
			counts[r.GetVerdict()]++
		})
	}
	close(start)
	wg.Wait()
	if counts[sfv1.Verdict_VERDICT_ACCEPTED] != 1 || counts[sfv1.Verdict_VERDICT_REJECTED] != 49 {
		t.Fatalf("one code sent 50 times across two replicas: %v, want 1 ACCEPTED, 49 REJECTED", counts)
	}

	// SIGTERM stops a replica cleanly.
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.exited:
		if a.err != nil {
			t.Fatalf("replica A after SIGTERM: %v", a.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("replica A did not stop within 15s of SIGTERM")
	}
}

// TestRefusesUnsafeConfig: the server does not start where it would be unsafe.
func TestRefusesUnsafeConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"plaintext on a public address", []string{"-grpc-addr", "0.0.0.0:0"}, nil, "not loopback"},
		{"redis without seal keys", []string{"-grpc-addr", "127.0.0.1:0", "-store", "redis", "-redis-addrs", "127.0.0.1:1"}, nil, "no sealing key"},
		{"bad seal key", []string{"-grpc-addr", "127.0.0.1:0"}, []string{"SECONDFACTOR_SEAL_KEYS=k1:short"}, "sealing keys"},
		{"bad caller", []string{"-grpc-addr", "127.0.0.1:0", "-callers", "portal:root:abc"}, nil, "-callers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stderr strings.Builder
			args := append(c.args, "-data-dir", t.TempDir(), "-http-addr", "")
			env := func(k string) string {
				for _, kv := range c.env {
					if name, v, _ := strings.Cut(kv, "="); name == k {
						return v
					}
				}
				return ""
			}
			err := run(context.Background(), args, env, &stderr)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// TestFirstRun: with no configuration the server makes a sealing key and a
// local token in the data folder, both readable by the owner only, and
// serves with them.
func TestFirstRun(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, nil, "-grpc-addr", "127.0.0.1:0", "-http-addr", "", "-data-dir", dir)
	for _, f := range []string{"seal.keys", "local-token", "secondfactor.db"} {
		fi, err := os.Stat(dir + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	tok, err := os.ReadFile(dir + "/local-token")
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, p.addr, strings.TrimSpace(string(tok)))
	if _, err := c.GetUser(context.Background(), &sfv1.GetUserRequest{UserId: "u1"}); err != nil {
		t.Fatalf("GetUser with the local token: %v", err)
	}
}
