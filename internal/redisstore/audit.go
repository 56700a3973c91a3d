package redisstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/sortkey"
)

// The audit trail. A user's chain is a stream under the user's hash tag, so
// that chains spread over a Cluster's slots with their users; entry IDs are
// <seq>-0, so that XRANGE finds an event by its Seq. Its head (the last Seq
// and Hash appended) lives beside it, and so does its index by time. Two
// keys without a hash tag list what spans users: every event by time
// (audit:idx), and the users that have a chain (audit:users).
//
// Both indexes by time are sorted sets whose members all score 0, so that
// ZREVRANGEBYLEX lists them in the order of their bytes: a member starts
// with the event's time (8 bytes that sort as times do), then, in
// audit:idx, the user ID written by sortkey.User and the Seq (8 bytes), then
// the first 8 bytes of the event's hash; in a user's index, the Seq. So a
// listing is one range query, newest first, and a cursor is a position in
// it.

// The keys of the audit trail that span users.
const (
	auditIndexKey = "audit:idx"
	auditUsersKey = "audit:users"
)

func (k keys) auditLog() string   { return string(k) + "audit" }
func (k keys) auditHead() string  { return string(k) + "audit:head" }
func (k keys) auditTimes() string { return string(k) + "audit:t" }

const (
	// appendTries bounds the attempts of one AppendEvent that other
	// appends to the same chain keep overtaking.
	appendTries = 100
)

// position is where an event sorts in a listing: newest first, by time,
// then user ID and Seq, all descending.
type position struct {
	ms   int64
	user string
	seq  uint64
}

// indexMember is the member of the event at p in audit:idx, without the
// hash (a bound of a range query), or with the first 8 bytes of it.
func indexMember(p position, hash []byte) []byte {
	m := append(sortkey.Time(p.ms), sortkey.User(p.user)...)
	m = binary.BigEndian.AppendUint64(m, p.seq)
	return append(m, hash...)
}

func parseIndexMember(m []byte) (position, []byte, bool) {
	if len(m) < 8 {
		return position{}, nil, false
	}
	user, rest, ok := sortkey.ParseUser(m[8:])
	if !ok || len(rest) != 16 {
		return position{}, nil, false
	}
	return position{ms: sortkey.ParseTime(m), user: user, seq: binary.BigEndian.Uint64(rest)}, rest[8:], true
}

// timesMember is the member of the event at p in its user's index.
func timesMember(p position) []byte {
	return binary.BigEndian.AppendUint64(sortkey.Time(p.ms), p.seq)
}

// hashPrefix is the first 8 bytes of a hex hash, nil if it is not one.
func hashPrefix(h string) []byte {
	if len(h) < 16 {
		return nil
	}
	b, err := hex.DecodeString(h[:16])
	if err != nil {
		return nil
	}
	return b
}

// AppendEvent appends an event to its user's chain. The hash is computed
// here, from the head read first; a script then appends the event, the
// entry of the user's index and the new head if the head is still the one
// read, and else another append came first and this one starts again from
// the head the script returns (at most appendTries times, after a short
// random pause). Before the script, the entries of audit:idx and, for a
// chain's first event, audit:users are written, in other slots: so no
// event is ever without them. So is, for a notifiable event, its member
// of outbox:due, and the script writes its outbox entry (see outbox.go).
// An entry written for an append that another overtook stays behind,
// pointing at a Seq whose event has another hash: Events and ChainUsers
// skip such entries. Three round trips, two more per conflict.
func (s *Store) AppendEvent(ctx context.Context, e mfa.Event) (mfa.Event, error) {
	if e.UserID == "" {
		return mfa.Event{}, errors.New("redisstore: append event: no user ID")
	}
	e.Time = time.UnixMilli(e.Time.UnixMilli()).UTC()
	k := userKeys(e.UserID)
	// The head this process last saw saves a round trip; if another
	// replica appended since, the script refuses it and returns the real
	// one.
	head, ok := s.heads.get(e.UserID)
	if !ok {
		var err error
		head, err = s.rdb.HMGet(ctx, k.auditHead(), "seq", "hash").Result()
		if err != nil {
			return mfa.Event{}, storeError("append event: read the chain's head", err)
		}
	}
	nonce := newNonce()
	for try := 0; try < appendTries; try++ {
		if try > 0 {
			if err := pause(ctx, try); err != nil {
				return mfa.Event{}, storeError("append event", err)
			}
		}
		out, next, err := s.tryAppend(ctx, k, e, head, nonce)
		switch {
		case err != nil:
			s.heads.forget(e.UserID)
			return out, err
		case next == nil:
			s.heads.put(e.UserID, []any{strconv.FormatUint(out.Seq, 10), out.Hash})
			return out, nil
		}
		head = next
	}
	return mfa.Event{}, fmt.Errorf("redisstore: append event: overtaken %d times by other appends to %q's chain", appendTries, e.UserID)
}

