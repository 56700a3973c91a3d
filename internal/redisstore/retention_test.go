package redisstore_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/redisstore"
	"github.com/secondfactor/secondfactor/internal/redistest"
)

// TestPruneEventsLeavesNoIndex: Events reads past a member of audit:idx
// whose event is gone, so the conformance suite cannot see that pruning
// removes them: here the indexes are empty once every event is pruned,
// a member that an overtaken append left behind included.
func TestPruneEventsLeavesNoIndex(t *testing.T) {
	rdb := redistest.Client(t, redistest.Start(t))
	s := redisstore.New(rdb)
	ctx := t.Context()
	t0 := time.UnixMilli(1_790_000_000_000)
	for i := range 5 {
		for _, u := range []string{"alice", "bob"} {
			if _, err := s.AppendEvent(ctx, mfa.Event{UserID: u, Time: t0.Add(time.Duration(i) * time.Second), Action: mfa.ActionUserReset}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A member of an append that another overtook: alice's Seq 2 with
	// another hash.
	stale, err := rdb.ZRange(ctx, "audit:idx", 2, 2).Result() // alice/2
	if err != nil || len(stale) != 1 {
		t.Fatalf("audit:idx member: %v %v", stale, err)
	}
	forged := []byte(stale[0])
	forged[len(forged)-1] ^= 0xff
	if err := rdb.ZAdd(ctx, "audit:idx", redis.Z{Member: string(forged)}).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneEvents(ctx, t0.Add(time.Hour), mfa.MaxPruneEvents)
	if err != nil || n != 10 {
		t.Fatalf("PruneEvents: %d, %v; want 10 removed", n, err)
	}
	for _, key := range []string{"audit:idx", "{u:alice}:audit:t", "{u:bob}:audit:t"} {
		if c, err := rdb.ZCard(ctx, key).Result(); err != nil || c != 0 {
			t.Errorf("%s after pruning everything: %d members (%v), want none", key, c, err)
		}
	}
}
