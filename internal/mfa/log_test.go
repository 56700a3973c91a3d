package mfa_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// TestSecurityLogLines: each security decision (refusal, replay, lock,
// refusal for the lock, unlock, delete, reset) is a log line of its own
// with the user and the request id of the call that made it.
func TestSecurityLogLines(t *testing.T) {
	e := newEnv(t, envOptions{})
	u := e.enrollTOTP(t, "dr-logged")
	good := e.code(t, u, 0)
	verify := func(code string) func(o mfa.Origin) error {
		return func(o mfa.Origin) error {
			_, err := e.svc.VerifyTOTP(mfa.WithOrigin(t.Context(), o), u.userID, code, browser)
			return err
		}
	}
	wrong := verify(e.wrongCode(t, u))
	steps := []struct {
		name string
		call func(o mfa.Origin) error
		want []string
	}{
		{"a wrong code", wrong, []string{"verification refused"}},
		{"the right code", verify(good), nil},
		{"the right code again", verify(good), []string{"totp code replayed: its time step was already used"}},
		{"another wrong code", wrong, []string{"verification refused"}},
		{"the wrong code that locks", wrong, []string{"verification refused", "user locked: too many failed attempts"}},
		{"a code while locked", wrong, []string{"verification refused: user locked"}},
		{"an unlock", func(o mfa.Origin) error {
			return e.svc.UnlockUser(mfa.WithOrigin(t.Context(), o), u.userID, "help desk")
		}, []string{"user unlocked"}},
		{"a delete", func(o mfa.Origin) error {
			return e.svc.DeleteFactor(mfa.WithOrigin(t.Context(), o), u.userID, u.factorID, "phone lost")
		}, []string{"factor removed"}},
		{"a reset", func(o mfa.Origin) error {
			_, err := e.svc.ResetUser(mfa.WithOrigin(t.Context(), o), u.userID, "phone lost")
			return err
		}, []string{"user reset: every factor removed"}},
	}
	for i, s := range steps {
		id := fmt.Sprintf("req-%d", i)
		if err := s.call(mfa.Origin{Actor: "someone", RequestID: id}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		var got []string
		for _, l := range e.logs.lines(t) {
			if l["request_id"] == id {
				if l["user_id"] != u.userID {
					t.Errorf("%s: line %v without the user", s.name, l)
				}
				got = append(got, l["msg"].(string))
			}
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("%s: log lines mismatch (-want +got):\n%s", s.name, diff)
		}
	}
}