// tryAppend makes one attempt of AppendEvent, the call named by nonce (see
// opKey), after the chain's head (seq, hash; nil for none). It returns the
// event appended, or the chain's current head if another append came
// first.
func (s *Store) tryAppend(ctx context.Context, k keys, e mfa.Event, head []any, nonce string) (mfa.Event, []any, error) {
	last, _ := head[0].(string)
	e.PrevHash, _ = head[1].(string)
	lastSeq, err := strconv.ParseUint(cmp.Or(last, "0"), 10, 64)
	if err != nil {
		return mfa.Event{}, nil, fmt.Errorf("redisstore: append event: corrupt head of %q: %w", e.UserID, err)
	}
	e.Seq = lastSeq + 1
	e.Hash = mfa.EventHash(e)
	js, err := json.Marshal(e)
	if err != nil {
		return mfa.Event{}, nil, fmt.Errorf("redisstore: append event: %w", err)
	}
	p := position{ms: e.Time.UnixMilli(), user: e.UserID, seq: e.Seq}
	_, err = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		pl.ZAdd(ctx, auditIndexKey, redis.Z{Member: indexMember(p, hashPrefix(e.Hash))})
		if lastSeq == 0 {
			pl.ZAdd(ctx, auditUsersKey, redis.Z{Member: e.UserID})
		}
		indexNotification(ctx, pl, e)
		return nil
	})
	if err != nil {
		return mfa.Event{}, nil, storeError("append event: index", err)
	}
	keys, args := withNotification(k, e, []string{k.auditHead(), k.auditLog(), k.auditTimes()},
		[]any{lastSeq, e.Seq, js, e.Hash, timesMember(p), nonce})
	res, err := appendEventScript.Run(ctx, s.rdb, keys, args...).Slice()
	switch {
	case err != nil:
		return mfa.Event{}, nil, storeError("append event", err)
	case len(res) == 1:
		return e, nil, nil
	case len(res) == 3:
		return mfa.Event{}, res[1:], nil
	}
	return mfa.Event{}, nil, fmt.Errorf("redisstore: append event: unexpected script result of %d elements", len(res))
}

