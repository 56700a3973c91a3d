package redisstore

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/sortkey"
)

// Bypass codes (mfa.Bypasses). A user's bypasses live in one hash under the
// user's hash tag, so that consuming the current one and reviewing any one
// are scripts on one slot:
//
//	{u:ID}:bp   hash  <bypass ID> → JSON of the mfa.Bypass as issued;
//	                  <bypass ID>:used → time of its use (ms);
//	                  <bypass ID>:rev → JSON of its review (bypassReview);
//	                  cur, cur_hash, cur_exp → the bypass that may still be
//	                  consumed: its ID, code hash and expiry (ms)
//	bp:<ID>     string  user ID: finds a bypass from its ID alone
//	bypass:idx  sorted set  every bypass by time of issue: members, all
//	                  scored 0, are the time (sortkey.Time), the ID (16 bytes)
//	                  and the user ID, so that ZREVRANGEBYLEX lists them
//	                  newest first
//
// None of them expires: bypasses are kept for review. bp:<ID> and the
// member of bypass:idx lie in other slots; PutBypass writes them before
// the bypass, so that no bypass is without them, and a listing skips a
// member whose bypass is not there (a put that failed after them).
const bypassIndexKey = "bypass:idx"

func (k keys) bypasses() string { return string(k) + "bp" }

// bypassUserKey finds the user of a bypass ID.
func bypassUserKey(id string) string { return "bp:" + id }

// bypassReview is the value of <ID>:rev.
type bypassReview struct {
	By   string `json:"by"`
	Note string `json:"note"`
	MS   int64  `json:"ms"`
}

func bypassMember(ms int64, id, userID string) string {
	return string(sortkey.Time(ms)) + id + userID
}

// PutBypass writes the bypass's ID index and its member of bypass:idx,
// then the bypass and the user's current one in one HSET: two round trips.
func (s *Store) PutBypass(ctx context.Context, b mfa.Bypass, codeHash string) error {
	if err := b.ValidateNew(codeHash); err != nil {
		return fmt.Errorf("redisstore: put bypass: %w", err)
	}
	b.IssuedAt, b.ExpiresAt = time.UnixMilli(b.IssuedAt.UnixMilli()).UTC(), time.UnixMilli(b.ExpiresAt.UnixMilli()).UTC()
	js, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("redisstore: put bypass: %w", err)
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, bypassUserKey(b.ID), b.UserID, 0)
		p.ZAdd(ctx, bypassIndexKey, redis.Z{Member: bypassMember(b.IssuedAt.UnixMilli(), b.ID, b.UserID)})
		return nil
	})
	if err != nil {
		return storeError("put bypass: index", err)
	}
	err = s.rdb.HSet(ctx, userKeys(b.UserID).bypasses(),
		b.ID, js, "cur", b.ID, "cur_hash", codeHash, "cur_exp", b.ExpiresAt.UnixMilli()).Err()
	if err != nil {
		return storeError("put bypass", err)
	}
	return nil
}

// ConsumeBypass consumes the current bypass in one script, which returns
// it.
func (s *Store) ConsumeBypass(ctx context.Context, userID, codeHash string, now time.Time) (mfa.Bypass, bool, error) {
	return s.consumeBypass(ctx, userID, codeHash, now, newNonce())
}

// consumeBypass is ConsumeBypass, the call named by nonce (see opKey).
func (s *Store) consumeBypass(ctx context.Context, userID, codeHash string, now time.Time, nonce string) (mfa.Bypass, bool, error) {
	k := userKeys(userID)
	res, err := consumeBypassScript.Run(ctx, s.rdb, []string{k.bypasses(), k.op(nonce)}, codeHash, now.UnixMilli()).Slice()
	if err != nil {
		return mfa.Bypass{}, false, storeError("consume bypass", err)
	}
	if len(res) == 0 {
		return mfa.Bypass{}, false, nil
	}
	b, err := decodeBypass(res)
	if err != nil {
		return mfa.Bypass{}, false, fmt.Errorf("redisstore: consume bypass: %w", err)
	}
	return b, true, nil
}

// errNoBypass: the fields of a bypass that is not there.
var errNoBypass = errors.New("no such bypass")

// decodeBypass decodes the fields <ID>, <ID>:used and <ID>:rev of a
// bypass, as HMGET or a script returns them (nil for a missing field);
// errNoBypass if <ID> is missing.
func decodeBypass(fields []any) (mfa.Bypass, error) {
	if len(fields) != 3 {
		return mfa.Bypass{}, fmt.Errorf("unexpected bypass reply of %d elements", len(fields))
	}
	js, ok := fields[0].(string)
	if !ok {
		return mfa.Bypass{}, errNoBypass
	}
	var b mfa.Bypass
	if err := json.Unmarshal([]byte(js), &b); err != nil {
		return mfa.Bypass{}, fmt.Errorf("bypass: %w", err)
	}
	if used, ok := fields[1].(string); ok {
		ms, err := strconv.ParseInt(used, 10, 64)
		if err != nil {
			return mfa.Bypass{}, fmt.Errorf("bypass %s: use: %w", b.ID, err)
		}
		b.UsedAt = time.UnixMilli(ms).UTC()
	}
	if rev, ok := fields[2].(string); ok {
		var r bypassReview
		if err := json.Unmarshal([]byte(rev), &r); err != nil {
			return mfa.Bypass{}, fmt.Errorf("bypass %s: review: %w", b.ID, err)
		}
		b.ReviewedBy, b.ReviewNote, b.ReviewedAt = r.By, r.Note, time.UnixMilli(r.MS).UTC()
	}
	return b, nil
}

