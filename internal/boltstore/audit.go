package boltstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/sortkey"
)

// The audit trail. A user's chain is its events under keys that sort by
// Seq; its head records the last Seq and Hash, so that an append reads
// one small value, and a removed last event still leaves a gap that a
// check of the chain sees. Two indexes list events newest first: every
// user's, and one user's. Keys hold a user ID written by sortkey.User, so
// that every key sorts by its parts in order whatever bytes the ID holds.
var (
	auditBucket      = []byte("audit")       // user · seq → event JSON, as stored
	auditHeadsBucket = []byte("audit_heads") // user ID → last seq (8 bytes) · its hash
	auditTimeBucket  = []byte("audit_time")  // time · user · seq → nothing
	auditUserBucket  = []byte("audit_user")  // user · time · seq → nothing
)

func seqPart(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// position is where an event sorts in a listing: newest first, by time,
// then user ID and Seq, all descending.
type position struct {
	ms   int64
	user string
	seq  uint64
}

func chainKey(userID string, seq uint64) []byte {
	return append(sortkey.User(userID), seqPart(seq)...)
}

func timeKey(p position) []byte {
	k := append(sortkey.Time(p.ms), sortkey.User(p.user)...)
	return append(k, seqPart(p.seq)...)
}

func parseTimeKey(k []byte) (position, bool) {
	if len(k) < 8 {
		return position{}, false
	}
	user, rest, ok := sortkey.ParseUser(k[8:])
	if !ok || len(rest) != 8 {
		return position{}, false
	}
	return position{ms: int64(binary.BigEndian.Uint64(k) ^ (1 << 63)), user: user, seq: binary.BigEndian.Uint64(rest)}, true
}

func userTimeKey(p position) []byte {
	k := append(sortkey.User(p.user), sortkey.Time(p.ms)...)
	return append(k, seqPart(p.seq)...)
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

// errBadCursor: a cursor that no listing returned.
var errBadCursor = fmt.Errorf("cursor: %w", mfa.ErrNotFound)

func decodeCursor(s string) (position, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 18 || b[0] != cursorVersion {
		return position{}, errBadCursor
	}
	return position{ms: int64(binary.BigEndian.Uint64(b[1:])), seq: binary.BigEndian.Uint64(b[9:]), user: string(b[17:])}, nil
}

// AppendEvent implements mfa.Store: the head, the chain, both indexes and,
// for a notifiable event, the outbox (enqueue) change in one transaction,
// so concurrent appends to a chain follow one another.
func (s *Store) AppendEvent(ctx context.Context, e mfa.Event) (mfa.Event, error) {
	if e.UserID == "" {
		return mfa.Event{}, errors.New("boltstore: append event: no user ID")
	}
	e.Time = time.UnixMilli(e.Time.UnixMilli()).UTC()
	var out mfa.Event
	err := s.w.write(ctx, func(tx *bolt.Tx) error {
		out = e
		user := []byte(e.UserID)
		heads := tx.Bucket(auditHeadsBucket)
		out.Seq, out.PrevHash = 1, ""
		if h := heads.Get(user); h != nil {
			if len(h) < 8 {
				return fmt.Errorf("audit head of %q: corrupt", e.UserID)
			}
			out.Seq, out.PrevHash = binary.BigEndian.Uint64(h)+1, string(h[8:])
		}
		out.Hash = mfa.EventHash(out)
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		p := position{ms: out.Time.UnixMilli(), user: out.UserID, seq: out.Seq}
		return errors.Join(
			tx.Bucket(auditBucket).Put(chainKey(out.UserID, out.Seq), b),
			tx.Bucket(auditTimeBucket).Put(timeKey(p), nil),
			tx.Bucket(auditUserBucket).Put(userTimeKey(p), nil),
			heads.Put(user, append(seqPart(out.Seq), out.Hash...)),
			enqueue(tx, out, b),
		)
	})
	if err != nil {
		return mfa.Event{}, fmt.Errorf("boltstore: append event: %w", err)
	}
	return out, nil
}

// getEvent returns the event seq of userID's chain as stored; false if it
// is not there.
func getEvent(tx *bolt.Tx, userID string, seq uint64) (mfa.Event, bool, error) {
	v := tx.Bucket(auditBucket).Get(chainKey(userID, seq))
	if v == nil {
		return mfa.Event{}, false, nil
	}
	var e mfa.Event
	if err := json.Unmarshal(v, &e); err != nil {
		return mfa.Event{}, false, fmt.Errorf("audit event %q/%d: %w", userID, seq, err)
	}
	return e, true, nil
}

// listing is one run of Events over an index: from its upper bound down.
type listing struct {
	q      mfa.EventQuery
	b      *bolt.Bucket
	prefix []byte                        // every key of the listing starts with it
	key    func(position) []byte         // the key of an event's position
	parse  func([]byte) (position, bool) // the position of a key
}

func newListing(tx *bolt.Tx, q mfa.EventQuery) listing {
	if q.UserID == "" {
		return listing{q: q, b: tx.Bucket(auditTimeBucket), key: timeKey, parse: parseTimeKey}
	}
	prefix := sortkey.User(q.UserID)
	return listing{q: q, b: tx.Bucket(auditUserBucket), prefix: prefix, key: userTimeKey,
		parse: func(k []byte) (position, bool) {
			rest := k[len(prefix):]
			if len(rest) != 16 {
				return position{}, false
			}
			return position{ms: int64(binary.BigEndian.Uint64(rest) ^ (1 << 63)), user: q.UserID, seq: binary.BigEndian.Uint64(rest[8:])}, true
		}}
}

// upper is the key every listed one sorts before; nil for none.
func (l listing) upper(after *position) []byte {
	var bound []byte
	if !l.q.Until.IsZero() {
		bound = append(slices.Clip(l.prefix), sortkey.Time(sortkey.CeilMilli(l.q.Until))...)
	} else if l.prefix != nil {
		// The prefix ends with 0x00 0x01: 0x00 0x02 sorts after all its keys.
		bound = append(slices.Clone(l.prefix[:len(l.prefix)-1]), 2)
	}
	if after != nil {
		if k := l.key(*after); bound == nil || bytes.Compare(k, bound) < 0 {
			bound = k
		}
	}
	return bound
}

// run returns up to q.Limit selected events below after (the whole
// listing if nil) and the position of the next page, nil after the last.
func (l listing) run(tx *bolt.Tx, after *position) ([]mfa.Event, *position, error) {
	c := l.b.Cursor()
	var k []byte
	if upper := l.upper(after); upper == nil {
		k, _ = c.Last()
	} else if k, _ = c.Seek(upper); k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	since := sortkey.CeilMilli(l.q.Since)
	var (
		out  []mfa.Event
		last position
	)
	for ; k != nil && bytes.HasPrefix(k, l.prefix); k, _ = c.Prev() {
		p, ok := l.parse(k)
		if !ok {
			return nil, nil, fmt.Errorf("corrupt audit index key %x", k)
		}
		if !l.q.Since.IsZero() && p.ms < since {
			break
		}
		e, found, err := getEvent(tx, p.user, p.seq)
		if err != nil {
			return nil, nil, err
		}
		if !found || len(l.q.Actions) > 0 && !slices.Contains(l.q.Actions, e.Action) {
			continue
		}
		if len(out) == l.q.Limit {
			// One more is selected: there is a next page.
			return out, &last, nil
		}
		out, last = append(out, e), p
	}
	return out, nil, nil
}

// Events implements mfa.Store.
func (s *Store) Events(ctx context.Context, q mfa.EventQuery) ([]mfa.Event, string, error) {
	if err := mfa.CheckPage("limit", q.Limit); err != nil {
		return nil, "", fmt.Errorf("boltstore: events: %w", err)
	}
	var after *position
	if q.Cursor != "" {
		p, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("boltstore: events: %w", err)
		}
		after = &p
	}
	var (
		events []mfa.Event
		next   *position
	)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		events, next, err = newListing(tx, q).run(tx, after)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("boltstore: events: %w", err)
	}
	if next == nil {
		return events, "", nil
	}
	return events, encodeCursor(*next), nil
}

