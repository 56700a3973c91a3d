// Package sortkey writes user IDs and times as bytes that sort as the
// values do, for the keys of the stores' time-ordered indexes (bbolt keys,
// Redis sorted-set members compared byte by byte).
package sortkey

import (
	"encoding/binary"
	"time"
)

// User returns userID as a key part that sorts as the ID does and ends where
// it ends: each 0x00 is written 0x00 0xff, and the part is closed by
// 0x00 0x01, which no written ID holds.
func User(userID string) []byte {
	b := make([]byte, 0, len(userID)+2)
	for i := 0; i < len(userID); i++ {
		b = append(b, userID[i])
		if userID[i] == 0 {
			b = append(b, 0xff)
		}
	}
	return append(b, 0, 1)
}

// ParseUser reads a user ID written by User at the start of b and returns
// it and the rest of b; false if b does not start with one.
func ParseUser(b []byte) (string, []byte, bool) {
	var id []byte
	for i := 0; i+1 < len(b); i++ {
		if b[i] != 0 {
			id = append(id, b[i])
			continue
		}
		i++
		switch b[i] {
		case 0xff:
			id = append(id, 0)
		case 1:
			return string(id), b[i+1:], true
		default:
			return "", nil, false
		}
	}
	return "", nil, false
}

// Time returns a time in unix milliseconds as 8 bytes that sort as the
// times do, before 1970 too.
func Time(ms int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(ms)^(1<<63))
}

// ParseTime reads 8 bytes written by Time.
func ParseTime(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

// CeilMilli is t in unix milliseconds, rounded up: a time kept in whole
// milliseconds is at or after t if and only if it is at or after this.
func CeilMilli(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}