// bypassUser returns the user of a bypass ID.
func (s *Store) bypassUser(ctx context.Context, op, id string) (string, error) {
	user, err := s.rdb.Get(ctx, bypassUserKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("redisstore: %s: %w", op, mfa.ErrNotFound)
	}
	if err != nil {
		return "", storeError(op, err)
	}
	return user, nil
}

// Bypass finds the bypass's user, then reads it: two round trips.
func (s *Store) Bypass(ctx context.Context, id string) (mfa.Bypass, error) {
	user, err := s.bypassUser(ctx, "bypass", id)
	if err != nil {
		return mfa.Bypass{}, err
	}
	fields, err := s.rdb.HMGet(ctx, userKeys(user).bypasses(), id, id+":used", id+":rev").Result()
	if err != nil {
		return mfa.Bypass{}, storeError("bypass", err)
	}
	b, err := decodeBypass(fields)
	if errors.Is(err, errNoBypass) {
		// The ID's index of a put that failed after it.
		return mfa.Bypass{}, fmt.Errorf("redisstore: bypass: %w", mfa.ErrNotFound)
	}
	if err != nil {
		return mfa.Bypass{}, fmt.Errorf("redisstore: bypass: %w", err)
	}
	return b, nil
}

// ReviewBypass finds the bypass's user, then reviews it in one script,
// which returns it: two round trips.
func (s *Store) ReviewBypass(ctx context.Context, id, reviewer, note string, now time.Time) (mfa.Bypass, error) {
	if reviewer == "" {
		return mfa.Bypass{}, errors.New("redisstore: review bypass: no reviewer")
	}
	user, err := s.bypassUser(ctx, "review bypass", id)
	if err != nil {
		return mfa.Bypass{}, err
	}
	return s.reviewBypass(ctx, user, id, bypassReview{By: reviewer, Note: note, MS: now.UnixMilli()}, newNonce())
}

// reviewBypass is ReviewBypass of user's bypass, the call named by nonce
// (see opKey).
func (s *Store) reviewBypass(ctx context.Context, user, id string, r bypassReview, nonce string) (mfa.Bypass, error) {
	js, err := json.Marshal(r)
	if err != nil {
		return mfa.Bypass{}, fmt.Errorf("redisstore: review bypass: %w", err)
	}
	k := userKeys(user)
	res, err := reviewBypassScript.Run(ctx, s.rdb, []string{k.bypasses(), k.op(nonce)}, id, js).Slice()
	if err != nil {
		return mfa.Bypass{}, storeError("review bypass", err)
	}
	if len(res) != 4 {
		return mfa.Bypass{}, fmt.Errorf("redisstore: review bypass: unexpected script result of %d elements", len(res))
	}
	n, _ := res[0].(int64)
	if err := status("review bypass", int(n)); err != nil {
		return mfa.Bypass{}, err
	}
	b, err := decodeBypass(res[1:])
	if err != nil {
		return mfa.Bypass{}, fmt.Errorf("redisstore: review bypass: %w", err)
	}
	return b, nil
}

// encodeBypassCursor returns the cursor after a listed bypass: the
// version, the time of issue (ms) and the ID.
func encodeBypassCursor(ms int64, id string) string {
	b := binary.BigEndian.AppendUint64([]byte{cursorVersion}, uint64(ms))
	return base64.RawURLEncoding.EncodeToString(append(b, id...))
}

// decodeBypassCursor returns the bound of a cursor in bypass:idx: the
// members of its bypass's time and ID and those above sort after it.
func decodeBypassCursor(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 9+16 || b[0] != cursorVersion || !mfa.IsBypassID(string(b[9:])) {
		return "", fmt.Errorf("cursor: %w", mfa.ErrNotFound)
	}
	return bypassMember(int64(binary.BigEndian.Uint64(b[1:])), string(b[9:]), ""), nil
}

// bypassBounds are the max and min of the first ZREVRANGEBYLEX of a
// listing: below the cursor and Until, at or above Since.
func bypassBounds(q mfa.BypassQuery) (maxBound, minBound string, err error) {
	upper := ""
	if !q.Until.IsZero() {
		upper = string(sortkey.Time(sortkey.CeilMilli(q.Until)))
	}
	if q.Cursor != "" {
		c, err := decodeBypassCursor(q.Cursor)
		if err != nil {
			return "", "", err
		}
		if upper == "" || c < upper {
			upper = c
		}
	}
	maxBound, minBound = "+", "-"
	if upper != "" {
		maxBound = "(" + upper
	}
	if !q.Since.IsZero() {
		minBound = "[" + string(sortkey.Time(sortkey.CeilMilli(q.Since)))
	}
	return maxBound, minBound, nil
}

