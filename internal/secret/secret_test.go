package secret_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/secret"
)

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

func TestNewToken(t *testing.T) {
	urlSafe := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tok, err := secret.NewToken(rand.Reader)
		if err != nil {
			t.Fatalf("NewToken: %v", err)
		}
		v := tok.Reveal()
		if len(v) != 43 { // 32 bytes, unpadded base64
			t.Fatalf("NewToken length = %d (%q), want 43", len(v), v)
		}
		if !urlSafe.MatchString(v) {
			t.Fatalf("NewToken = %q, want only the URL-safe base64 alphabet", v)
		}
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || len(b) != 32 {
			t.Fatalf("NewToken %q decodes to %d bytes, %v; want 32", v, len(b), err)
		}
		if seen[v] {
			t.Fatalf("NewToken repeated %q", v)
		}
		seen[v] = true
	}
}

func TestNewTokenFromReader(t *testing.T) {
	// The token is the reader's 32 bytes, so a fixed reader gives a fixed
	// token: nothing but r is a source of randomness.
	r := bytes.NewReader(bytes.Repeat([]byte{0xfb}, 32))
	tok, err := secret.NewToken(r)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Reveal(), base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)); got != want {
		t.Errorf("NewToken = %q, want %q", got, want)
	}
	if _, err := secret.NewToken(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Error("NewToken with 31 bytes of randomness = nil error, want one")
	}
}

func TestNewCode(t *testing.T) {
	tests := []struct {
		groups int
		re     string
	}{
		{1, `^[` + crockford + `]{4}$`},
		{2, `^[` + crockford + `]{4}-[` + crockford + `]{4}$`},
		{3, `^[` + crockford + `]{4}(-[` + crockford + `]{4}){2}$`},
		{4, `^[` + crockford + `]{4}(-[` + crockford + `]{4}){3}$`},
	}
	for _, tt := range tests {
		re := regexp.MustCompile(tt.re)
		seen := map[string]bool{}
		for i := 0; i < 200; i++ {
			c, err := secret.NewCode(rand.Reader, tt.groups)
			if err != nil {
				t.Fatalf("NewCode(%d): %v", tt.groups, err)
			}
			v := c.Reveal()
			if !re.MatchString(v) {
				t.Fatalf("NewCode(%d) = %q, want %s", tt.groups, v, tt.re)
			}
			if tt.groups >= 3 && seen[v] {
				t.Fatalf("NewCode(%d) repeated %q", tt.groups, v)
			}
			seen[v] = true
			norm, ok := secret.NormalizeCode(v)
			if !ok || norm != strings.ReplaceAll(v, "-", "") {
				t.Fatalf("NormalizeCode(%q) = %q, %v; want the code without dashes", v, norm, ok)
			}
		}
	}
}

// TestNewCodeEntropy checks every character of a 3-group code carries its 5
// bits: each of the 12 positions takes all 32 values over enough draws, so
// the code has 60 bits and no position is stuck (as a padding position
// would be).
func TestNewCodeEntropy(t *testing.T) {
	const groups, n = 3, 12
	if bits := float64(n) * math.Log2(float64(len(crockford))); bits < 60 {
		t.Fatalf("%d characters of a %d-letter alphabet carry %.0f bits, want at least 60", n, len(crockford), bits)
	}
	var values [n]map[byte]bool
	for i := range values {
		values[i] = map[byte]bool{}
	}
	for i := 0; i < 3000; i++ {
		c, err := secret.NewCode(rand.Reader, groups)
		if err != nil {
			t.Fatal(err)
		}
		v := strings.ReplaceAll(c.Reveal(), "-", "")
		for j := 0; j < n; j++ {
			values[j][v[j]] = true
		}
	}
	for j, vs := range values {
		if len(vs) != len(crockford) {
			t.Errorf("position %d took %d distinct values in 3000 codes, want all %d", j, len(vs), len(crockford))
		}
	}
	// Deterministic check: all-ones randomness makes every 5-bit group 31,
	// the last letter, Z. A position filled from padding would differ.
	c, err := secret.NewCode(bytes.NewReader(bytes.Repeat([]byte{0xff}, 8)), groups)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Reveal(), "ZZZZ-ZZZZ-ZZZZ"; got != want {
		t.Errorf("NewCode(all ones) = %q, want %q", got, want)
	}
	if _, err := secret.NewCode(bytes.NewReader(make([]byte, 7)), groups); err == nil {
		t.Error("NewCode(3) with 7 bytes of randomness = nil error, want one (60 bits need 8 bytes)")
	}
}