// Chain implements mfa.Store.
func (s *Store) Chain(ctx context.Context, userID string, from uint64, n int) ([]mfa.Event, error) {
	if err := mfa.CheckPage("n", n); err != nil {
		return nil, fmt.Errorf("boltstore: chain: %w", err)
	}
	out := []mfa.Event{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		prefix := sortkey.User(userID)
		c := tx.Bucket(auditBucket).Cursor()
		for k, v := c.Seek(chainKey(userID, max(from, 1))); k != nil && bytes.HasPrefix(k, prefix) && len(out) < n; k, v = c.Next() {
			var e mfa.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("audit event %x: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: chain: %w", err)
	}
	return out, nil
}

// ChainUsers implements mfa.Store.
func (s *Store) ChainUsers(ctx context.Context, after string, n int) ([]string, error) {
	if err := mfa.CheckPage("n", n); err != nil {
		return nil, fmt.Errorf("boltstore: chain users: %w", err)
	}
	var out []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = nil
		c := tx.Bucket(auditHeadsBucket).Cursor()
		k, _ := c.Seek([]byte(after))
		if k != nil && after != "" && string(k) == after {
			k, _ = c.Next()
		}
		for ; k != nil && len(out) < n; k, _ = c.Next() {
			out = append(out, string(k))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: chain users: %w", err)
	}
	return out, nil
}
