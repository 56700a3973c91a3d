package mfa

import (
	"net/netip"
	"unicode"
	"unicode/utf8"
)

// Size limits of input fields, in bytes.
const (
	MaxUserID      = 128
	MaxDisplayName = 128
	MaxFactorName  = 64
	MaxReturnURL   = 2048
	MaxUserAgent   = 512
	MaxReason      = 512
	MaxToken       = 128
)

func checkUserID(id string) error {
	if len(id) == 0 || len(id) > MaxUserID {
		return badField("user_id", "must be 1 to %d bytes", MaxUserID)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return badField("user_id", "must be printable ASCII without spaces")
		}
	}
	return nil
}

// checkText checks a human-written field: valid UTF-8, no control
// characters, at most max bytes; empty only if !required.
func checkText(field, s string, max int, required bool) error {
	if required && s == "" {
		return badField(field, "is required")
	}
	if len(s) > max {
		return badField(field, "must be at most %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return badField(field, "must be valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return badField(field, "must not contain control characters")
		}
	}
	return nil
}

// checkCode checks a TOTP code: 6 to 8 ASCII digits.
func checkCode(field, code string) error {
	if len(code) < 6 || len(code) > 8 {
		return badField(field, "must be 6 to 8 digits")
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return badField(field, "must be 6 to 8 digits")
		}
	}
	return nil
}

func checkToken(field, tok string) error {
	if tok == "" {
		return badField(field, "is required")
	}
	if len(tok) > MaxToken {
		return badField(field, "must be at most %d bytes", MaxToken)
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return badField(field, "must be base64url")
		}
	}
	return nil
}

func checkFactorID(id string) error {
	if len(id) != 16 {
		return badField("factor_id", "must be 16 hex digits")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return badField("factor_id", "must be 16 hex digits")
		}
	}
	return nil
}

// Client is the end user's browser as the portal saw it.
type Client struct {
	IP        string
	UserAgent string
}

func (c Client) check() error {
	if c.IP != "" {
		if _, err := netip.ParseAddr(c.IP); err != nil {
			return badField("client.ip", "must be an IPv4 or IPv6 address")
		}
	}
	return checkText("client.user_agent", c.UserAgent, MaxUserAgent, false)
}
