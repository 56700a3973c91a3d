package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/sortkey"
)

// The outbox (mfa.Outbox): a notification is written by AppendEvent, in the
// transaction that appends its event (enqueue), so that it exists if and
// only if the event does. Two buckets:
//
//	outbox      user · seq (chainKey) → outboxRec
//	outbox_due  due · user · seq      → nothing: the notifications by due time
//
// Each change of a notification (claim, retry, complete, drop) is one
// transaction, so a claim is atomic against every other. The buckets are
// created by the first write that needs them (outboxBuckets), not by Open: a
// store that never enqueued has neither, and reads treat them as empty.
var (
	outboxBucket    = []byte("outbox")
	outboxDueBucket = []byte("outbox_due")
)

// outboxRec is a notification as stored.
type outboxRec struct {
	Due      int64           `json:"due"` // unix ms: claimable from then on
	Attempts int             `json:"attempts,omitempty"`
	Claim    uint64          `json:"claim,omitempty"`
	Event    json.RawMessage `json:"event"` // the event as appended
}

// maxClaim bounds the notifications of one claim.
const maxClaim = 1000

// outboxBuckets returns the outbox's buckets in a write transaction,
// creating them the first time.
func outboxBuckets(tx *bolt.Tx) (entries, due *bolt.Bucket, err error) {
	if entries, err = tx.CreateBucketIfNotExists(outboxBucket); err != nil {
		return nil, nil, err
	}
	if due, err = tx.CreateBucketIfNotExists(outboxDueBucket); err != nil {
		return nil, nil, err
	}
	return entries, due, nil
}

func dueKey(ms int64, entry []byte) []byte { return append(sortkey.Time(ms), entry...) }

// enqueue puts e, just appended as js, in the outbox if it is notifiable;
// AppendEvent calls it in its transaction.
func enqueue(tx *bolt.Tx, e mfa.Event, js []byte) error {
	if !mfa.Notifiable(e) {
		return nil
	}
	entries, due, err := outboxBuckets(tx)
	if err != nil {
		return err
	}
	rec := outboxRec{Due: e.Time.UnixMilli(), Event: js}
	return putNotification(entries, due, chainKey(e.UserID, e.Seq), rec)
}

func putNotification(entries, due *bolt.Bucket, k []byte, rec outboxRec) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return errors.Join(entries.Put(k, b), due.Put(dueKey(rec.Due, k), nil))
}

// getNotification reads the notification under k; nil if there is none.
func getNotification(entries *bolt.Bucket, k []byte) (*outboxRec, error) {
	v := entries.Get(k)
	if v == nil {
		return nil, nil
	}
	rec := &outboxRec{}
	if err := json.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("outbox entry %x: %w", k, err)
	}
	return rec, nil
}

// entryKey is the key of the notification id.
func entryKey(id string) ([]byte, error) {
	user, seq, err := mfa.ParseEventID(id)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", id, err)
	}
	return chainKey(user, seq), nil
}

// ClaimNotifications implements mfa.Outbox: one transaction reads the due
// index from its start up to now and moves each entry to now + lease.
func (s *Store) ClaimNotifications(ctx context.Context, now time.Time, lease time.Duration, max int) ([]mfa.Notification, error) {
	if lease <= 0 || max < 1 || max > maxClaim {
		return nil, fmt.Errorf("boltstore: claim notifications: lease %s, max %d: want a lease > 0 and max 1 to %d", lease, max, maxClaim)
	}
	nowMS := now.UnixMilli()
	until := nowMS + ceilMilliDuration(lease)
	var out []mfa.Notification
	err := s.w.write(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		entries, due, err := outboxBuckets(tx)
		if err != nil {
			return err
		}
		var keys [][]byte
		c := due.Cursor()
		for k, _ := c.First(); k != nil && len(keys) < max && int64(binary.BigEndian.Uint64(k)^(1<<63)) <= nowMS; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			n, ok, err := claimOne(entries, due, k, until)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: claim notifications: %w", err)
	}
	return out, nil
}

