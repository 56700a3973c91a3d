package sortkey

import (
	"bytes"
	"slices"
	"testing"
)

// TestUserOrderAndRoundTrip: written IDs sort as the IDs do, even when one
// is a prefix of another or holds 0x00, and read back with the rest intact.
func TestUserOrderAndRoundTrip(t *testing.T) {
	ids := []string{"", "a", "a\x00", "a\x00b", "a\x01", "ab", "b", "\x00", "\xff"}
	slices.Sort(ids)
	for i, id := range ids {
		w := User(id)
		got, rest, ok := ParseUser(append(w, "rest"...))
		if !ok || got != id || string(rest) != "rest" {
			t.Errorf("ParseUser(User(%q)+rest) = %q, %q, %v", id, got, rest, ok)
		}
		if i > 0 && bytes.Compare(append(User(ids[i-1]), 0xff), append(w, 0x00)) >= 0 {
			t.Errorf("User(%q) followed by anything does not sort before User(%q)", ids[i-1], id)
		}
	}
	for _, bad := range [][]byte{nil, []byte("abc"), {'a', 0}, {'a', 0, 2}} {
		if _, _, ok := ParseUser(bad); ok {
			t.Errorf("ParseUser(%q) accepted", bad)
		}
	}
}

// TestTimeOrder: written times sort as the times do, negative ones first.
func TestTimeOrder(t *testing.T) {
	ms := []int64{-1 << 62, -1, 0, 1, 1_790_000_000_123, 1 << 62}
	for i, m := range ms {
		if ParseTime(Time(m)) != m {
			t.Errorf("ParseTime(Time(%d)) = %d", m, ParseTime(Time(m)))
		}
		if i > 0 && bytes.Compare(Time(ms[i-1]), Time(m)) >= 0 {
			t.Errorf("Time(%d) does not sort before Time(%d)", ms[i-1], m)
		}
	}
}
