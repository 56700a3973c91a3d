package seal_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/seal"
)

func key(id string, fill byte) seal.Key {
	return seal.Key{ID: id, Bytes: bytes.Repeat([]byte{fill}, seal.KeySize)}
}

func newRing(t *testing.T, keys ...seal.Key) *seal.Ring {
	t.Helper()
	r, err := seal.NewRing(keys)
	if err != nil {
		t.Fatalf("NewRing: %v", err)
	}
	return r
}

func TestSealOpenRoundTrip(t *testing.T) {
	r := newRing(t, key("k1", 1))
	for _, plain := range [][]byte{[]byte("totp seed 20 bytes.."), {}, bytes.Repeat([]byte{0xff}, 4096)} {
		id, ct, err := r.Seal(plain, []byte("user-1/factor-1"))
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		if id != "k1" {
			t.Errorf("Seal key id = %q, want k1", id)
		}
		if len(plain) >= 8 && bytes.Contains(ct, plain) {
			t.Errorf("ciphertext contains the plaintext")
		}
		got, err := r.Open(id, ct, []byte("user-1/factor-1"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, plain) {
			t.Errorf("Open = %x, want %x", got, plain)
		}
	}
}

func TestSealFreshNonce(t *testing.T) {
	r := newRing(t, key("k1", 1))
	_, a, err := r.Seal([]byte("same"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := r.Seal([]byte("same"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Errorf("two seals of the same plaintext are equal (%x): nonce reused", a)
	}
}

func TestOpenFailures(t *testing.T) {
	r := newRing(t, key("k1", 1))
	ad := []byte("user-1/factor-1")
	id, ct, err := r.Seal([]byte("secret seed"), ad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(ct)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name    string
		id      string
		ct      []byte
		ad      []byte
		wantErr error
	}{
		{"other additional data", id, ct, []byte("user-2/factor-1"), seal.ErrOpen},
		{"no additional data", id, ct, nil, seal.ErrOpen},
		{"tampered nonce", id, flip(0), ad, seal.ErrOpen},
		{"tampered body", id, flip(12), ad, seal.ErrOpen},
		{"tampered tag", id, flip(len(ct) - 1), ad, seal.ErrOpen},
		{"extra byte", id, append(bytes.Clone(ct), 0), ad, seal.ErrOpen},
		{"truncated by one", id, ct[:len(ct)-1], ad, seal.ErrOpen},
		{"nonce and tag only length", id, ct[:12+16], ad, seal.ErrOpen},
		{"shorter than nonce and tag", id, ct[:12+15], ad, seal.ErrOpen},
		{"nonce only", id, ct[:12], ad, seal.ErrOpen},
		{"shorter than nonce", id, ct[:5], ad, seal.ErrOpen},
		{"empty", id, []byte{}, ad, seal.ErrOpen},
		{"nil", id, nil, ad, seal.ErrOpen},
		{"unknown key id", "k9", ct, ad, seal.ErrUnknownKey},
		{"empty key id", "", ct, ad, seal.ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Open(tt.id, tt.ct, tt.ad)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Open = %q, %v; want error %v", got, err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("Open returned plaintext %q with an error", got)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	a := newRing(t, key("k1", 1))
	b := newRing(t, key("k2", 2), key("k1", 1))
	if got := b.PrimaryID(); got != "k2" {
		t.Errorf("B.PrimaryID() = %q, want k2", got)
	}
	ad := []byte("u/f")

	idA, ctA, err := a.Seal([]byte("old"), ad)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Open(idA, ctA, ad)
	if err != nil || string(got) != "old" {
		t.Errorf("B.Open(sealed by A under %s) = %q, %v; want \"old\", nil", idA, got, err)
	}

	idB, ctB, err := b.Seal([]byte("new"), ad)
	if err != nil {
		t.Fatal(err)
	}
	if idB != "k2" {
		t.Errorf("B seals under %q, want k2", idB)
	}
	if got, err := a.Open(idB, ctB, ad); !errors.Is(err, seal.ErrUnknownKey) {
		t.Errorf("A.Open(sealed under k2) = %q, %v; want ErrUnknownKey", got, err)
	}
	// Even told the ciphertext is k1's, A cannot open it.
	if got, err := a.Open("k1", ctB, ad); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("A.Open(k2 ciphertext labelled k1) = %q, %v; want ErrOpen", got, err)
	}
}

func TestNewRingErrors(t *testing.T) {
	tests := []struct {
		name    string
		keys    []seal.Key
		wantErr string
	}{
		{"no key", nil, "no key"},
		{"empty id", []seal.Key{key("", 1)}, "id"},
		{"id with space", []seal.Key{key("k 1", 1)}, "id"},
		{"id with colon", []seal.Key{key("k:1", 1)}, "id"},
		{"id too long", []seal.Key{key(strings.Repeat("k", 33), 1)}, "id"},
		{"second id bad", []seal.Key{key("k1", 1), key("bad/id", 2)}, "key 2"},
		{"16-byte key", []seal.Key{{ID: "k1", Bytes: make([]byte, 16)}}, "16 bytes, want 32"},
		{"33-byte key", []seal.Key{{ID: "k1", Bytes: make([]byte, 33)}}, "33 bytes, want 32"},
		{"empty key", []seal.Key{{ID: "k1"}}, "0 bytes"},
		{"duplicate id", []seal.Key{key("k1", 1), key("k2", 2), key("k1", 3)}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := seal.NewRing(tt.keys)
			if err == nil {
				t.Fatalf("NewRing = %v, nil; want an error mentioning %q", r, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewRing error = %q, want it to mention %q", err, tt.wantErr)
			}
		})
	}
	// The longest and most varied valid id.
	if _, err := seal.NewRing([]seal.Key{key("A-z_0."+strings.Repeat("x", 26), 1)}); err != nil {
		t.Errorf("NewRing with a valid 32-character id: %v", err)
	}
}

func TestParseKeys(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, 32)
	k2 := bytes.Repeat([]byte{2}, 32)
	b1 := base64.StdEncoding.EncodeToString(k1)
	b2 := base64.StdEncoding.EncodeToString(k2)
	tests := []struct {
		name string
		text string
		want []seal.Key
	}{
		{"one", "k1:" + b1, []seal.Key{{"k1", k1}}},
		{"comma-separated", "k2:" + b2 + ",k1:" + b1, []seal.Key{{"k2", k2}, {"k1", k1}}},
		{"comma and spaces", " k2 : " + b2 + " , k1:" + b1 + " ,", []seal.Key{{"k2", k2}, {"k1", k1}}},
		{"file with comments and blank lines",
			"# sealing keys\n\nk2:" + b2 + "\n   \n  # old key\nk1:" + b1 + "\n",
			[]seal.Key{{"k2", k2}, {"k1", k1}}},
		{"CRLF lines", "k2:" + b2 + "\r\nk1:" + b1 + "\r\n", []seal.Key{{"k2", k2}, {"k1", k1}}},
		{"first seals: order kept", "k1:" + b1 + "\nk2:" + b2, []seal.Key{{"k1", k1}, {"k2", k2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := seal.ParseKeys(tt.text)
			if err != nil {
				t.Fatalf("ParseKeys: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseKeys mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseKeysErrors(t *testing.T) {
	// Key material that must never appear in an error message.
	const material = "c2VjcmV0LWtleS1tYXRlcmlhbC0zMi1ieXRlcy4uLi4="
	b1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	tests := []struct {
		name    string
		text    string
		wantErr string
	}{
		{"empty", "", "no key"},
		{"only comments", "# nothing\n\n  \n", "no key"},
		{"only commas", " , ,", "no key"},
		{"missing colon", material, "key 1"},
		{"missing colon in second", "k1:" + b1 + "," + material, "key 2"},
		{"bad base64", "k1:" + material[:len(material)-3] + "!!", "key 1"},
		{"bad base64 padding", "k1:" + material[:len(material)-1], "key 1"},
		{"url-safe alphabet", "k1:" + strings.ReplaceAll(material, "=", "") + "-_", "key 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := seal.ParseKeys(tt.text)
			if err == nil {
				t.Fatalf("ParseKeys = %v, nil; want an error", got)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("ParseKeys error = %q, want it to mention %q", msg, tt.wantErr)
			}
			for _, leak := range []string{material[:16], b1[:16]} {
				if strings.Contains(msg, leak) {
					t.Errorf("ParseKeys error = %q contains key material %q", msg, leak)
				}
			}
		})
	}
}

// TestLoadRingErrorsHideKeyMaterial feeds LoadRing, the path from the
// environment and key file to a ring, key lines mistyped so that key
// material lands where an id is expected. The error is printed at start-up
// and goes to logs, so it must not hold the key.
func TestLoadRingErrorsHideKeyMaterial(t *testing.T) {
	const material = "c2VjcmV0LWtleS1tYXRlcmlhbC0zMi1ieXRlcy4uLi4="
	tests := []struct {
		name string
		text string
	}{
		{"swapped id and key", material + ":k1"},
		{"space instead of colon, then a colon", "k1 " + material + ":"},
		{"key then trailing colon", material + ":"},
		{"missing colon", material},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := seal.LoadRing(tt.text, "")
			if err == nil {
				t.Fatalf("LoadRing(%q) = %v, nil; want an error", tt.text, r)
			}
			if strings.Contains(err.Error(), material[:16]) {
				t.Errorf("LoadRing error = %q contains key material", err)
			}
		})
	}
}

func TestGenerateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seal.keys")
	if err := seal.GenerateKeyFile(path, "gen1"); err != nil {
		t.Fatalf("GenerateKeyFile: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %v, want -rw-------", got)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	err = seal.GenerateKeyFile(path, "gen2")
	if !errors.Is(err, os.ErrExist) {
		t.Errorf("GenerateKeyFile over an existing file = %v, want os.ErrExist", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("GenerateKeyFile changed an existing file:\nbefore %q\nafter  %q", before, after)
	}

	r, err := seal.LoadRing("", path)
	if err != nil {
		t.Fatalf("LoadRing(generated file): %v", err)
	}
	if got := r.PrimaryID(); got != "gen1" {
		t.Errorf("PrimaryID = %q, want gen1", got)
	}
	id, ct, err := r.Seal([]byte("x"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	// A second load of the same file opens what the first sealed.
	r2, err := seal.LoadRing("", path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r2.Open(id, ct, []byte("ad")); err != nil || string(got) != "x" {
		t.Errorf("reloaded ring Open = %q, %v; want \"x\", nil", got, err)
	}

	// Two generated files hold different keys.
	path2 := filepath.Join(t.TempDir(), "seal.keys")
	if err := seal.GenerateKeyFile(path2, "gen1"); err != nil {
		t.Fatal(err)
	}
	r3, err := seal.LoadRing("", path2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r3.Open(id, ct, []byte("ad")); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("another generated key opened the ciphertext: %v", err)
	}
}

func TestLoadRing(t *testing.T) {
	b1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	r, err := seal.LoadRing("k1:"+b1, "")
	if err != nil {
		t.Fatalf("LoadRing(inline): %v", err)
	}
	if r.PrimaryID() != "k1" {
		t.Errorf("PrimaryID = %q, want k1", r.PrimaryID())
	}
	if _, err := seal.LoadRing("", filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadRing(missing file) = %v, want os.ErrNotExist", err)
	}
	if _, err := seal.LoadRing("", ""); err == nil {
		t.Error("LoadRing with neither keys nor file = nil error, want one")
	}
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	if _, err := seal.LoadRing("k1:"+short, ""); err == nil {
		t.Error("LoadRing with a 16-byte key = nil error, want one")
	}
}

func FuzzParseKeys(f *testing.F) {
	b1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	for _, s := range []string{"", "k1:" + b1, "#x\nk1:" + b1 + ",k2:" + b1, ":", ",,,", "k1:", ":" + b1, "k1:%%%", "\x00:\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		keys, err := seal.ParseKeys(text)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatalf("ParseKeys(%q) = no keys and no error", text)
		}
		// Whatever parses either builds a ring or is refused; never a panic.
		if r, err := seal.NewRing(keys); err == nil {
			if _, _, err := r.Seal([]byte("p"), nil); err != nil {
				t.Fatalf("Seal with a ring from %q: %v", text, err)
			}
		}
	})
}