// pause waits a random moment before the try-th attempt of a conflicting
// append, longer as tries go on, so that appenders racing on one chain
// spread out.
func pause(ctx context.Context, try int) error {
	d := time.Duration(rand.Int64N(int64(min(try, 20)) * int64(200*time.Microsecond)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cursorVersion starts every cursor, so that a later format can tell its
// own from these.
const cursorVersion = 1

// encodeCursor returns the cursor of the page after the event at p:
// printable, URL-safe, at most 24 + 4/3 of the user ID's length.
func encodeCursor(p position) string {
	b := []byte{cursorVersion}
	b = binary.BigEndian.AppendUint64(b, uint64(p.ms))
	b = binary.BigEndian.AppendUint64(b, p.seq)
	return base64.RawURLEncoding.EncodeToString(append(b, p.user...))
}

func decodeCursor(s string) (position, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 18 || b[0] != cursorVersion {
		return position{}, fmt.Errorf("cursor: %w", mfa.ErrNotFound)
	}
	return position{ms: int64(binary.BigEndian.Uint64(b[1:])), seq: binary.BigEndian.Uint64(b[9:]), user: string(b[17:])}, nil
}

// listing is one run of Events over an index by time, newest first.
type listing struct {
	q     mfa.EventQuery
	key   string                                // the index
	bound func(position) []byte                 // the member of a position, without hash
	parse func([]byte) (position, []byte, bool) // the position (and hash prefix) of a member
}

func newListing(q mfa.EventQuery) listing {
	if q.UserID == "" {
		return listing{q: q, key: auditIndexKey, bound: func(p position) []byte { return indexMember(p, nil) }, parse: parseIndexMember}
	}
	return listing{q: q, key: userKeys(q.UserID).auditTimes(), bound: timesMember,
		parse: func(m []byte) (position, []byte, bool) {
			if len(m) != 16 {
				return position{}, nil, false
			}
			return position{ms: sortkey.ParseTime(m), user: q.UserID, seq: binary.BigEndian.Uint64(m[8:])}, nil, true
		}}
}

// rangeBounds are the max and min of the first ZREVRANGEBYLEX: below the
// cursor's position and Until, at or above Since.
func (l listing) rangeBounds(after *position) (string, string) {
	var upper []byte
	if !l.q.Until.IsZero() {
		upper = sortkey.Time(sortkey.CeilMilli(l.q.Until))
	}
	if after != nil {
		if b := l.bound(*after); upper == nil || bytes.Compare(b, upper) < 0 {
			upper = b
		}
	}
	maxBound, minBound := "+", "-"
	if upper != nil {
		maxBound = "(" + string(upper)
	}
	if !l.q.Since.IsZero() {
		minBound = "[" + string(sortkey.Time(sortkey.CeilMilli(l.q.Since)))
	}
	return maxBound, minBound
}

// found is an entry of an index with the event it names, as stored.
type found struct {
	p     position
	event mfa.Event
}

// run returns up to q.Limit selected events below after (the whole listing
// if nil) and the position of the next page, nil after the last. It reads
// the index a batch at a time and the batch's events in one pipeline.
func (l listing) run(ctx context.Context, s *Store, after *position) ([]mfa.Event, *position, error) {
	maxBound, minBound := l.rangeBounds(after)
	var out []found
	for {
		batch := l.q.Limit + 1 - len(out)
		members, err := s.rdb.ZRevRangeByLex(ctx, l.key, &redis.ZRangeBy{Max: maxBound, Min: minBound, Count: int64(batch)}).Result()
		if err != nil {
			return nil, nil, storeError("events", err)
		}
		fs, err := s.events(ctx, l, members)
		if err != nil {
			return nil, nil, err
		}
		for _, f := range fs {
			if len(l.q.Actions) == 0 || slices.Contains(l.q.Actions, f.event.Action) {
				out = append(out, f)
			}
		}
		if len(out) > l.q.Limit {
			last := out[l.q.Limit-1].p
			return eventsOf(out[:l.q.Limit]), &last, nil
		}
		if len(members) < batch {
			return eventsOf(out), nil, nil
		}
		maxBound = "(" + members[len(members)-1]
	}
}

func eventsOf(fs []found) []mfa.Event {
	out := make([]mfa.Event, len(fs))
	for i, f := range fs {
		out[i] = f.event
	}
	return out
}

// events reads the events that index members name, in one pipeline, and
// drops the members whose event is not there or, in audit:idx, has
// another hash (an entry left by an append that another overtook).
func (s *Store) events(ctx context.Context, l listing, members []string) ([]found, error) {
	type read struct {
		p    position
		hash []byte
		cmd  *redis.XMessageSliceCmd
	}
	reads := make([]read, 0, len(members))
	_, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, m := range members {
			p, hash, ok := l.parse([]byte(m))
			if !ok {
				return fmt.Errorf("corrupt audit index member %x", m)
			}
			id := strconv.FormatUint(p.seq, 10) + "-0"
			reads = append(reads, read{p: p, hash: hash, cmd: pl.XRange(ctx, userKeys(p.user).auditLog(), id, id)})
		}
		return nil
	})
	if err != nil {
		return nil, storeError("events", err)
	}
	out := make([]found, 0, len(reads))
	for _, r := range reads {
		msgs := r.cmd.Val()
		if len(msgs) != 1 {
			continue
		}
		e, err := decodeEvent(msgs[0])
		if err != nil {
			return nil, fmt.Errorf("redisstore: events: %w", err)
		}
		if r.hash != nil && !bytes.Equal(r.hash, hashPrefix(e.Hash)) {
			continue
		}
		out = append(out, found{p: r.p, event: e})
	}
	return out, nil
}

// decodeEvent decodes an entry of a chain's stream, as stored.
func decodeEvent(m redis.XMessage) (mfa.Event, error) {
	js, ok := m.Values["e"].(string)
	if !ok {
		return mfa.Event{}, fmt.Errorf("audit entry %s: no event", m.ID)
	}
	var e mfa.Event
	if err := json.Unmarshal([]byte(js), &e); err != nil {
		return mfa.Event{}, fmt.Errorf("audit entry %s: %w", m.ID, err)
	}
	return e, nil
}

// Events lists events newest first from audit:idx, or from the user's
// index for one user (see listing.run).
func (s *Store) Events(ctx context.Context, q mfa.EventQuery) ([]mfa.Event, string, error) {
	if err := mfa.CheckPage("limit", q.Limit); err != nil {
		return nil, "", fmt.Errorf("redisstore: events: %w", err)
	}
	var after *position
	if q.Cursor != "" {
		p, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("redisstore: events: %w", err)
		}
		after = &p
	}
	events, next, err := newListing(q).run(ctx, s, after)
	if err != nil {
		return nil, "", err
	}
	if next == nil {
		return events, "", nil
	}
	return events, encodeCursor(*next), nil
}

