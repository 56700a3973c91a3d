package mfa_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// created is what CreateEnrollment came to: a refusal, or a session and
// what it may enrol.
type created struct {
	Outcome         outcome
	FirstFactor     bool
	NeedsActivation bool
}

// userState is where the user stands when the session is asked for.
type userState struct {
	name     string
	enrolled bool
	verified bool          // an accepted verification after the enrolment
	age      time.Duration // how long ago that verification was
}

var (
	notEnrolled = userState{name: "not enrolled"}
	neverVerif  = userState{name: "enrolled, never verified", enrolled: true}
	fresh       = userState{name: "enrolled, verified 1m ago", enrolled: true, verified: true, age: time.Minute}
	atLimit     = userState{name: "enrolled, verified exactly at the limit", enrolled: true, verified: true, age: freshVerification}
	stale       = userState{name: "enrolled, verified 1s past the limit", enrolled: true, verified: true, age: freshVerification + time.Second}
)

// TestEnrollmentRules: who may open which enrolment session, for every
// policy, proof, enrolment and age of the last verification, with the exact
// rule that refuses.
func TestEnrollmentRules(t *testing.T) {
	policies := []mfa.Policy{mfa.PolicyActivationCode, mfa.PolicyStrongOnly, mfa.PolicyOpen}
	// byPolicy lists the wanted results in the order of policies.
	byPolicy := func(ac, so, open created) map[mfa.Policy]created {
		return map[mfa.Policy]created{mfa.PolicyActivationCode: ac, mfa.PolicyStrongOnly: so, mfa.PolicyOpen: open}
	}
	all := func(c created) map[mfa.Policy]created { return byPolicy(c, c, c) }
	no := func(r mfa.Reason) created { return created{Outcome: refused(r)} }
	first := created{FirstFactor: true}
	firstWithCode := created{FirstFactor: true, NeedsActivation: true}
	another := created{}
	badProof := created{Outcome: badField("proof")}

	tests := []struct {
		proof mfa.Proof
		state userState
		want  map[mfa.Policy]created
	}{
		{mfa.ProofPasswordOnly, notEnrolled, byPolicy(firstWithCode, no(mfa.ReasonPolicyStrongOnly), first)},
		{mfa.ProofPasswordOnly, neverVerif, all(no(mfa.ReasonAlreadyEnrolled))},
		{mfa.ProofPasswordOnly, fresh, all(no(mfa.ReasonAlreadyEnrolled))},
		{mfa.ProofPasswordOnly, atLimit, all(no(mfa.ReasonAlreadyEnrolled))},
		{mfa.ProofPasswordOnly, stale, all(no(mfa.ReasonAlreadyEnrolled))},

		{mfa.ProofStrong, notEnrolled, all(first)},
		{mfa.ProofStrong, neverVerif, all(no(mfa.ReasonAlreadyEnrolled))},
		{mfa.ProofStrong, fresh, all(no(mfa.ReasonAlreadyEnrolled))},
		{mfa.ProofStrong, atLimit, all(no(mfa.ReasonAlreadyEnrolled))},
		{mfa.ProofStrong, stale, all(no(mfa.ReasonAlreadyEnrolled))},

		{mfa.ProofExistingFactor, notEnrolled, all(no(mfa.ReasonNotEnrolled))},
		{mfa.ProofExistingFactor, neverVerif, all(no(mfa.ReasonNoFreshVerification))},
		{mfa.ProofExistingFactor, fresh, all(another)},
		{mfa.ProofExistingFactor, atLimit, all(another)},
		{mfa.ProofExistingFactor, stale, all(no(mfa.ReasonNoFreshVerification))},

		{"unknown", notEnrolled, all(badProof)},
		{"unknown", neverVerif, all(badProof)},
		{"unknown", fresh, all(badProof)},
		{"unknown", atLimit, all(badProof)},
		{"unknown", stale, all(badProof)},
	}
	for _, policy := range policies {
		t.Run(string(policy), func(t *testing.T) {
			e := newEnv(t, envOptions{policy: policy})
			for i, tt := range tests {
				t.Run(fmt.Sprintf("%s/%s", tt.proof, tt.state.name), func(t *testing.T) {
					userID := fmt.Sprintf("dr-%d", i)
					e.prepare(t, userID, tt.state)
					ne, err := e.svc.CreateEnrollment(t.Context(), mfa.EnrollmentRequest{UserID: userID, Proof: tt.proof})
					got := created{Outcome: outcomeOf(t, err)}
					if err == nil {
						got.FirstFactor, got.NeedsActivation = ne.FirstFactor, ne.NeedsActivation
					}
					if diff := cmp.Diff(tt.want[policy], got); diff != "" {
						t.Errorf("CreateEnrollment mismatch (-want +got):\n%s", diff)
					}
				})
			}
		})
	}
}

// prepare brings userID to state: enrolled with TOTP, verified age ago.
func (e *env) prepare(t *testing.T, userID string, s userState) {
	t.Helper()
	if !s.enrolled {
		return
	}
	u := e.enrollTOTP(t, userID)
	if !s.verified {
		// Long enough that any verification would have been stale.
		e.clock.Advance(2 * freshVerification)
		return
	}
	if r := e.verify(t, userID, e.code(t, u, 0)); r.Verdict != mfa.Accepted {
		t.Fatalf("verification to prepare the user: %+v, want Accepted", r)
	}
	e.clock.Advance(s.age)
}

// TestFirstFactorSessionRefusesAnEnrolledUser: two first-factor sessions of
// one user; once one has enrolled a factor, the other's confirmation is
// refused for the same rule as its creation would be.
func TestFirstFactorSessionRefusesAnEnrolledUser(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.createSession(t, "dr-twice", mfa.ProofStrong)
	b := e.createSession(t, "dr-twice", mfa.ProofStrong)
	pb, err := e.svc.BeginTOTPEnrollment(t.Context(), b.Token.Reveal(), "tablet", "")
	if err != nil {
		t.Fatal(err)
	}
	u := e.finishTOTP(t, "dr-twice", a.Token.Reveal(), "")
	ub := enrolled{secret: pb.Key.Secret, params: pb.Params}
	_, _, err = e.svc.FinishTOTPEnrollment(t.Context(), b.Token.Reveal(), pb.FactorID, e.code(t, ub, 0))
	if diff := cmp.Diff(refused(mfa.ReasonAlreadyEnrolled), outcomeOf(t, err)); diff != "" {
		t.Errorf("second first factor mismatch (-want +got):\n%s", diff)
	}
	// The user has the first factor only.
	got, err := e.svc.GetUser(t.Context(), "dr-twice")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Factors) != 1 || got.Factors[0].ID != u.factorID {
		t.Errorf("factors %+v, want only %s", got.Factors, u.factorID)
	}
}

// TestExistingFactorSessionAddsASecondFactor: a session backed by a fresh
// verification enrols a further factor, without recovery codes.
func TestExistingFactorSessionAddsASecondFactor(t *testing.T) {
	e := newEnv(t, envOptions{policy: mfa.PolicyStrongOnly})
	e.prepare(t, "dr-two", fresh)
	ne := e.createSession(t, "dr-two", mfa.ProofExistingFactor)
	second := e.finishTOTP(t, "dr-two", ne.Token.Reveal(), "")
	if len(second.recovery) != 0 {
		t.Errorf("a second factor came with %d recovery codes, want none", len(second.recovery))
	}
	got, err := e.svc.GetUser(t.Context(), "dr-two")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Factors) != 2 {
		t.Errorf("%d factors, want 2", len(got.Factors))
	}
}