// Bypasses reads bypass:idx a batch at a time, newest first, and each
// batch's bypasses in one pipeline.
func (s *Store) Bypasses(ctx context.Context, q mfa.BypassQuery) ([]mfa.Bypass, string, error) {
	if err := mfa.CheckPage("limit", q.Limit); err != nil {
		return nil, "", fmt.Errorf("redisstore: bypasses: %w", err)
	}
	maxBound, minBound, err := bypassBounds(q)
	if err != nil {
		return nil, "", fmt.Errorf("redisstore: bypasses: %w", err)
	}
	var out []mfa.Bypass
	for {
		batch := q.Limit + 1 - len(out)
		members, err := s.rdb.ZRevRangeByLex(ctx, bypassIndexKey, &redis.ZRangeBy{Max: maxBound, Min: minBound, Count: int64(batch)}).Result()
		if err != nil {
			return nil, "", storeError("bypasses", err)
		}
		bs, err := s.readBypasses(ctx, members)
		if err != nil {
			return nil, "", err
		}
		out = append(out, bs...)
		if len(out) > q.Limit {
			last := out[q.Limit-1]
			return out[:q.Limit], encodeBypassCursor(last.IssuedAt.UnixMilli(), last.ID), nil
		}
		if len(members) < batch {
			return out, "", nil
		}
		maxBound = "(" + members[len(members)-1]
	}
}

// readBypasses reads the bypasses that members of bypass:idx name, in one
// pipeline, and drops those that are not there.
func (s *Store) readBypasses(ctx context.Context, members []string) ([]mfa.Bypass, error) {
	cmds := make([]*redis.SliceCmd, len(members))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range members {
			if len(m) < 8+16 || !mfa.IsBypassID(m[8:24]) {
				return fmt.Errorf("corrupt bypass index member %x", m)
			}
			id := m[8:24]
			cmds[i] = p.HMGet(ctx, userKeys(m[24:]).bypasses(), id, id+":used", id+":rev")
		}
		return nil
	})
	if err != nil {
		return nil, storeError("bypasses", err)
	}
	out := make([]mfa.Bypass, 0, len(cmds))
	for _, c := range cmds {
		b, err := decodeBypass(c.Val())
		if errors.Is(err, errNoBypass) {
			continue // the member of a put that failed after it
		}
		if err != nil {
			return nil, fmt.Errorf("redisstore: bypasses: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

// consumeBypassScript consumes the user's current bypass.
//
// KEYS: bp, op. ARGV: code hash, now (ms). If the current bypass's hash is
// the code's and now is before its expiry, it records the use, ends the
// current bypass and returns the bypass's fields <ID>, <ID>:used and
// <ID>:rev; else it returns {} and changes nothing. Run again for the same
// call (op), it returns the bypass it consumed (see opKey). The hashes are
// compared with Lua's ==, as activateEnrollmentScript explains.
var consumeBypassScript = redis.NewScript(`
local id = redis.call('GET', KEYS[2])
if not id then
  local c = redis.call('HMGET', KEYS[1], 'cur', 'cur_hash', 'cur_exp')
  if not c[1] or not c[3] or c[2] ~= ARGV[1] or tonumber(ARGV[2]) >= tonumber(c[3]) then
    return {}
  end
  id = c[1]
  redis.call('HSET', KEYS[1], id .. ':used', ARGV[2])
  redis.call('HDEL', KEYS[1], 'cur', 'cur_hash', 'cur_exp')
  redis.call('SET', KEYS[2], id, 'PX', ` + opKeepMS + `)
end
return redis.call('HMGET', KEYS[1], id, id .. ':used', id .. ':rev')
`)

// reviewBypassScript records a bypass's review if it has none.
//
// KEYS: bp, op. ARGV: bypass ID, the review's JSON. Returns {status, then
// the fields <ID>, <ID>:used and <ID>:rev}: statusOK, statusNotFound if
// there is no such bypass, statusConflict (nothing changed) if it was
// reviewed. Run again for the same call (op), it returns statusOK.
var reviewBypassScript = redis.NewScript(`
local id = ARGV[1]
local status = 0
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('HEXISTS', KEYS[1], id) == 0 then
    status = 1
  elseif redis.call('HEXISTS', KEYS[1], id .. ':rev') == 1 then
    status = 2
  else
    redis.call('HSET', KEYS[1], id .. ':rev', ARGV[2])
    redis.call('SET', KEYS[2], '1', 'PX', ` + opKeepMS + `)
  end
end
local f = redis.call('HMGET', KEYS[1], id, id .. ':used', id .. ':rev')
return {status, f[1], f[2], f[3]}
`)
