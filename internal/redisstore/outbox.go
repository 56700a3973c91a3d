package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/sortkey"
)

// The outbox (mfa.Outbox). Two kinds of keys:
//
//	{u:ID}:ob:<seq>  hash  e (the event's JSON, as appended), ms (its time),
//	                       due, attempts, claim, op: a notification, under
//	                       its user's hash tag
//	outbox:due       sorted set  member <user>/<seq> (the event's ID), score
//	                       its due time in ms: which notifications to claim
//
// Why this layout. The audit chain lives under the user's hash tag, so an
// outbox under one global key could only be written in a step of its own,
// and a crash between that step and the append would lose a notification
// or send one for an event that is not in the trail. Instead the entry is
// written by the append's own script (appendEventScript), beside the event:
// both or neither, and a client retry of the script writes neither twice.
// The global index, which lies in another slot, is written before the
// script, in the pipeline that writes audit:idx (AppendEvent): so every
// entry is indexed from before it exists until after it is removed, and
// none can be lost. The one cost: an index member may name no entry (an
// append overtaken by another, or that failed before its script ran).
// Such a member is due at once; the claimer that meets it tells, in the
// claim script, "gone" (the chain's head is at or past its Seq: no append
// can write it any more) from "pending" (an append may still write it, in
// a moment), removes the first and looks at the second again one lease
// later.
//
// The index is a hint and the entry the truth: the claim script decides on
// the entry's own due time, atomically for its user, so two claimers never
// lease one notification at once. Each writer of the index (a claim, a
// retry) sets the member's score after its script, from what the script
// saw, with ZADD XX where the member may be gone meanwhile (so that it
// does not come back); a score written late may delay a claim by at most a
// lease, never lose one. Nothing removes a member before its entry is
// deleted (CompleteNotification and DropNotifications delete the entry
// first), and a member that comes back for a deleted entry is gone at the
// next claim. PendingNotifications counts the index (ZCARD): exact but for
// such members, until a claim passes over them.

const (
	outboxDueKey = "outbox:due"
	// maxClaim bounds the notifications of one claim.
	maxClaim = 1000
	// claimRounds bounds the reads of the index in one claim: a round
	// whose members turn out leased by another claimer, or gone, reads
	// again past them.
	claimRounds = 4
	// dropPage is how many index members DropNotifications reads at once.
	dropPage = 500
)

func (k keys) notification(seq uint64) string { return string(k) + "ob:" + strconv.FormatUint(seq, 10) }

// indexNotification adds, in AppendEvent's index pipeline, the member of e
// in outbox:due if e is notifiable: due at its time.
func indexNotification(ctx context.Context, pl redis.Pipeliner, e mfa.Event) {
	if mfa.Notifiable(e) {
		pl.ZAdd(ctx, outboxDueKey, redis.Z{Score: float64(e.Time.UnixMilli()), Member: e.ID()})
	}
}

// withNotification adds to the keys and arguments of appendEventScript the
// outbox entry of e and its time, if e is notifiable.
func withNotification(k keys, e mfa.Event, ks []string, args []any) ([]string, []any) {
	if !mfa.Notifiable(e) {
		return ks, args
	}
	return append(ks, k.notification(e.Seq)), append(args, e.Time.UnixMilli())
}

// claimNotificationScript leases one notification if it is due.
//
// KEYS: the entry, the user's audit head. ARGV: the Seq, now, the lease's
// end (ms), the run's nonce. Returns {"claimed", event JSON, attempts,
// claim, leased until}, also when the entry holds this run's nonce (a
// client retry of the script); {"later", due} if it is not due; {"gone"}
// if there is no entry and the chain's head is at or past the Seq;
// {"pending"} if there is none and the head is before the Seq.
var claimNotificationScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'e', 'due', 'attempts', 'claim', 'op')
if not h[1] then
  local head = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
  if head >= tonumber(ARGV[1]) then
    return {'gone'}
  end
  return {'pending'}
end
if h[5] == ARGV[4] then
  return {'claimed', h[1], h[3], h[4], h[2]}
end
if tonumber(h[2]) > tonumber(ARGV[2]) then
  return {'later', h[2]}
end
local claim = tostring(tonumber(h[4]) + 1)
redis.call('HSET', KEYS[1], 'due', ARGV[3], 'claim', claim, 'op', ARGV[4])
return {'claimed', h[1], h[3], claim, ARGV[3]}
`)

// retryNotificationScript makes a notification due again if its claim is
// still the caller's.
//
// KEYS: the entry. ARGV: the claim, the new due time (ms), the attempts.
// Returns statusOK, statusNotFound or statusConflict. Run twice, it sets
// the same values.
var retryNotificationScript = redis.NewScript(`
local c = redis.call('HGET', KEYS[1], 'claim')
if not c then
  return 1
end
if c ~= ARGV[1] then
  return 2
