package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/sortkey"
)

// prunePage bounds the events of a chain one read of PruneEvents takes.
const prunePage = 100

// PruneEvents goes up audit:idx below before, a batch of members at a
// time (ZRANGEBYLEX, oldest first). For each user of a batch it reads the
// chain's first events and removes those that can go and are no later than
// the batch's last member (so the oldest go first), at most max in all:
// XTRIM MINID on the chain's stream and ZREM of the user's index, in one
// MULTI on the user's slot, so that each chain step is atomic. The batch's
// members of the removed events, and those of Seqs the chain no longer
// has (left by an append that another overtook, or by a step that failed
// before its ZREM), then leave audit:idx, which Events reads past in the
// meantime. What was removed before an error stays removed.
func (s *Store) PruneEvents(ctx context.Context, before time.Time, max int) (int, error) {
	if err := mfa.CheckPruneMax(max); err != nil {
		return 0, fmt.Errorf("redisstore: prune events: %w", err)
	}
	cut := sortkey.CeilMilli(before)
	upper := "(" + string(sortkey.Time(cut))
	minBound, removed := "-", 0
	for removed < max {
		want := max - removed
		members, err := s.rdb.ZRangeByLex(ctx, auditIndexKey, &redis.ZRangeBy{Min: minBound, Max: upper, Count: int64(want)}).Result()
		if err != nil {
			return removed, storeError("prune events", err)
		}
		n, err := s.pruneBatch(ctx, members, cut, want)
		removed += n
		if err != nil || len(members) < want {
			return removed, err
		}
		minBound = "(" + members[len(members)-1]
	}
	return removed, nil
}

// pruneBatch prunes the chains of the users that members of audit:idx
// name, removing at most budget events, and then the members that name an
// event no longer there.
func (s *Store) pruneBatch(ctx context.Context, members []string, cut int64, budget int) (int, error) {
	if len(members) == 0 {
		return 0, nil
	}
	positions := make([]position, len(members))
	for i, m := range members {
		p, _, ok := parseIndexMember([]byte(m))
		if !ok {
			return 0, fmt.Errorf("redisstore: prune events: corrupt audit index member %x", m)
		}
		positions[i] = p
	}
	bound := positions[len(positions)-1].ms
	firsts := map[string]uint64{} // each user's first Seq left
	removed := 0
	var drop []any
	for _, p := range positions {
		if _, done := firsts[p.user]; done {
			continue
		}
		gone, first, err := s.firstEvents(ctx, p.user, cut, bound, budget-removed)
		if err != nil {
			return removed, err
		}
		firsts[p.user] = first
		n, err := s.trimChain(ctx, p.user, gone)
		if err != nil {
			return removed, err
		}
		removed += n
		for _, e := range gone {
			drop = append(drop, indexMember(position{ms: e.Time.UnixMilli(), user: e.UserID, seq: e.Seq}, hashPrefix(e.Hash)))
		}
	}
	for i, p := range positions {
		if p.seq < firsts[p.user] {
			drop = append(drop, members[i])
		}
	}
	if len(drop) > 0 {
		if err := s.rdb.ZRem(ctx, auditIndexKey, drop...).Err(); err != nil {
			return removed, storeError("prune events: index", err)
		}
	}
	return removed, nil
}

// firstEvents returns up to n of userID's first events that are before
// cut and no later than bound (unix milliseconds), and the Seq of the
// first event after them: the chain's first left once they go (the head's
// + 1 if there is none). The head is read before each page of the chain,
// so that an event appended meanwhile is never taken for one gone.
func (s *Store) firstEvents(ctx context.Context, userID string, cut, bound int64, n int) ([]mfa.Event, uint64, error) {
	k := userKeys(userID)
	var gone []mfa.Event
	for start := "-"; ; {
		page := min(n-len(gone)+1, prunePage)
		var head *redis.StringCmd
		var msgs *redis.XMessageSliceCmd
		// A user without a chain makes HGET fail with redis.Nil: each
		// command's error is checked instead of the pipeline's first.
		_, _ = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
			head = pl.HGet(ctx, k.auditHead(), "seq")
			msgs = pl.XRangeN(ctx, k.auditLog(), start, "+", int64(page))
			return nil
		})
		if err := cmp.Or(msgs.Err(), noNil(head.Err())); err != nil {
			return nil, 0, storeError("prune events: read the chain", err)
		}
		for _, m := range msgs.Val() {
			e, err := decodeEvent(m)
			if err != nil {
				return nil, 0, fmt.Errorf("redisstore: prune events: %w", err)
			}
			if ms := e.Time.UnixMilli(); ms >= cut || ms > bound || len(gone) == n {
				return gone, e.Seq, nil
			}
			gone = append(gone, e)
		}
		if len(msgs.Val()) < page {
			next, err := headNext(head)
			return gone, next, err
		}
		start = "(" + msgs.Val()[len(msgs.Val())-1].ID
	}
}

// headNext is the Seq after a chain's head as HGET read it; the largest
// Seq for a user without a chain, whose every index member is left over.
func headNext(head *redis.StringCmd) (uint64, error) {
	if errors.Is(head.Err(), redis.Nil) {
		return math.MaxUint64, nil
	}
	seq, err := strconv.ParseUint(head.Val(), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redisstore: prune events: corrupt audit head: %w", err)
	}
	return seq + 1, nil
}

// noNil is err, or nil for redis.Nil (a key that is not there).
func noNil(err error) error {
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// trimChain removes the first events of userID's chain up to the last of
// gone, and their members of the user's index, in one MULTI. It returns
// how many events it removed: fewer than gone when another PruneEvents
// came first.
func (s *Store) trimChain(ctx context.Context, userID string, gone []mfa.Event) (int, error) {
	if len(gone) == 0 {
		return 0, nil
	}
	k := userKeys(userID)
	times := make([]any, len(gone))
	for i, e := range gone {
		times[i] = timesMember(position{ms: e.Time.UnixMilli(), seq: e.Seq})
	}
	var trimmed *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(pl redis.Pipeliner) error {
		trimmed = pl.XTrimMinID(ctx, k.auditLog(), strconv.FormatUint(gone[len(gone)-1].Seq+1, 10)+"-0")
		pl.ZRem(ctx, k.auditTimes(), times...)
		return nil
	})
	if err != nil {
		return 0, storeError("prune events", err)
	}
	return int(trimmed.Val()), nil
}