func TestNormalizeCode(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"7KQ2-M9XD-4TPA", "7KQ2M9XD4TPA", true},
		{"7kq2-m9xd-4tpa", "7KQ2M9XD4TPA", true},
		{"7kq2 m9xd 4tpa", "7KQ2M9XD4TPA", true},
		{"  7KQ2--M9XD - 4TPA  ", "7KQ2M9XD4TPA", true},
		{"I1L1-i1l1", "11111111", true},
		{"O0o0", "0000", true},
		{"ABCDEFGHJKMNPQRSTVWXYZ", "ABCDEFGHJKMNPQRSTVWXYZ", true},
		{"0123456789", "0123456789", true},
		{"7KQ2-U9XD", "", false},
		{"u", "", false},
		{"7KQ2_M9XD", "", false},
		{"7KQ2.M9XD", "", false},
		{"7KQ2/M9XD", "", false},
		{"7KQ2\tM9XD", "", false},
		{"7KQ2\nM9XD", "", false},
		{"7KQ2+M9XD", "", false},
		{"7KQ2é", "", false},
		{"７KQ2", "", false}, // full-width digit
	}
	for _, tt := range tests {
		got, ok := secret.NormalizeCode(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("NormalizeCode(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestHashAndEqual(t *testing.T) {
	h := secret.Hash("abc")
	// SHA-256("abc"), FIPS 180-2 example.
	if want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; h != want {
		t.Errorf("Hash(abc) = %s, want %s", h, want)
	}
	tests := []struct {
		a, b string
		want bool
	}{
		{h, h, true},
		{h, secret.Hash("abc"), true},
		{h, secret.Hash("abd"), false},
		{h, h[:63], false},
		{h, strings.ToUpper(h), false},
		{"", "", true},
		{h, "", false},
	}
	for _, tt := range tests {
		if got := secret.Equal(tt.a, tt.b); got != tt.want {
			t.Errorf("Equal(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestStringRedacted(t *testing.T) {
	const value = "s3cr3t-V4LU3-xyz"
	s := secret.String(value)
	if got := s.Reveal(); got != value {
		t.Fatalf("Reveal = %q, want %q", got, value)
	}

	var jsonBuf, textBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&jsonBuf, nil)).Info("issued", "token", s, slog.Any("any", s), slog.Group("g", "code", s))
	slog.New(slog.NewTextHandler(&textBuf, nil)).Info("issued", "token", s)

	type holder struct{ Token secret.String }
	outputs := map[string]string{
		"String()":   s.String(),
		"%v":         fmt.Sprintf("%v", s),
		"%s":         fmt.Sprintf("%s", s), //nolint:staticcheck // the %s verb is what is tested
		"%#v":        fmt.Sprintf("%#v", s),
		"%q":         fmt.Sprintf("%q", s),
		"Sprint":     fmt.Sprint(s),
		"Sprintln":   fmt.Sprintln(s),
		"%+v struct": fmt.Sprintf("%+v", holder{s}),
		"%#v struct": fmt.Sprintf("%#v", holder{s}),
		"%v pointer": fmt.Sprintf("%v", &s),
		"%v slice":   fmt.Sprintf("%v", []secret.String{s}),
		"LogValue":   s.LogValue().String(),
		"slog JSON":  jsonBuf.String(),
		"slog text":  textBuf.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, value) {
			t.Errorf("%s output %q contains the secret", name, out)
		}
		if !strings.Contains(out, secret.Redacted) {
			t.Errorf("%s output %q does not say %s", name, out, secret.Redacted)
		}
	}
	if got, want := jsonBuf.String(), `"token":"REDACTED","any":"REDACTED","g":{"code":"REDACTED"}`; !strings.Contains(got, want) {
		t.Errorf("slog JSON = %s, want it to contain %s", got, want)
	}
	if diff := cmp.Diff(secret.Redacted, s.GoString()); diff != "" {
		t.Errorf("GoString mismatch (-want +got):\n%s", diff)
	}
}

func TestNewID(t *testing.T) {
	id, err := secret.NewID(bytes.NewReader([]byte{0, 1, 2, 3, 4, 5, 6, 0xff}))
	if err != nil {
		t.Fatal(err)
	}
	if want := "00010203040506ff"; id != want {
		t.Errorf("NewID = %q, want %q", id, want)
	}
}

func FuzzNormalizeCode(f *testing.F) {
	for _, s := range []string{"", "7kq2-m9xd-4tpa", "ILO", "U", "ı", "ſ", "\xff", "a b-c", "ǅ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, typed string) {
		got, ok := secret.NormalizeCode(typed)
		if !ok {
			if got != "" {
				t.Fatalf("NormalizeCode(%q) = %q, false; want an empty result when refused", typed, got)
			}
			return
		}
		if strings.Trim(got, crockford) != "" {
			t.Fatalf("NormalizeCode(%q) = %q, true: holds characters outside the alphabet", typed, got)
		}
		// Normalising is idempotent.
		again, ok := secret.NormalizeCode(got)
		if !ok || again != got {
			t.Fatalf("NormalizeCode(%q) = %q, %v; want %q, true (idempotent)", got, again, ok, got)
		}
	})
}

func TestHashCode(t *testing.T) {
	want, n, ok := secret.HashCode("7KQ2-M9XD-4TPA")
	if !ok || n != 12 || want != secret.Hash("7KQ2M9XD4TPA") {
		t.Fatalf("HashCode of a canonical code: %q, %d, %v", want, n, ok)
	}
	for _, typed := range []string{"7kq2 m9xd 4tpa", "7KQ2M9XD4TPA", "7kq2-m9xd-4tpa"} {
		if got, _, ok := secret.HashCode(typed); !ok || got != want {
			t.Errorf("HashCode(%q) = %q, %v; want the canonical code's hash", typed, got, ok)
		}
	}
	if _, _, ok := secret.HashCode("7KQ2-M9XD-4TP!"); ok {
		t.Error("HashCode accepted a character outside the alphabet")
	}
}