end
redis.call('HSET', KEYS[1], 'due', ARGV[2], 'attempts', ARGV[3])
return 0
`)

// ClaimNotifications reads the members of outbox:due due at now, runs the
// claim script on each, then sets their scores from what the scripts saw,
// in one pipeline.
func (s *Store) ClaimNotifications(ctx context.Context, now time.Time, lease time.Duration, max int) ([]mfa.Notification, error) {
	if lease <= 0 || max < 1 || max > maxClaim {
		return nil, fmt.Errorf("redisstore: claim notifications: lease %s, max %d: want a lease > 0 and max 1 to %d", lease, max, maxClaim)
	}
	nowMS := now.UnixMilli()
	until := nowMS + ceilMilli(lease)
	var out []mfa.Notification
	for range claimRounds {
		want := max - len(out)
		ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: outboxDueKey, Start: "-inf", Stop: strconv.FormatInt(nowMS, 10), ByScore: true, Count: int64(want),
		}).Result()
		if err != nil {
			return nil, storeError("claim notifications", err)
		}
		got, err := s.claimEach(ctx, ids, nowMS, until)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
		if len(ids) < want || len(out) == max {
			break
		}
	}
	return out, nil
}

// indexUpdate is what claims learnt about the index: members to set
// (claimed), to set if still there (later, pending), to remove (gone).
type indexUpdate struct {
	set, setXX []redis.Z
	remove     []any
}

// claimEach runs the claim script on each member ids names, and updates
// the index.
func (s *Store) claimEach(ctx context.Context, ids []string, nowMS, until int64) ([]mfa.Notification, error) {
	var (
		out []mfa.Notification
		up  indexUpdate
	)
	for _, id := range ids {
		user, seq, err := mfa.ParseEventID(id)
		if err != nil {
			up.remove = append(up.remove, id) // no append writes such a member
			continue
		}
		k := userKeys(user)
		res, err := claimNotificationScript.Run(ctx, s.rdb, []string{k.notification(seq), k.auditHead()},
			seq, nowMS, until, newNonce()).StringSlice()
		if err != nil {
			return nil, storeError("claim notifications", err)
		}
		n, ok, err := up.add(id, res, until)
		if err != nil {
			return nil, fmt.Errorf("redisstore: claim notifications: %s: %w", id, err)
		}
		if ok {
			out = append(out, n)
		}
	}
	if err := s.updateIndex(ctx, up); err != nil {
		return nil, err
	}
	return out, nil
}

// add records what the claim script answered for id, and returns the
// notification if it was claimed.
func (up *indexUpdate) add(id string, res []string, until int64) (mfa.Notification, bool, error) {
	switch {
	case len(res) == 1 && res[0] == "gone":
		up.remove = append(up.remove, id)
	case len(res) == 1 && res[0] == "pending":
		up.setXX = append(up.setXX, redis.Z{Score: float64(until), Member: id})
	case len(res) == 2 && res[0] == "later":
		due, err := strconv.ParseInt(res[1], 10, 64)
		if err != nil {
			return mfa.Notification{}, false, fmt.Errorf("corrupt due time: %w", err)
		}
		up.setXX = append(up.setXX, redis.Z{Score: float64(due), Member: id})
	case len(res) == 5 && res[0] == "claimed":
		n, err := decodeNotification(res[1:])
		if err != nil {
			return mfa.Notification{}, false, err
		}
		up.set = append(up.set, redis.Z{Score: float64(n.LeasedUntil.UnixMilli()), Member: id})
		return n, true, nil
	default:
		return mfa.Notification{}, false, fmt.Errorf("unexpected claim script result %q", res)
	}
	return mfa.Notification{}, false, nil
}

// decodeNotification reads the event JSON, attempts, claim and lease end
// that the claim script returns.
func decodeNotification(v []string) (mfa.Notification, error) {
	var e mfa.Event
	if err := json.Unmarshal([]byte(v[0]), &e); err != nil {
		return mfa.Notification{}, fmt.Errorf("outbox entry: event: %w", err)
	}
	attempts, err1 := strconv.Atoi(v[1])
	claim, err2 := strconv.ParseUint(v[2], 10, 64)
	until, err3 := strconv.ParseInt(v[3], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return mfa.Notification{}, fmt.Errorf("corrupt outbox entry: %w", err)
	}
	return mfa.Notification{Event: e, Attempts: attempts, Claim: claim, LeasedUntil: time.UnixMilli(until).UTC()}, nil
}

// updateIndex applies up to outbox:due in one pipeline.
func (s *Store) updateIndex(ctx context.Context, up indexUpdate) error {
	if len(up.set)+len(up.setXX)+len(up.remove) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		if len(up.set) > 0 {
			pl.ZAdd(ctx, outboxDueKey, up.set...)
		}
		if len(up.setXX) > 0 {
			pl.ZAddXX(ctx, outboxDueKey, up.setXX...)
		}
		if len(up.remove) > 0 {
			pl.ZRem(ctx, outboxDueKey, up.remove...)
		}
		return nil
	})
	if err != nil {
		return storeError("claim notifications: index", err)
	}
	return nil
}

// entryKeyOf is the key of the notification id.
func entryKeyOf(id string) (string, error) {
	user, seq, err := mfa.ParseEventID(id)
	if err != nil {
		return "", fmt.Errorf("%q: %w", id, err)
	}
	return userKeys(user).notification(seq), nil
}

// CompleteNotification deletes the entry, then its index member: two round
// trips, in that order, so that no entry is ever without its member.
func (s *Store) CompleteNotification(ctx context.Context, id string) error {
	k, err := entryKeyOf(id)
	if err != nil {
		return fmt.Errorf("redisstore: complete notification: %w", err)
	}
	if err := s.rdb.Del(ctx, k).Err(); err != nil {
		return storeError("complete notification", err)
	}
	if err := s.rdb.ZRem(ctx, outboxDueKey, id).Err(); err != nil {
		return storeError("complete notification: index", err)
	}
	return nil
}

// RetryNotification runs the retry script, then sets the index member's
// score to next.
func (s *Store) RetryNotification(ctx context.Context, id string, claim uint64, next time.Time, attempts int) error {
	k, err := entryKeyOf(id)
	if err == nil && attempts < 0 {
		err = fmt.Errorf("attempts %d: want 0 or more", attempts)
	}
	if err != nil {
		return fmt.Errorf("redisstore: retry notification: %w", err)
	}
	n, err := retryNotificationScript.Run(ctx, s.rdb, []string{k}, claim, next.UnixMilli(), attempts).Int()
	if err != nil {
		return storeError("retry notification", err)
	}
	if err := status("retry notification", n); err != nil {
		return err
	}
	if err := s.rdb.ZAdd(ctx, outboxDueKey, redis.Z{Score: float64(next.UnixMilli()), Member: id}).Err(); err != nil {
		return storeError("retry notification: index", err)
	}
	return nil
}

// PendingNotifications counts the members of outbox:due.
func (s *Store) PendingNotifications(ctx context.Context) (int, error) {
	n, err := s.rdb.ZCard(ctx, outboxDueKey).Result()
	if err != nil {
		return 0, storeError("pending notifications", err)
	}
	return int(n), nil
}

// DropNotifications scans outbox:due, reads each entry's event time and
// deletes the old entries, then their members; it also removes the
// members that name no entry and never will (see claimNotificationScript).
func (s *Store) DropNotifications(ctx context.Context, before time.Time) (int, error) {
	limit := sortkey.CeilMilli(before)
	dropped := 0
	var cursor uint64
	for {
		page, next, err := s.rdb.ZScan(ctx, outboxDueKey, cursor, "", dropPage).Result()
		if err != nil {
			return dropped, storeError("drop notifications", err)
		}
		ids := make([]string, 0, len(page)/2)
		for i := 0; i < len(page); i += 2 { // member, score, member, score, ...
			ids = append(ids, page[i])
		}
		n, err := s.dropOld(ctx, ids, limit)
		dropped += n
		if err != nil {
			return dropped, err
		}
		if cursor = next; cursor == 0 {
			return dropped, nil
		}
	}
}

// dropOld deletes the entries of ids whose event time is before limit (ms)
// and then removes their members, with those of entries gone for good. It
// returns how many entries it deleted.
func (s *Store) dropOld(ctx context.Context, ids []string, limit int64) (int, error) {
	type read struct {
		id   string
		key  string
		seq  uint64
		ms   *redis.StringCmd
		head *redis.StringCmd
	}
	reads := make([]read, 0, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, id := range ids {
			user, seq, err := mfa.ParseEventID(id)
			if err != nil {
				continue
			}
			k := userKeys(user)
			reads = append(reads, read{id: id, key: k.notification(seq), seq: seq,
				ms: pl.HGet(ctx, k.notification(seq), "ms"), head: pl.HGet(ctx, k.auditHead(), "seq")})
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, storeError("drop notifications", err)
	}
	var old, remove []any
	for _, r := range reads {
		ms, err := r.ms.Int64()
		switch {
		case err == nil && ms < limit:
			old = append(old, r.key)
			remove = append(remove, r.id)
		case errors.Is(err, redis.Nil):
			if head, _ := r.head.Uint64(); head >= r.seq {
				remove = append(remove, r.id)
			}
		}
	}
	return s.deleteEntries(ctx, old, remove)
}

// deleteEntries deletes the entry keys, then the index members: the
// members only if every entry went.
func (s *Store) deleteEntries(ctx context.Context, entries, members []any) (int, error) {
	dels := make([]*redis.IntCmd, len(entries))
	_, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, k := range entries {
			dels[i] = pl.Del(ctx, k.(string))
		}
		return nil
	})
	if err != nil {
		return 0, storeError("drop notifications", err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	if len(members) > 0 {
		if err := s.rdb.ZRem(ctx, outboxDueKey, members...).Err(); err != nil {
			return n, storeError("drop notifications: index", err)
		}
	}
	return n, nil
}
