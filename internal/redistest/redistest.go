// Package redistest starts a real redis-server for tests, on a free loopback
// port, and stops it when the test ends, in the way httptest.NewServer starts
// an HTTP server. It needs the redis-server binary (Debian package
// redis-server): without it tests are skipped, or fail when the environment
// variable CI is set, so that CI cannot pass by skipping them.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// tries is how many ports Start tries: a free port can be taken by
	// another process between the probe and redis-server's bind.
	tries = 5
	// readyTimeout bounds the wait for a started server to answer PING.
	readyTimeout = 10 * time.Second
	// stopTimeout bounds the wait for a server to exit after SIGTERM.
	stopTimeout = 10 * time.Second
)

// Start starts a standalone redis-server on 127.0.0.1, without persistence,
// waits until it answers PING and returns its address, host:port. The server
// is stopped when the test and its subtests end.
func Start(t testing.TB) (addr string) {
	t.Helper()
	return StartServer(t).Addr
}

// Server is a redis-server started for a test, which the test may stop
// before it ends: to see what clients get from a store that went away.
type Server struct {
	// Addr is the server's address, host:port.
	Addr string
	stop func()
}

// StartServer starts a standalone redis-server as Start does and returns
// it. It is stopped when the test ends, if not before by Stop.
func StartServer(t testing.TB) *Server {
	t.Helper()
	return start(t, nil)
}

// Stop stops the server and waits until it has exited, so that its port
// refuses connections. Stopping a stopped server does nothing.
func (s *Server) Stop() { s.stop() }

// StartCluster starts a one-node Redis Cluster that owns all 16384 slots and
// returns its address. A cluster node refuses any command or script whose
// keys lie in different slots (CROSSSLOT), so a store that passes its tests
// here keeps each operation's keys in one slot, as a real cluster needs.
func StartCluster(t testing.TB) (addr string) {
	t.Helper()
	addr = start(t, []string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-announce-ip", "127.0.0.1",
	}).Addr
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer closeClient(t, addr, c)
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("redistest: cluster addslotsrange: %v", err)
	}
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return addr
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: cluster at %s not ready after %s: %v", addr, readyTimeout, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Client returns a client of the standalone server at addr, closed when the
// test ends.
func Client(t testing.TB, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { closeClient(t, addr, c) })
	return c
}

// ClusterClient returns a cluster client of the cluster node at addr (see
// StartCluster), closed when the test ends.
func ClusterClient(t testing.TB, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}})
	t.Cleanup(func() { closeClient(t, addr, c) })
	return c
}

// closeClient closes c, a client of the server at addr, and reports an
// error to t.
func closeClient(t testing.TB, addr string, c io.Closer) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Errorf("redistest: close client of %s: %v", addr, err)
	}
}

func start(t testing.TB, extra []string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redistest: %v (install the Debian package redis-server)", err)
		}
		t.Skipf("redistest: %v (install the Debian package redis-server; with CI set this fails)", err)
	}
	var errs []error
	for range tries {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s, err := launch(t, bin, port, extra)
		if err == nil {
			return s
		}
		errs = append(errs, err)
	}
	t.Fatalf("redistest: redis-server did not start in %d tries: %v", tries, errors.Join(errs...))
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	// Closed now, or redis-server could not bind the port.
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// launch starts redis-server on port and waits for PING. On success it
// registers the server's stop with t.Cleanup.
func launch(t testing.TB, bin string, port int, extra []string) (*Server, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", t.TempDir(),
	}, extra...)
	out := new(syncBuffer)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(readyTimeout)
	for {
		if err := ping(addr); err == nil {
			break
		} else if time.Now().After(deadline) {
			kerr := kill(cmd.Process, exited)
			return nil, errors.Join(
				fmt.Errorf("redis-server on %s: no answer to PING after %s: %w; output:\n%s", addr, readyTimeout, err, out),
				kerr)
		}
		select {
		case err := <-exited:
			if err == nil {
				err = errors.New("exit status 0")
			}
			return nil, fmt.Errorf("redis-server on %s exited (%w); output:\n%s", addr, err, out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	stop := sync.OnceFunc(func() {
		if err := terminate(cmd.Process, exited); err != nil {
			t.Errorf("redistest: redis-server on %s: %v", addr, err)
		}
	})
	t.Cleanup(stop)
	return &Server{Addr: addr, stop: stop}, nil
}

// terminate stops the server with SIGTERM, or kills it if it ignores
// SIGTERM for stopTimeout, and waits until it has exited. exited is the
// result of the server's cmd.Wait.
func terminate(p *os.Process, exited <-chan error) error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		// The server exited before it was told to (os.ErrProcessDone), or
		// cannot be signalled.
		return errors.Join(fmt.Errorf("SIGTERM: %w", err), kill(p, exited))
	}
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("exit after SIGTERM: %w", err)
		}
		return nil
	case <-time.After(stopTimeout):
		return errors.Join(fmt.Errorf("ignored SIGTERM for %s; killed", stopTimeout), kill(p, exited))
	}
}

// kill kills the server and waits until it has exited. Neither a server
// that had exited already (os.ErrProcessDone) nor its exit status (an
// *exec.ExitError: the kill's, or its own) is an error: it is gone, as
// wanted.
func kill(p *os.Process, exited <-chan error) error {
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		// It may not exit: do not wait.
		return fmt.Errorf("kill: %w", err)
	}
	var exit *exec.ExitError
	if err := <-exited; err != nil && !errors.As(err, &exit) {
		return err
	}
	return nil
}

// ping sends PING in the Redis protocol and wants +PONG.
func ping(addr string) (err error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, conn.Close()) }()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// syncBuffer is a bytes.Buffer that the server's output goroutines and the
// test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
