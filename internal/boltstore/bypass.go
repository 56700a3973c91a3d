package boltstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/sortkey"
)

// Bypass codes (mfa.Bypasses). Each bypass is a record under its ID; each
// user with a bypass that may still be consumed has a current entry, its
// ID and code hash; an index by time of issue lists them. The buckets are
// made by the first write that needs them (a store file made before them
// has none): a read treats a missing bucket as empty. Sweep leaves them
// alone: bypasses are kept for review.
var (
	bypassBucket        = []byte("bypasses")       // bypass ID → mfa.Bypass JSON
	bypassCurrentBucket = []byte("bypass_current") // user ID → currentBypass JSON
	bypassTimeBucket    = []byte("bypass_time")    // issued ms (sortkey.Time) · bypass ID → nothing
	bypassBuckets       = [][]byte{bypassBucket, bypassCurrentBucket, bypassTimeBucket}
)

// currentBypass is a user's bypass that may still be consumed.
type currentBypass struct {
	ID   string `json:"id"`
	Hash string `json:"hash"`
}

// makeBypassBuckets creates the bypass buckets in tx if they are missing.
func makeBypassBuckets(tx *bolt.Tx) error {
	for _, b := range bypassBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// milli is t in whole milliseconds, UTC, as the store keeps it.
func milli(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

func bypassTimeKey(ms int64, id string) []byte { return append(sortkey.Time(ms), id...) }

func getBypass(tx *bolt.Tx, id string) (mfa.Bypass, bool, error) {
	bk := tx.Bucket(bypassBucket)
	if bk == nil {
		return mfa.Bypass{}, false, nil
	}
	v := bk.Get([]byte(id))
	if v == nil {
		return mfa.Bypass{}, false, nil
	}
	var b mfa.Bypass
	if err := json.Unmarshal(v, &b); err != nil {
		return mfa.Bypass{}, false, fmt.Errorf("bypass %s: %w", id, err)
	}
	return b, true, nil
}

func putBypass(tx *bolt.Tx, b mfa.Bypass) error {
	v, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return tx.Bucket(bypassBucket).Put([]byte(b.ID), v)
}

// PutBypass implements mfa.Store.
func (s *Store) PutBypass(ctx context.Context, b mfa.Bypass, codeHash string) error {
	if err := b.ValidateNew(codeHash); err != nil {
		return fmt.Errorf("boltstore: put bypass: %w", err)
	}
	b.IssuedAt, b.ExpiresAt = milli(b.IssuedAt), milli(b.ExpiresAt)
	cur, err := json.Marshal(currentBypass{ID: b.ID, Hash: codeHash})
	if err != nil {
		return fmt.Errorf("boltstore: put bypass: %w", err)
	}
	err = s.w.write(ctx, func(tx *bolt.Tx) error {
		if err := makeBypassBuckets(tx); err != nil {
			return err
		}
		return errors.Join(
			putBypass(tx, b),
			tx.Bucket(bypassTimeBucket).Put(bypassTimeKey(b.IssuedAt.UnixMilli(), b.ID), nil),
			tx.Bucket(bypassCurrentBucket).Put([]byte(b.UserID), cur),
		)
	})
	if err != nil {
		return fmt.Errorf("boltstore: put bypass: %w", err)
	}
	return nil
}

// ConsumeBypass implements mfa.Store.
func (s *Store) ConsumeBypass(ctx context.Context, userID, codeHash string, now time.Time) (mfa.Bypass, bool, error) {
	var (
		out mfa.Bypass
		ok  bool
	)
	err := s.w.write(ctx, func(tx *bolt.Tx) error {
		out, ok = mfa.Bypass{}, false
		curs := tx.Bucket(bypassCurrentBucket)
		if curs == nil {
			return nil
		}
		v := curs.Get([]byte(userID))
		if v == nil {
			return nil
		}
		var cur currentBypass
		if err := json.Unmarshal(v, &cur); err != nil {
			return fmt.Errorf("current bypass of %q: %w", userID, err)
		}
		if !secret.Equal(cur.Hash, codeHash) {
			return nil
		}
		b, found, err := getBypass(tx, cur.ID)
		if err != nil || !found || !b.UsedAt.IsZero() || !now.Before(b.ExpiresAt) {
			return err
		}
		b.UsedAt = milli(now)
		if err := errors.Join(putBypass(tx, b), curs.Delete([]byte(userID))); err != nil {
			return err
		}
		out, ok = b, true
		return nil
	})
	if err != nil {
		return mfa.Bypass{}, false, fmt.Errorf("boltstore: consume bypass: %w", err)
	}
	return out, ok, nil
}

// Bypass implements mfa.Store.
func (s *Store) Bypass(ctx context.Context, id string) (mfa.Bypass, error) {
	var (
		b     mfa.Bypass
		found bool
	)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		b, found, err = getBypass(tx, id)
		return err
	})
	if err == nil && !found {
		err = mfa.ErrNotFound
	}
	if err != nil {
		return mfa.Bypass{}, fmt.Errorf("boltstore: bypass: %w", err)
	}
	return b, nil
}

