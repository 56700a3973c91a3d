package server_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/secondfactor/secondfactor/internal/server"
)

// syncBuffer is a buffer that the Redis client's goroutines and the test
// may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRedisClientLogsThroughSlog: what the Redis client logs on its own
// (here, its pool failing to dial a Redis that is not there) is a JSON line
// of the server's logger at warn level, not plain text on stderr.
func TestRedisClientLogsThroughSlog(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil { // nothing listens there now
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Store, cfg.RedisAddrs = "redis", []string{addr}
	var out syncBuffer
	srv, err := server.New(t.Context(), cfg, slog.New(slog.NewJSONHandler(&out, nil)))
	if err == nil {
		t.Fatalf("New with no Redis at %s = %v, want an error", addr, srv)
	}
	var found bool
	for _, raw := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var line struct{ Level, Msg, Detail string }
		if err := json.Unmarshal([]byte(raw), &line); err != nil {
			t.Fatalf("log line %q is not JSON: %v", raw, err)
		}
		if line.Msg != "redis client" {
			continue
		}
		found = true
		if line.Level != "WARN" || !strings.Contains(line.Detail, "failed to dial") || !strings.Contains(line.Detail, addr) {
			t.Errorf("redis client line = %+v, want level WARN and the dial failure to %s", line, addr)
		}
		if strings.HasPrefix(line.Detail, "redis: ") {
			t.Errorf("redis client line detail %q repeats the client's prefix", line.Detail)
		}
	}
	if !found {
		t.Errorf("no redis client line in the server's log:\n%s", out.String())
	}
}
