// Package secret makes and compares the one-time values the service hands out
// (enrolment tokens, activation codes) and keeps them out of logs.
//
// Every value comes from crypto/rand. Only hashes are stored; hashes are
// compared in constant time.
package secret

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// String holds a secret value. Its String and LogValue methods print
// REDACTED, so a secret passed to a logger or a format verb by mistake does
// not leak; Reveal returns the value for the one place that issues it.
type String string

// Redacted is what a String prints.
const Redacted = "REDACTED"

// String returns "REDACTED".
func (String) String() string { return Redacted }

// GoString returns "REDACTED".
func (String) GoString() string { return Redacted }

// LogValue returns "REDACTED" for log/slog.
func (String) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON returns "REDACTED", for loggers and encoders that marshal
// structs holding a secret.
func (String) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// Reveal returns the secret value.
func (s String) Reveal() string { return string(s) }

// Hash returns the SHA-256 of a secret value, hex-encoded. One-time values
// carry at least 60 bits of entropy and a short lifetime, so a plain hash is
// enough to keep the stored copy useless to a reader of the store.
func Hash(value string) string {
	sum := sha256.Sum256([]byte(value))
	return hex.EncodeToString(sum[:])
}

// Equal compares two hashes in constant time.
func Equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// NewToken returns a URL-safe token of 256 random bits.
func NewToken(r io.Reader) (String, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return String(base64.RawURLEncoding.EncodeToString(b)), nil
}

// NewID returns a random identifier of 64 bits, hex-encoded. Identifiers are
// not secrets: they name records.
func NewID(r io.Reader) (string, error) {
	b := make([]byte, 8)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("new id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// codeAlphabet is Crockford's base32: no I, L, O or U, so a code read aloud
// or typed from paper has no look-alike letters.
const codeAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var codeEncoding = base32.NewEncoding(codeAlphabet).WithPadding(base32.NoPadding)

// NewCode returns a code of groups*4 characters of Crockford base32 (5 bits
// each) in dash-separated groups of four, e.g. "7KQ2-M9XD-4TPA" for 3 groups
// (60 bits).
func NewCode(r io.Reader, groups int) (String, error) {
	n := groups * 4
	b := make([]byte, (n*5+7)/8)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("new code: %w", err)
	}
	s := codeEncoding.EncodeToString(b)[:n]
	var sb strings.Builder
	for i := 0; i < n; i += 4 {
		if i > 0 {
			sb.WriteByte('-')
		}
		sb.WriteString(s[i : i+4])
	}
	return String(sb.String()), nil
}

// HashCode returns the hash to store or look up for a code made by NewCode,
// however it was typed (see NormalizeCode), and the length of its canonical
// form. It reports false if the code holds a character outside the alphabet.
func HashCode(typed string) (hash string, length int, ok bool) {
	norm, ok := NormalizeCode(typed)
	if !ok {
		return "", 0, false
	}
	return Hash(norm), len(norm), true
}

// NormalizeCode turns what a person typed into the canonical form of a code
// made by NewCode: upper case, without spaces or dashes, with the look-alike
// letters I, L mapped to 1 and O to 0. It reports false if anything else is
// not in the alphabet.
func NormalizeCode(typed string) (string, bool) {
	var sb strings.Builder
	for _, c := range strings.ToUpper(typed) {
		switch c {
		case '-', ' ':
			continue
		case 'I', 'L':
			c = '1'
		case 'O':
			c = '0'
		}
		if !strings.ContainsRune(codeAlphabet, c) {
			return "", false
		}
		sb.WriteRune(c)
	}
	return sb.String(), true
}