// claimOne leases the notification of the due index's key dk until until
// (unix ms). An index key without its entry is removed, and claims nothing.
func claimOne(entries, due *bolt.Bucket, dk []byte, until int64) (mfa.Notification, bool, error) {
	k := dk[8:]
	rec, err := getNotification(entries, k)
	if err != nil || rec == nil {
		return mfa.Notification{}, false, errors.Join(err, due.Delete(dk))
	}
	var e mfa.Event
	if err := json.Unmarshal(rec.Event, &e); err != nil {
		return mfa.Notification{}, false, fmt.Errorf("outbox entry %x: event: %w", k, err)
	}
	rec.Due, rec.Claim = until, rec.Claim+1
	if err := errors.Join(due.Delete(dk), putNotification(entries, due, k, *rec)); err != nil {
		return mfa.Notification{}, false, err
	}
	return mfa.Notification{Event: e, Attempts: rec.Attempts, Claim: rec.Claim, LeasedUntil: time.UnixMilli(until).UTC()}, true, nil
}

// ceilMilliDuration is d in milliseconds, rounded up.
func ceilMilliDuration(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// CompleteNotification implements mfa.Outbox.
func (s *Store) CompleteNotification(ctx context.Context, id string) error {
	k, err := entryKey(id)
	if err != nil {
		return fmt.Errorf("boltstore: complete notification: %w", err)
	}
	err = s.w.write(ctx, func(tx *bolt.Tx) error {
		entries, due, err := outboxBuckets(tx)
		if err != nil {
			return err
		}
		rec, err := getNotification(entries, k)
		if err != nil || rec == nil {
			return err
		}
		return errors.Join(due.Delete(dueKey(rec.Due, k)), entries.Delete(k))
	})
	if err != nil {
		return fmt.Errorf("boltstore: complete notification: %w", err)
	}
	return nil
}

// RetryNotification implements mfa.Outbox.
func (s *Store) RetryNotification(ctx context.Context, id string, claim uint64, next time.Time, attempts int) error {
	k, err := entryKey(id)
	if err == nil && attempts < 0 {
		err = fmt.Errorf("attempts %d: want 0 or more", attempts)
	}
	if err != nil {
		return fmt.Errorf("boltstore: retry notification: %w", err)
	}
	err = s.w.write(ctx, func(tx *bolt.Tx) error {
		entries, due, err := outboxBuckets(tx)
		if err != nil {
			return err
		}
		rec, err := getNotification(entries, k)
		switch {
		case err != nil:
			return err
		case rec == nil:
			return mfa.ErrNotFound
		case rec.Claim != claim:
			return mfa.ErrConflict
		}
		if err := due.Delete(dueKey(rec.Due, k)); err != nil {
			return err
		}
		rec.Due, rec.Attempts = next.UnixMilli(), attempts
		return putNotification(entries, due, k, *rec)
	})
	if err != nil {
		return fmt.Errorf("boltstore: retry notification %s: %w", id, err)
	}
	return nil
}

// PendingNotifications implements mfa.Outbox: the keys of the outbox bucket.
func (s *Store) PendingNotifications(ctx context.Context) (int, error) {
	n := 0
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if b := tx.Bucket(outboxBucket); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: pending notifications: %w", err)
	}
	return n, nil
}

// DropNotifications implements mfa.Outbox. It reads every entry: the
// outbox holds a few days of notifications at most, and it is called
// rarely (by a server without a webhook).
func (s *Store) DropNotifications(ctx context.Context, before time.Time) (int, error) {
	limit := sortkey.CeilMilli(before)
	dropped := 0
	err := s.w.write(ctx, func(tx *bolt.Tx) error {
		dropped = 0
		entries, due, err := outboxBuckets(tx)
		if err != nil {
			return err
		}
		var old [][]byte
		var dues []int64
		err = entries.ForEach(func(k, v []byte) error {
			var rec struct {
				Due   int64 `json:"due"`
				Event struct {
					Time time.Time `json:"time"`
				} `json:"event"`
			}
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("outbox entry %x: %w", k, err)
			}
			if rec.Event.Time.UnixMilli() < limit {
				old, dues = append(old, bytes.Clone(k)), append(dues, rec.Due)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i, k := range old {
			if err := errors.Join(due.Delete(dueKey(dues[i], k)), entries.Delete(k)); err != nil {
				return err
			}
		}
		dropped = len(old)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: drop notifications: %w", err)
	}
	return dropped, nil
}
