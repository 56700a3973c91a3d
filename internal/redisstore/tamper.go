package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// This file exists for tests of audit chain verification (package mfa, the
// CLI's audit verify): it changes a stored event behind the append-only
// rule, as someone who can write to Redis could. Nothing in the service
// calls it, so the linker leaves it out of the binaries.

// TamperEvent rewrites the stored event seq of userID's audit chain with
// edit, in place: its hash, the head and the indexes are left as they
// were, as a forger would. A stream entry cannot be changed, so the stream
// is written again whole, with the same entry IDs, in one MULTI.
// ErrNotFound if there is no such event.
func TamperEvent(ctx context.Context, s *Store, userID string, seq uint64, edit func(*mfa.Event)) error {
	key := userKeys(userID).auditLog()
	msgs, err := s.rdb.XRange(ctx, key, "-", "+").Result()
	if err != nil {
		return storeError("tamper event", err)
	}
	id := strconv.FormatUint(seq, 10) + "-0"
	found := false
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		for _, m := range msgs {
			if m.ID == id {
				e, err := decodeEvent(m)
				if err != nil {
					return err
				}
				edit(&e)
				b, err := json.Marshal(e)
				if err != nil {
					return err
				}
				m.Values = map[string]any{"e": string(b)}
				found = true
			}
			p.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: m.ID, Values: m.Values})
		}
		if !found {
			return fmt.Errorf("event %d: %w", seq, mfa.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return storeError("tamper event", err)
	}
	return nil
}

// RemoveEvent deletes the stored event seq of userID's audit chain, and
// nothing else. ErrNotFound if there is no such event.
func RemoveEvent(ctx context.Context, s *Store, userID string, seq uint64) error {
	n, err := s.rdb.XDel(ctx, userKeys(userID).auditLog(), strconv.FormatUint(seq, 10)+"-0").Result()
	if err != nil {
		return storeError("remove event", err)
	}
	if n == 0 {
		return fmt.Errorf("redisstore: remove event %d: %w", seq, mfa.ErrNotFound)
	}
	return nil
}
