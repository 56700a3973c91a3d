// Package totp implements RFC 6238 time-based one-time passwords for the
// service: new secrets, the otpauth:// URI and its QR code, and finding the
// time step a code belongs to.
//
// Code generation is github.com/pquerna/otp; what this package adds is the
// step search with a skew window, constant-time comparison, and the
// parameters the service allows.
package totp

import (
	"bytes"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"image/png"
	"io"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// SecretSize is the length of a new secret: 160 bits, as RFC 4226 recommends.
const SecretSize = 20

// Algorithm is the HMAC hash of a factor: "SHA1", "SHA256" or "SHA512".
type Algorithm string

// The algorithms RFC 6238 names.
const (
	SHA1   Algorithm = "SHA1"
	SHA256 Algorithm = "SHA256"
	SHA512 Algorithm = "SHA512"
)

// Params are the parameters of a factor, stored with it.
type Params struct {
	Algorithm Algorithm
	Digits    int           // 6 or 8
	Period    time.Duration // a whole number of seconds, usually 30 s
}

// DefaultParams returns the parameters every authenticator app supports:
// SHA-1, 6 digits, 30 seconds.
func DefaultParams() Params {
	return Params{Algorithm: SHA1, Digits: 6, Period: 30 * time.Second}
}

// ParamError is one parameter that Validate refuses.
type ParamError struct {
	Param  string // "algorithm", "digits" or "period"
	Reason string // the value and what is wanted, e.g. "7: want 6 or 8"
}

// Error says which parameter is refused and why, e.g. "totp digits 7: want
// 6 or 8".
func (e *ParamError) Error() string { return "totp " + e.Param + " " + e.Reason }

// Validate reports every parameter that is not supported, each as a
// *ParamError, joined.
func (p Params) Validate() error {
	var errs []error
	bad := func(param, format string, args ...any) {
		errs = append(errs, &ParamError{Param: param, Reason: fmt.Sprintf(format, args...)})
	}
	switch p.Algorithm {
	case SHA1, SHA256, SHA512:
	default:
		bad("algorithm", "%q: want SHA1, SHA256 or SHA512", p.Algorithm)
	}
	if p.Digits != 6 && p.Digits != 8 {
		bad("digits", "%d: want 6 or 8", p.Digits)
	}
	if p.Period < time.Second || p.Period > 5*time.Minute || p.Period%time.Second != 0 {
		bad("period", "%s: want whole seconds between 1s and 5m", p.Period)
	}
	return errors.Join(errs...)
}

func (p Params) otpAlgorithm() otp.Algorithm {
	switch p.Algorithm {
	case SHA256:
		return otp.AlgorithmSHA256
	case SHA512:
		return otp.AlgorithmSHA512
	default:
		return otp.AlgorithmSHA1
	}
}

func (p Params) otpDigits() otp.Digits {
	if p.Digits == 8 {
		return otp.DigitsEight
	}
	return otp.DigitsSix
}

// Step is the RFC 6238 time step of t.
func (p Params) Step(t time.Time) int64 {
	return t.Unix() / int64(p.Period/time.Second)
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Key is a new factor's secret with what an authenticator app needs.
type Key struct {
	Secret []byte // 20 random bytes
	URI    string // otpauth://totp/...
}

// Base32 is the secret as typed into an app by hand.
func (k Key) Base32() string { return b32.EncodeToString(k.Secret) }

// NewKey makes a secret from r and its otpauth:// URI.
func NewKey(r io.Reader, p Params, issuer, account string) (Key, error) {
	secret := make([]byte, SecretSize)
	if _, err := io.ReadFull(r, secret); err != nil {
		return Key{}, fmt.Errorf("totp new key: %w", err)
	}
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuer,
		AccountName: account,
		Period:      uint(p.Period / time.Second),
		Secret:      secret,
		Digits:      p.otpDigits(),
		Algorithm:   p.otpAlgorithm(),
	})
	if err != nil {
		return Key{}, fmt.Errorf("totp new key: %w", err)
	}
	return Key{Secret: secret, URI: k.URL()}, nil
}

// QRCode renders an otpauth:// URI as a PNG QR code of size×size pixels.
func QRCode(uri string, size int) ([]byte, error) {
	k, err := otp.NewKeyFromURL(uri)
	if err != nil {
		return nil, fmt.Errorf("totp qr code: %w", err)
	}
	img, err := k.Image(size, size)
	if err != nil {
		return nil, fmt.Errorf("totp qr code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("totp qr code: %w", err)
	}
	return buf.Bytes(), nil
}

// Code returns the code of secret at time step.
func Code(secret []byte, p Params, step int64) (string, error) {
	if step < 0 {
		return "", errors.New("totp code: negative time step")
	}
	return hotp.GenerateCodeCustom(b32.EncodeToString(secret), uint64(step), hotp.ValidateOpts{
		Digits:    p.otpDigits(),
		Algorithm: p.otpAlgorithm(),
	})
}

// Match looks for code among the steps of t within ±skew steps, latest first,
// and returns the step it belongs to. Every candidate is computed and compared
// in constant time, so the time taken does not say which step matched.
func Match(secret []byte, p Params, code string, t time.Time, skew int) (step int64, ok bool) {
	now := p.Step(t)
	for s := now + int64(skew); s >= now-int64(skew); s-- {
		want, err := Code(secret, p, s)
		if err != nil {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && !ok {
			step, ok = s, true
		}
	}
	return step, ok
}
