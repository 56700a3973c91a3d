package webauthntest

import "encoding/binary"

// A minimal CBOR (RFC 8949) encoder: just the items an authenticator emits for a
// "none" attestation object and an EC2 COSE key. Callers write map entries in
// CTAP2 canonical order (shorter encoded keys first, then bytewise), which is
// what authenticators send; go-webauthn's decoder does not insist on it.

// CBOR major types.
const (
	cborUint  = 0
	cborNeg   = 1
	cborBytes = 2
	cborText  = 3
	cborMap   = 5
)

// cborHead appends the initial byte(s) of an item of the given major type with
// argument n, using the shortest form (as canonical CBOR requires).
func cborHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, m|27), n)
	}
}

// cborInt appends a (possibly negative) integer.
func cborInt(b []byte, v int64) []byte {
	if v >= 0 {
		return cborHead(b, cborUint, uint64(v))
	}
	return cborHead(b, cborNeg, uint64(-1-v))
}

// cborByteString appends a byte string.
func cborByteString(b, v []byte) []byte {
	return append(cborHead(b, cborBytes, uint64(len(v))), v...)
}

// cborTextString appends a UTF-8 text string.
func cborTextString(b []byte, v string) []byte {
	return append(cborHead(b, cborText, uint64(len(v))), v...)
}

// cborMapHeader appends the header of a map with n key/value pairs; the caller
// appends the 2n items that follow.
func cborMapHeader(b []byte, n int) []byte {
	return cborHead(b, cborMap, uint64(n))
}
