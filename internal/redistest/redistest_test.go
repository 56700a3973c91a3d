package redistest_test

import (
	"net"
	"testing"

	"github.com/secondfactor/secondfactor/internal/redistest"
)

func TestStart(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	if a == b {
		t.Fatalf("two servers on one address %s", a)
	}
	for _, addr := range []string{a, b} {
		c := redistest.Client(t, addr)
		if err := c.Set(t.Context(), "k", addr, 0).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := c.Get(t.Context(), "k").Result()
		if err != nil || got != addr {
			t.Fatalf("GET k on %s: got %q, %v", addr, got, err)
		}
	}
}

func TestStartCluster(t *testing.T) {
	c := redistest.ClusterClient(t, redistest.StartCluster(t))
	ctx := t.Context()
	if err := c.Set(ctx, "{x}a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Keys in different slots: a cluster refuses a command on both.
	if err := c.Do(ctx, "MSET", "a", "1", "b", "2").Err(); err == nil {
		t.Fatal("MSET across slots: got no error, want CROSSSLOT")
	}
}

func TestStop(t *testing.T) {
	s := redistest.StartServer(t)
	c := redistest.Client(t, s.Addr)
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if conn, err := net.Dial("tcp", s.Addr); err == nil {
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
		t.Fatalf("%s accepts connections after Stop", s.Addr)
	}
	s.Stop() // a second Stop does nothing
}