// Chain reads a chain with XRANGE from <from>-0: one round trip.
func (s *Store) Chain(ctx context.Context, userID string, from uint64, n int) ([]mfa.Event, error) {
	if err := mfa.CheckPage("n", n); err != nil {
		return nil, fmt.Errorf("redisstore: chain: %w", err)
	}
	msgs, err := s.rdb.XRangeN(ctx, userKeys(userID).auditLog(), strconv.FormatUint(max(from, 1), 10)+"-0", "+", int64(n)).Result()
	if err != nil {
		return nil, storeError("chain", err)
	}
	out := make([]mfa.Event, 0, len(msgs))
	for _, m := range msgs {
		e, err := decodeEvent(m)
		if err != nil {
			return nil, fmt.Errorf("redisstore: chain: %w", err)
		}
		out = append(out, e)
	}
	return out, nil
}

// ChainUsers lists audit:users from after, and keeps the users whose chain
// has a head: an entry left by a first append that never happened names a
// user without a chain.
func (s *Store) ChainUsers(ctx context.Context, after string, n int) ([]string, error) {
	if err := mfa.CheckPage("n", n); err != nil {
		return nil, fmt.Errorf("redisstore: chain users: %w", err)
	}
	minBound := "-"
	if after != "" {
		minBound = "(" + after
	}
	var out []string
	for len(out) < n {
		want := n - len(out)
		users, err := s.rdb.ZRangeByLex(ctx, auditUsersKey, &redis.ZRangeBy{Min: minBound, Max: "+", Count: int64(want)}).Result()
		if err != nil {
			return nil, storeError("chain users", err)
		}
		if len(users) == 0 {
			break
		}
		exists := make([]*redis.IntCmd, len(users))
		_, err = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for i, u := range users {
				exists[i] = pl.Exists(ctx, userKeys(u).auditHead())
			}
			return nil
		})
		if err != nil {
			return nil, storeError("chain users", err)
		}
		for i, u := range users {
			if exists[i].Val() == 1 {
				out = append(out, u)
			}
		}
		if len(users) < want {
			break
		}
		minBound = "(" + users[len(users)-1]
	}
	return out, nil
}

// maxCachedHeads bounds the chain heads a Store remembers.
const maxCachedHeads = 100_000

// headCache remembers the last head (seq, hash, as HMGET returns them) this
// process saw of each chain, so that an append need not read it first. It
// is a hint: the append script checks it against the stored head. Full, it
// starts over.
type headCache struct {
	mu    sync.Mutex
	max   int
	heads map[string][]any
}

func newHeadCache(max int) *headCache {
	return &headCache{max: max, heads: make(map[string][]any)}
}

func (c *headCache) get(userID string) ([]any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.heads[userID]
	return h, ok
}

func (c *headCache) put(userID string, head []any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.heads) >= c.max {
		clear(c.heads)
	}
	c.heads[userID] = head
}

func (c *headCache) forget(userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.heads, userID)
}