// ReviewBypass implements mfa.Store.
func (s *Store) ReviewBypass(ctx context.Context, id, reviewer, note string, now time.Time) (mfa.Bypass, error) {
	if reviewer == "" {
		return mfa.Bypass{}, errors.New("boltstore: review bypass: no reviewer")
	}
	// A refusal is returned through result, not as the batch function's
	// error: an error makes the group commit roll back and rerun its group.
	var (
		out    mfa.Bypass
		result error
	)
	err := s.w.write(ctx, func(tx *bolt.Tx) error {
		result = nil
		b, found, err := getBypass(tx, id)
		switch {
		case err != nil:
			return err
		case !found:
			result = mfa.ErrNotFound
			return nil
		case !b.ReviewedAt.IsZero():
			result = fmt.Errorf("reviewed by %q: %w", b.ReviewedBy, mfa.ErrConflict)
			return nil
		}
		b.ReviewedBy, b.ReviewNote, b.ReviewedAt = reviewer, note, milli(now)
		out = b
		return putBypass(tx, b)
	})
	if err == nil {
		err = result
	}
	if err != nil {
		return mfa.Bypass{}, fmt.Errorf("boltstore: review bypass: %w", err)
	}
	return out, nil
}

// encodeBypassCursor returns the cursor after a listed bypass: the
// version, the time of issue (ms) and the ID.
func encodeBypassCursor(ms int64, id string) string {
	b := binary.BigEndian.AppendUint64([]byte{cursorVersion}, uint64(ms))
	return base64.RawURLEncoding.EncodeToString(append(b, id...))
}

// decodeBypassCursor returns the index key of a cursor's bypass.
func decodeBypassCursor(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 9+16 || b[0] != cursorVersion || !mfa.IsBypassID(string(b[9:])) {
		return nil, fmt.Errorf("cursor: %w", mfa.ErrNotFound)
	}
	return bypassTimeKey(int64(binary.BigEndian.Uint64(b[1:])), string(b[9:])), nil
}

// Bypasses implements mfa.Store: the index by time, read downwards from
// the lower of Until and the cursor.
func (s *Store) Bypasses(ctx context.Context, q mfa.BypassQuery) ([]mfa.Bypass, string, error) {
	if err := mfa.CheckPage("limit", q.Limit); err != nil {
		return nil, "", fmt.Errorf("boltstore: bypasses: %w", err)
	}
	var upper []byte
	if !q.Until.IsZero() {
		upper = sortkey.Time(sortkey.CeilMilli(q.Until))
	}
	if q.Cursor != "" {
		k, err := decodeBypassCursor(q.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("boltstore: bypasses: %w", err)
		}
		if upper == nil || bytes.Compare(k, upper) < 0 {
			upper = k
		}
	}
	var (
		out  []mfa.Bypass
		next string
	)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, next, err = listBypasses(tx, q, upper)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("boltstore: bypasses: %w", err)
	}
	return out, next, nil
}

// listBypasses reads the index by time of tx from below upper (from its
// end if nil) down to q.Since.
func listBypasses(tx *bolt.Tx, q mfa.BypassQuery, upper []byte) ([]mfa.Bypass, string, error) {
	idx := tx.Bucket(bypassTimeBucket)
	if idx == nil {
		return nil, "", nil
	}
	c := idx.Cursor()
	var k []byte
	if upper == nil {
		k, _ = c.Last()
	} else if k, _ = c.Seek(upper); k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	var lower []byte
	if !q.Since.IsZero() {
		lower = sortkey.Time(sortkey.CeilMilli(q.Since))
	}
	var out []mfa.Bypass
	for ; k != nil && bytes.Compare(k, lower) >= 0; k, _ = c.Prev() {
		if len(k) != 8+16 {
			return nil, "", fmt.Errorf("corrupt bypass index key %x", k)
		}
		if len(out) == q.Limit {
			// One more is selected: there is a next page.
			last := out[len(out)-1]
			return out, encodeBypassCursor(last.IssuedAt.UnixMilli(), last.ID), nil
		}
		b, found, err := getBypass(tx, string(k[8:]))
		if err != nil {
			return nil, "", err
		}
		if !found {
			return nil, "", fmt.Errorf("bypass index key %x names no bypass", k)
		}
		out = append(out, b)
	}
	return out, "", nil
}
