package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/sortkey"
)

// PruneEvents implements mfa.Store in one transaction. It goes up the
// index of every user's events by time, below before, a batch of entries
// at a time; for each user of a batch it removes the chain's first events
// while they are before `before` and no later than the batch's last entry
// (so the oldest go first), and stops at max. The entries of a batch whose
// event was already gone (removed behind the store's back) go too.
func (s *Store) PruneEvents(ctx context.Context, before time.Time, max int) (int, error) {
	if err := mfa.CheckPruneMax(max); err != nil {
		return 0, fmt.Errorf("boltstore: prune events: %w", err)
	}
	var removed int
	err := s.w.write(ctx, func(tx *bolt.Tx) error {
		removed = 0
		p := pruning{tx: tx, cut: sortkey.CeilMilli(before)}
		from := []byte{}
		for removed < max {
			want := max - removed
			batch, next := p.scan(from, want)
			n, err := p.prune(batch, want)
			removed += n
			if err != nil || len(batch) < want {
				return err
			}
			from = next
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: prune events: %w", err)
	}
	return removed, nil
}

// pruning is one PruneEvents in its transaction.
type pruning struct {
	tx  *bolt.Tx
	cut int64 // events of a time in unix milliseconds below it can go
}

// scan returns up to n entries of the time index from key from on, below
// the cut, and the key after the last.
func (p pruning) scan(from []byte, n int) ([]position, []byte) {
	cut := sortkey.Time(p.cut)
	var out []position
	var last []byte
	c := p.tx.Bucket(auditTimeBucket).Cursor()
	for k, _ := c.Seek(from); k != nil && bytes.Compare(k, cut) < 0 && len(out) < n; k, _ = c.Next() {
		if pos, ok := parseTimeKey(k); ok {
			out = append(out, pos)
		}
		last = k
	}
	return out, append(bytes.Clone(last), 0)
}

// prune removes, for each user of batch, the chain's first events that can
// go and are no later than the batch's last entry, at most budget in all,
// and the batch's entries whose event is gone. It returns how many events
// it removed.
func (p pruning) prune(batch []position, budget int) (int, error) {
	if len(batch) == 0 {
		return 0, nil
	}
	bound := batch[len(batch)-1].ms
	firsts := map[string]uint64{} // each user's first Seq left
	removed := 0
	for _, pos := range batch {
		if _, done := firsts[pos.user]; done {
			continue
		}
		n, first, err := p.pruneChain(pos.user, bound, budget-removed)
		if err != nil {
			return removed, err
		}
		removed, firsts[pos.user] = removed+n, first
	}
	for _, pos := range batch {
		if pos.seq < firsts[pos.user] {
			if err := p.deleteEntries(pos); err != nil {
				return removed, err
			}
		}
	}
	return removed, nil
}

// pruneChain removes up to n of userID's first events, while they are
// before the cut and no later than bound (unix milliseconds). It returns
// how many it removed and the Seq of the chain's first event left (the
// head's + 1 if none is).
func (p pruning) pruneChain(userID string, bound int64, n int) (int, uint64, error) {
	prefix := sortkey.User(userID)
	var gone []mfa.Event
	first := uint64(0)
	c := p.tx.Bucket(auditBucket).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var e mfa.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return 0, 0, fmt.Errorf("audit event %x: %w", k, err)
		}
		if ms := e.Time.UnixMilli(); ms >= p.cut || ms > bound || len(gone) == n {
			first = e.Seq
			break
		}
		gone = append(gone, e)
	}
	if first == 0 {
		switch h := p.tx.Bucket(auditHeadsBucket).Get([]byte(userID)); {
		case h == nil: // no chain: every entry of the user's is left over
			first = math.MaxUint64
		case len(h) < 8:
			return 0, 0, fmt.Errorf("audit head of %q: corrupt", userID)
		default:
			first = binary.BigEndian.Uint64(h) + 1
		}
	}
	for _, e := range gone {
		if err := p.tx.Bucket(auditBucket).Delete(chainKey(userID, e.Seq)); err != nil {
			return 0, 0, err
		}
		if err := p.deleteEntries(position{ms: e.Time.UnixMilli(), user: userID, seq: e.Seq}); err != nil {
			return 0, 0, err
		}
	}
	return len(gone), first, nil
}

// deleteEntries deletes the index entries of the event at pos.
func (p pruning) deleteEntries(pos position) error {
	if err := p.tx.Bucket(auditTimeBucket).Delete(timeKey(pos)); err != nil {
		return err
	}
	return p.tx.Bucket(auditUserBucket).Delete(userTimeKey(pos))
}
