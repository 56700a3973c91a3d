package grpcapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/config"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/secret"
)

// The second administrator of the bypass tests.
const (
	reviewerName  = "bob-admin"
	reviewerToken = "reviewer-token-for-tests-0123456789abcdef"
)

var asReviewer = as(reviewerToken)

// withReviewer adds the second administrator to the server's callers.
func withReviewer(c *config.Config) {
	c.Callers = append(c.Callers, reviewerName+":admin:"+secret.Hash(reviewerToken))
}

// wantStatus checks an error's code and the start of its message.
func wantStatus(t *testing.T, what string, err error, code codes.Code, msgPrefix string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.HasPrefix(st.Message(), msgPrefix) {
		t.Errorf("%s: %v %q, want %v %q...", what, st.Code(), st.Message(), code, msgPrefix)
	}
}

// TestBypassOverGRPC: the bypass methods and VerifyRecoveryCode's bypass
// over the real server: what each answers, and the codes of its refusals.
func TestBypassOverGRPC(t *testing.T) {
	e := newEnv(t, "bolt", envOptions{config: withReviewer})
	ctx := context.Background()
	u := e.enrollTOTP(t, "dr-martin")
	issued := e.clock.Now()

	_, err := e.admin.IssueBypassCode(ctx, &sfv1.IssueBypassCodeRequest{UserId: u.userID}, asAdmin)
	wantStatus(t, "IssueBypassCode without a reason", err, codes.InvalidArgument, "reason: ")
	for _, ttl := range []*durationpb.Duration{durationpb.New(2 * time.Hour), durationpb.New(time.Second), {Seconds: 1, Nanos: -1}} {
		_, err := e.admin.IssueBypassCode(ctx, &sfv1.IssueBypassCodeRequest{UserId: u.userID, Reason: "lost phone", Ttl: ttl}, asAdmin)
		wantStatus(t, "IssueBypassCode with ttl "+ttl.String(), err, codes.InvalidArgument, "ttl: ")
	}
	_, err = e.admin.IssueBypassCode(ctx, &sfv1.IssueBypassCodeRequest{UserId: u.userID, Reason: "lost phone"}, asPortal)
	wantCode(t, "IssueBypassCode as the portal", err, codes.PermissionDenied)

	short, err := e.admin.IssueBypassCode(ctx, &sfv1.IssueBypassCodeRequest{UserId: u.userID, Reason: "lost phone", Ttl: durationpb.New(30 * time.Minute)}, asAdmin)
	if err != nil || !short.GetExpiresAt().AsTime().Equal(issued.Add(30*time.Minute)) {
		t.Fatalf("IssueBypassCode for 30 minutes: %v, %v", short, err)
	}
	// A second later, so that the listing's order (newest first) does not
	// fall to the ids of two bypasses issued at the same instant.
	e.clock.Advance(time.Second)
	issued = e.clock.Now()
	b, err := e.admin.IssueBypassCode(ctx, &sfv1.IssueBypassCodeRequest{UserId: u.userID, Reason: "lost every factor, checked by video call"}, asAdmin)
	if err != nil || !b.GetExpiresAt().AsTime().Equal(issued.Add(time.Hour)) || !mfa.IsBypassID(b.GetBypassId()) || len(b.GetCode()) != 19 {
		t.Fatalf("IssueBypassCode: %v, %v; want a code of 16 characters, expiring in an hour", b, err)
	}

	// The first, replaced, is a wrong code; the second lets the user in once.
	verify := func(code string) *sfv1.VerifyRecoveryCodeResponse {
		t.Helper()
		r, err := e.portal.VerifyRecoveryCode(ctx, &sfv1.VerifyRecoveryCodeRequest{UserId: u.userID, Code: code, Client: &sfv1.ClientInfo{Ip: "203.0.113.9"}}, asPortal)
		if err != nil {
			t.Fatalf("VerifyRecoveryCode: %v", err)
		}
		return r
	}
	if r := verify(short.GetCode()); r.GetVerdict() != sfv1.Verdict_VERDICT_REJECTED || r.GetBypass() {
		t.Errorf("a replaced bypass code: %v, want rejected", r)
	}
	e.clock.Advance(time.Minute)
	used := e.clock.Now()
	if r := verify(b.GetCode()); r.GetVerdict() != sfv1.Verdict_VERDICT_ACCEPTED || !r.GetBypass() || r.GetRemaining() != 10 {
		t.Errorf("the bypass code: %v, want accepted, bypass, 10 recovery codes left", r)
	}
	if r := verify(b.GetCode()); r.GetVerdict() != sfv1.Verdict_VERDICT_REJECTED || r.GetBypass() {
		t.Errorf("the bypass code again: %v, want rejected", r)
	}
	// It backs no enrolment of a further factor.
	_, err = e.portal.CreateEnrollment(ctx, &sfv1.CreateEnrollmentRequest{UserId: u.userID, Proof: sfv1.Proof_PROOF_EXISTING_FACTOR}, asPortal)
	wantStatus(t, "CreateEnrollment(PROOF_EXISTING_FACTOR) after a bypass login", err, codes.FailedPrecondition, "PROOF_EXISTING_FACTOR: no verification")

	// The review.
	_, err = e.admin.ReviewBypass(ctx, &sfv1.ReviewBypassRequest{BypassId: b.GetBypassId(), Note: "fine"}, asAdmin)
	wantStatus(t, "ReviewBypass by the administrator who issued it", err, codes.FailedPrecondition, "a bypass is reviewed by a second administrator")
	_, err = e.admin.ReviewBypass(ctx, &sfv1.ReviewBypassRequest{BypassId: "00000000000000ff", Note: "fine"}, asReviewer)
	wantStatus(t, "ReviewBypass of an unknown bypass", err, codes.NotFound, "no bypass has this id")
	_, err = e.admin.ReviewBypass(ctx, &sfv1.ReviewBypassRequest{BypassId: b.GetBypassId()}, asReviewer)
	wantStatus(t, "ReviewBypass without a note", err, codes.InvalidArgument, "note: ")
	e.clock.Advance(time.Hour)
	rev, err := e.admin.ReviewBypass(ctx, &sfv1.ReviewBypassRequest{BypassId: b.GetBypassId(), Note: "called the ward: she was on shift"}, asReviewer)
	if err != nil {
		t.Fatal(err)
	}
	want := &sfv1.Bypass{
		BypassId: b.GetBypassId(), UserId: u.userID, IssuedBy: adminName, Reason: "lost every factor, checked by video call",
		IssuedAt: timestamppb.New(issued), ExpiresAt: b.GetExpiresAt(), UsedAt: timestamppb.New(used),
		ReviewedBy: reviewerName, ReviewNote: "called the ward: she was on shift", ReviewedAt: timestamppb.New(e.clock.Now()),
	}
	if diff := cmp.Diff(want, rev.GetBypass(), protocmp.Transform()); diff != "" {
		t.Errorf("ReviewBypass (-want +got):\n%s", diff)
	}
	_, err = e.admin.ReviewBypass(ctx, &sfv1.ReviewBypassRequest{BypassId: b.GetBypassId(), Note: "again"}, asReviewer)
	wantStatus(t, "a second review", err, codes.FailedPrecondition, "the bypass was reviewed already")

	// The listing, a page at a time.
	l, err := e.admin.ListBypasses(ctx, &sfv1.ListBypassesRequest{Limit: 1}, asAdmin)
	if err != nil || len(l.GetBypasses()) != 1 || l.GetNextPageToken() == "" {
		t.Fatalf("ListBypasses, first page of one: %v, %v", l, err)
	}
	if diff := cmp.Diff(want, l.GetBypasses()[0], protocmp.Transform()); diff != "" {
		t.Errorf("ListBypasses, the newest (-want +got):\n%s", diff)
	}
	l, err = e.admin.ListBypasses(ctx, &sfv1.ListBypassesRequest{Limit: 1, PageToken: l.GetNextPageToken()}, asAdmin)
	if err != nil || len(l.GetBypasses()) != 1 || l.GetBypasses()[0].GetBypassId() != short.GetBypassId() || l.GetNextPageToken() != "" {
		t.Fatalf("ListBypasses, second page: %v, %v; want the replaced bypass, the last", l, err)
	}
	if l.GetBypasses()[0].GetUsedAt() != nil || l.GetBypasses()[0].GetReviewedAt() != nil {
		t.Errorf("the replaced bypass: %v, want neither used nor reviewed", l.GetBypasses()[0])
	}
	_, err = e.admin.ListBypasses(ctx, &sfv1.ListBypassesRequest{Since: timestamppb.New(issued), Until: timestamppb.New(issued)}, asAdmin)
	wantStatus(t, "ListBypasses of an empty period", err, codes.InvalidArgument, "until: ")
	_, err = e.admin.ListBypasses(ctx, &sfv1.ListBypassesRequest{PageToken: "nonsense"}, asAdmin)
	wantStatus(t, "ListBypasses with a page token the server did not give", err, codes.InvalidArgument, "cursor: ")
	l, err = e.admin.ListBypasses(ctx, &sfv1.ListBypassesRequest{Since: timestamppb.New(issued.Add(time.Second))}, asAdmin)
	if err != nil || len(l.GetBypasses()) != 0 {
		t.Errorf("ListBypasses since after both: %v, %v; want none", l, err)
	}

	// The trail: issued twice, used once, reviewed.
	var got []string
	for _, ev := range e.events(t, u.userID) {
		if strings.Contains(ev.GetAction(), "bypass") {
			got = append(got, ev.GetAction()+" "+ev.GetActor()+" "+ev.GetFactorId())
		}
	}
	wantEvents := []string{
		"bypass.reviewed " + reviewerName + " " + b.GetBypassId(),
		"verify.bypass portal " + b.GetBypassId(),
		"bypass.issued " + adminName + " " + b.GetBypassId(),
		"bypass.issued " + adminName + " " + short.GetBypassId(),
	}
	if diff := cmp.Diff(wantEvents, got); diff != "" {
		t.Errorf("bypass events, newest first (-want +got):\n%s", diff)
	}
}

// TestBypassOffOverGRPC: a server run with -bypass off refuses to issue a
// bypass code, with FAILED_PRECONDITION.
func TestBypassOffOverGRPC(t *testing.T) {
	e := newEnv(t, "bolt", envOptions{config: func(c *config.Config) { c.Bypass = "off" }})
	_, err := e.admin.IssueBypassCode(context.Background(), &sfv1.IssueBypassCodeRequest{UserId: "dr-martin", Reason: "lost phone"}, asAdmin)
	wantStatus(t, "IssueBypassCode with -bypass off", err, codes.FailedPrecondition, "this server refuses bypass codes")
}
