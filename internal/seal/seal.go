// Package seal encrypts secrets at rest (TOTP seeds) with AES-256-GCM under a
// key ring.
//
// The first key of a ring seals; every key opens, so a key is rotated by
// putting the new key first and keeping the old one until every record has
// been re-sealed. Each ciphertext is bound by its additional data to the
// record it belongs to (user and factor), so a sealed secret copied onto
// another record does not open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// KeySize is the length of a key: 256 bits.
const KeySize = 32

// ErrUnknownKey means a record was sealed under a key the ring does not hold.
var ErrUnknownKey = errors.New("unknown sealing key")

// ErrOpen means a ciphertext did not authenticate: wrong key, wrong
// additional data, or tampering.
var ErrOpen = errors.New("sealed secret does not open")

// Ring is a set of AES-256-GCM keys, the first of which seals.
type Ring struct {
	primary    string
	primaryKey []byte
	aeads      map[string]cipher.AEAD
}

// Key is one key of a ring.
type Key struct {
	ID    string
	Bytes []byte
}

var keyID = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)

// NewRing builds a ring from keys, the first of which seals.
func NewRing(keys []Key) (*Ring, error) {
	if len(keys) == 0 {
		return nil, errors.New("seal: no key")
	}
	r := &Ring{primary: keys[0].ID, primaryKey: keys[0].Bytes, aeads: make(map[string]cipher.AEAD, len(keys))}
	for i, k := range keys {
		// Errors name a key by position: a key typed where its id
		// belongs must not reach the log.
		if !keyID.MatchString(k.ID) {
			return nil, fmt.Errorf("seal: key %d: id must be 1 to 32 of A-Z a-z 0-9 _ . - (id:base64key)", i+1)
		}
		if len(k.Bytes) != KeySize {
			return nil, fmt.Errorf("seal: key %d: %d bytes, want %d", i+1, len(k.Bytes), KeySize)
		}
		if _, dup := r.aeads[k.ID]; dup {
			return nil, fmt.Errorf("seal: key id %q appears twice", k.ID)
		}
		block, err := aes.NewCipher(k.Bytes)
		if err != nil {
			return nil, fmt.Errorf("seal: key %q: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: key %q: %w", k.ID, err)
		}
		r.aeads[k.ID] = aead
	}
	return r, nil
}

// PrimaryID is the id of the key that seals.
func (r *Ring) PrimaryID() string { return r.primary }

// Seal encrypts plaintext under the primary key, bound to additional data.
// It returns the key id to store beside the ciphertext.
func (r *Ring) Seal(plaintext, additional []byte) (keyID string, ciphertext []byte, err error) {
	aead := r.aeads[r.primary]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return "", nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return r.primary, aead.Seal(nonce, nonce, plaintext, additional), nil
}

// Open decrypts a ciphertext made by Seal with the same additional data.
func (r *Ring) Open(keyID string, ciphertext, additional []byte) ([]byte, error) {
	aead, ok := r.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("seal: key %q: %w", keyID, ErrUnknownKey)
	}
	if len(ciphertext) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrOpen
	}
	n := aead.NonceSize()
	plain, err := aead.Open(nil, ciphertext[:n], ciphertext[n:], additional)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// ParseKeys reads keys written as "id:base64key" separated by commas or
// newlines; blank lines and lines starting with # are ignored. The first key
// seals. This is the format of the key file and of SECONDFACTOR_SEAL_KEYS.
func ParseKeys(text string) ([]Key, error) {
	var keys []Key
	var fields []string
	for _, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			fields = append(fields, strings.Split(line, ",")...)
		}
	}
	for _, f := range fields {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		id, b64, ok := strings.Cut(f, ":")
		if !ok {
			return nil, fmt.Errorf("seal: key %d: want id:base64key", len(keys)+1)
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil {
			// The error text of the decoder holds no key material, but say
			// no more than where the problem is.
			return nil, fmt.Errorf("seal: key %d: not valid base64 (id:base64key)", len(keys)+1)
		}
		keys = append(keys, Key{ID: strings.TrimSpace(id), Bytes: b})
	}
	if len(keys) == 0 {
		return nil, errors.New("seal: no key found")
	}
	return keys, nil
}

// GenerateKeyFile writes a new key file holding one random key at path,
// readable by its owner only. It refuses to overwrite an existing file.
func GenerateKeyFile(path, id string) error {
	b := make([]byte, KeySize)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return fmt.Errorf("seal: generate key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("seal: generate key file: %w", err)
	}
	text := "# secondfactor sealing keys, one per line as id:base64key; the first seals.\n" +
		id + ":" + base64.StdEncoding.EncodeToString(b) + "\n"
	if _, err := f.WriteString(text); err != nil {
		return errors.Join(fmt.Errorf("seal: write key file: %w", err), f.Close())
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("seal: write key file: %w", err)
	}
	return nil
}

// LoadRing builds the ring from keys given inline (SECONDFACTOR_SEAL_KEYS)
// or from a key file; exactly one of them should be non-empty.
func LoadRing(inline, file string) (*Ring, error) {
	text := inline
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("seal: read key file: %w", err)
		}
		text = string(b)
	}
	keys, err := ParseKeys(text)
	if err != nil {
		return nil, err
	}
	return NewRing(keys)
}

// Derive returns a 256-bit key for purpose, derived from the primary key
// (HMAC-SHA256). It is secret, and the same on every replica holding the
// same ring; it changes when the primary key is rotated.
func (r *Ring) Derive(purpose string) []byte {
	m := hmac.New(sha256.New, r.primaryKey)
	m.Write([]byte("secondfactor derive\x00" + purpose))
	return m.Sum(nil)
}
