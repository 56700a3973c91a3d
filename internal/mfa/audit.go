package mfa

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
)

// The audit actions.
const (
	ActionEnrollmentCreated   Action = "enrollment.created"
	ActionEnrollmentActivated Action = "enrollment.activated"
	ActionFactorAdded         Action = "factor.added"
	ActionFactorRemoved       Action = "factor.removed"
	ActionFactorSuspended     Action = "factor.suspended"
	ActionFactorEnabled       Action = "factor.enabled"
	ActionUserReset           Action = "user.reset"
	ActionUserLocked          Action = "user.locked"
	ActionUserUnlocked        Action = "user.unlocked"
	ActionVerifyTOTP          Action = "verify.totp"
	ActionVerifyWebAuthn      Action = "verify.webauthn"
	ActionVerifyRecovery      Action = "verify.recovery"
	ActionActivationIssued    Action = "activation.issued"
	ActionRecoveryRegenerated Action = "recovery.regenerated"
)

// EventHash is the hex SHA-256 of every field of e but Hash, each written
// with its length in a fixed order, so that two different events never
// share an encoding. Time counts in whole milliseconds, the precision a
// store keeps.
func EventHash(e Event) string {
	h := sha256.New()
	put := func(h hash.Hash, s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], e.Seq)
	binary.BigEndian.PutUint64(n[8:], uint64(e.Time.UnixMilli()))
	h.Write([]byte("secondfactor audit event v1\x00"))
	h.Write(n[:])
	for _, s := range []string{e.UserID, string(e.Action), e.Result, e.FactorID, e.Actor, e.Reason, e.ClientIP, e.UserAgent, e.RequestID, e.PrevHash} {
		put(h, s)
	}
	return hex.EncodeToString(h.Sum(nil))
}
