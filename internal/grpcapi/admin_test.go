package grpcapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/webauthntest"
)

// adminName is the name of the admin caller of newEnv, as the audit trail
// records it.
const adminName = "alice-admin"

// listFactors returns what Admin.ListFactors answers for userID.
func (e *env) listFactors(t testing.TB, userID string) *sfv1.ListFactorsResponse {
	t.Helper()
	r, err := e.admin.ListFactors(context.Background(), &sfv1.ListFactorsRequest{UserId: userID}, asAdmin)
	if err != nil {
		t.Fatalf("ListFactors(%s): %v", userID, err)
	}
	return r
}

// events returns every audit event of userID ("" for all), newest first.
func (e *env) events(t testing.TB, userID string) []*sfv1.AuditEvent {
	t.Helper()
	r, err := e.admin.ListAuditEvents(context.Background(), &sfv1.ListAuditEventsRequest{UserId: userID, Limit: 1000}, asAdmin)
	if err != nil {
		t.Fatalf("ListAuditEvents(%s): %v", userID, err)
	}
	if r.GetNextPageToken() != "" {
		t.Fatalf("ListAuditEvents(%s): more than one page", userID)
	}
	return r.GetEvents()
}

// lastEvent is the newest audit event of userID with action.
func (e *env) lastEvent(t testing.TB, userID string, action mfa.Action) *sfv1.AuditEvent {
	t.Helper()
	for _, ev := range e.events(t, userID) {
		if ev.GetAction() == string(action) {
			return ev
		}
	}
	t.Fatalf("no %s event for %s", action, userID)
	return nil
}

// wantAdminEvent checks the newest event of action for userID: the admin
// who made it, the reason and the factor.
func (e *env) wantAdminEvent(t testing.TB, userID string, action mfa.Action, factorID, reason string) {
	t.Helper()
	ev := e.lastEvent(t, userID, action)
	got := [3]string{ev.GetActor(), ev.GetReason(), ev.GetFactorId()}
	if want := [3]string{adminName, reason, factorID}; got != want {
		t.Errorf("%s event: actor, reason, factor = %q, want %q", action, got, want)
	}
	if len(ev.GetRequestId()) != 16 {
		t.Errorf("%s event: request id %q, want the call's", action, ev.GetRequestId())
	}
}

func TestAdminResetUser(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		ctx := context.Background()
		u := e.enrollTOTP(t, "dr-martin")
		lf := e.listFactors(t, u.userID)
		if len(lf.GetFactors()) != 1 || lf.GetFactors()[0].GetId() != u.factorID || lf.GetRecoveryCodes() != 10 || lf.GetLockedUntil() != nil {
			t.Fatalf("ListFactors after enrolment: %v, want the TOTP factor, 10 recovery codes, no lock", lf)
		}

		_, err := e.admin.ResetUser(ctx, &sfv1.ResetUserRequest{UserId: u.userID}, asAdmin)
		wantCode(t, "ResetUser without a reason", err, codes.InvalidArgument)
		if !strings.HasPrefix(status.Convert(err).Message(), "reason: ") {
			t.Errorf("ResetUser without a reason: message %q, want it to name the field reason", status.Convert(err).Message())
		}
		if n := len(e.listFactors(t, u.userID).GetFactors()); n != 1 {
			t.Fatalf("a refused reset changed the factors: %d left", n)
		}

		r, err := e.admin.ResetUser(ctx, &sfv1.ResetUserRequest{UserId: u.userID, Reason: "lost phone, identity checked by video call"}, asAdmin)
		if err != nil || r.GetFactorsRemoved() != 1 {
			t.Fatalf("ResetUser: %v, %v; want 1 factor removed", r, err)
		}
		if lf := e.listFactors(t, u.userID); len(lf.GetFactors()) != 0 || lf.GetRecoveryCodes() != 0 {
			t.Fatalf("ListFactors after reset: %v, want nothing", lf)
		}
		if e.getUser(t, u.userID).GetEnrolled() {
			t.Fatal("GetUser after reset: still enrolled")
		}
		wantVerdict(t, "the old factor's code after reset", e.verify(t, u.userID, e.code(t, u)).GetVerdict(), sfv1.Verdict_VERDICT_REJECTED)
		e.wantAdminEvent(t, u.userID, mfa.ActionUserReset, "", "lost phone, identity checked by video call")

		// A user the store never saw is reset too, with nothing removed.
		r, err = e.admin.ResetUser(ctx, &sfv1.ResetUserRequest{UserId: "dr-nobody", Reason: "ticket 42"}, asAdmin)
		if err != nil || r.GetFactorsRemoved() != 0 {
			t.Fatalf("ResetUser of an unknown user: %v, %v", r, err)
		}
	})
}

func TestAdminDeleteFactor(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		ctx := context.Background()
		u := e.enrollTOTP(t, "dr-martin")

		_, err := e.admin.DeleteFactor(ctx, &sfv1.DeleteFactorRequest{UserId: u.userID, FactorId: u.factorID}, asAdmin)
		wantCode(t, "DeleteFactor without a reason", err, codes.InvalidArgument)
		_, err = e.admin.DeleteFactor(ctx, &sfv1.DeleteFactorRequest{UserId: u.userID, FactorId: "0123456789abcdef", Reason: "stolen"}, asAdmin)
		wantCode(t, "DeleteFactor of a factor the user does not have", err, codes.NotFound)
		if n := len(e.listFactors(t, u.userID).GetFactors()); n != 1 {
			t.Fatalf("refused deletes changed the factors: %d left", n)
		}

		if _, err := e.admin.DeleteFactor(ctx, &sfv1.DeleteFactorRequest{UserId: u.userID, FactorId: u.factorID, Reason: "phone stolen"}, asAdmin); err != nil {
			t.Fatalf("DeleteFactor: %v", err)
		}
		// It was the last factor: the recovery codes went with it.
		if lf := e.listFactors(t, u.userID); len(lf.GetFactors()) != 0 || lf.GetRecoveryCodes() != 0 {
			t.Fatalf("ListFactors after deleting the last factor: %v, want nothing", lf)
		}
		wantVerdict(t, "the deleted factor's code", e.verify(t, u.userID, e.code(t, u)).GetVerdict(), sfv1.Verdict_VERDICT_REJECTED)
		e.wantAdminEvent(t, u.userID, mfa.ActionFactorRemoved, u.factorID, "phone stolen")
	})
}

func TestAdminUnlockUser(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{limits: mfa.Limits{MaxFailures: 3, BaseLockout: time.Minute, MaxLockout: time.Hour, FailureTTL: time.Hour}})
		ctx := context.Background()
		u := e.enrollTOTP(t, "dr-martin")
		for _, c := range e.wrongCodes(t, u, 3) {
			e.verify(t, u.userID, c)
		}
		lf := e.listFactors(t, u.userID)
		if want := e.clock.Now().Add(time.Minute); !lf.GetLockedUntil().AsTime().Equal(want) {
			t.Fatalf("ListFactors after 3 wrong codes: locked until %v, want %v", lf.GetLockedUntil(), want)
		}
		wantVerdict(t, "the right code while locked", e.verify(t, u.userID, e.code(t, u)).GetVerdict(), sfv1.Verdict_VERDICT_LOCKED)

		_, err := e.admin.UnlockUser(ctx, &sfv1.UnlockUserRequest{UserId: u.userID}, asAdmin)
		wantCode(t, "UnlockUser without a reason", err, codes.InvalidArgument)
		if _, err := e.admin.UnlockUser(ctx, &sfv1.UnlockUserRequest{UserId: u.userID, Reason: "called the user back"}, asAdmin); err != nil {
			t.Fatalf("UnlockUser: %v", err)
		}
		if lf := e.listFactors(t, u.userID); lf.GetLockedUntil() != nil {
			t.Fatalf("ListFactors after unlock: locked until %v", lf.GetLockedUntil())
		}
		wantVerdict(t, "the right code after unlock", e.verify(t, u.userID, e.code(t, u)).GetVerdict(), sfv1.Verdict_VERDICT_ACCEPTED)
		e.wantAdminEvent(t, u.userID, mfa.ActionUserUnlocked, "", "called the user back")
	})
}

// TestAdminEnableSuspendedKey: a key whose counter went backwards is
// suspended; a later assertion with a higher counter is rejected too, until
// EnableFactor.
func TestAdminEnableSuspendedKey(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		ctx := context.Background()
		a, _ := e.registerKey(t, "dr-a")
		factorID := e.listFactors(t, "dr-a").GetFactors()[0].GetId()
		cred := a.Credentials()[0]
		for range 2 {
			wantVerdict(t, "login", e.loginWith(t, "dr-a", a, origin, webauthntest.Tamper{}), sfv1.Verdict_VERDICT_ACCEPTED)
		}
		if err := a.SetSignCount(cred, 0); err != nil {
			t.Fatal(err)
		}
		wantVerdict(t, "login with a counter gone backwards", e.loginWith(t, "dr-a", a, origin, webauthntest.Tamper{}), sfv1.Verdict_VERDICT_REJECTED)
		f := e.listFactors(t, "dr-a").GetFactors()[0]
		if !f.GetSuspendedAt().AsTime().Equal(e.clock.Now()) {
			t.Fatalf("factor after the clone: suspended at %v, want %v", f.GetSuspendedAt(), e.clock.Now())
		}
		if err := a.SetSignCount(cred, 100); err != nil {
			t.Fatal(err)
		}
		wantVerdict(t, "suspended key, higher counter", e.loginWith(t, "dr-a", a, origin, webauthntest.Tamper{}), sfv1.Verdict_VERDICT_REJECTED)

		_, err := e.admin.EnableFactor(ctx, &sfv1.EnableFactorRequest{UserId: "dr-a", FactorId: factorID}, asAdmin)
		wantCode(t, "EnableFactor without a reason", err, codes.InvalidArgument)
		_, err = e.admin.EnableFactor(ctx, &sfv1.EnableFactorRequest{UserId: "dr-a", FactorId: "0123456789abcdef", Reason: "x"}, asAdmin)
		wantCode(t, "EnableFactor of a factor the user does not have", err, codes.NotFound)
		if _, err := e.admin.EnableFactor(ctx, &sfv1.EnableFactorRequest{UserId: "dr-a", FactorId: factorID, Reason: "key restored from a backup"}, asAdmin); err != nil {
			t.Fatalf("EnableFactor: %v", err)
		}
		if f := e.listFactors(t, "dr-a").GetFactors()[0]; f.GetSuspendedAt() != nil {
			t.Fatalf("factor after EnableFactor: suspended at %v", f.GetSuspendedAt())
		}
		wantVerdict(t, "login after EnableFactor", e.loginWith(t, "dr-a", a, origin, webauthntest.Tamper{}), sfv1.Verdict_VERDICT_ACCEPTED)
		e.wantAdminEvent(t, "dr-a", mfa.ActionFactorEnabled, factorID, "key restored from a backup")
	})
}

func TestAdminIssueActivationCode(t *testing.T) {
	e := newEnv(t, "bolt", envOptions{})
	ctx := context.Background()
	_, err := e.admin.IssueActivationCode(ctx, &sfv1.IssueActivationCodeRequest{UserId: "dr-b"}, asAdmin)
	wantCode(t, "IssueActivationCode without a reason", err, codes.InvalidArgument)
	r, err := e.admin.IssueActivationCode(ctx, &sfv1.IssueActivationCodeRequest{UserId: "dr-b", Reason: "identity checked by phone"}, asAdmin)
	if err != nil || r.GetCode() == "" || !r.GetExpiresAt().AsTime().After(e.clock.Now()) {
		t.Fatalf("IssueActivationCode: %v, %v", r, err)
	}
	e.wantAdminEvent(t, "dr-b", mfa.ActionActivationIssued, "", "identity checked by phone")
	for _, ev := range e.events(t, "dr-b") {
		if strings.Contains(ev.String(), r.GetCode()) || strings.Contains(ev.String(), strings.ReplaceAll(r.GetCode(), "-", "")) {
			t.Errorf("audit event %s holds the activation code", ev.GetId())
		}
	}
}

// TestAdminAuditTrail reads the trail a login leaves, page by page and
// filtered, and checks its chains.
func TestAdminAuditTrail(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, envOptions{})
		ctx := context.Background()
		u := e.enrollTOTP(t, "dr-martin")
		e.enrollTOTP(t, "dr-other")
		client := &sfv1.ClientInfo{Ip: "192.0.2.7", UserAgent: "Mozilla/5.0 (test)"}
		for _, code := range []string{e.wrongCode(t, u), e.code(t, u)} {
			if _, err := e.portal.VerifyTOTP(ctx, &sfv1.VerifyTOTPRequest{UserId: u.userID, Code: code, Client: client}, asPortal); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(time.Second)
		}

		// The verifications, newest first, with their origin.
		var got [][2]string
		for _, ev := range e.events(t, u.userID) {
			if ev.GetAction() != string(mfa.ActionVerifyTOTP) {
				continue
			}
			got = append(got, [2]string{ev.GetResult(), ev.GetFactorId()})
			if ev.GetActor() != "portal" || ev.GetClientIp() != "192.0.2.7" || ev.GetUserAgent() != "Mozilla/5.0 (test)" || len(ev.GetRequestId()) != 16 {
				t.Errorf("verify.totp event %s: actor %q, client %q %q, request id %q; want the portal's call from 192.0.2.7",
					ev.GetId(), ev.GetActor(), ev.GetClientIp(), ev.GetUserAgent(), ev.GetRequestId())
			}
		}
		if want := [][2]string{{"accepted", u.factorID}, {"rejected", ""}}; !cmp.Equal(got[:min(len(got), 2)], want) {
			t.Errorf("verify.totp events (result, factor), newest first: %v, want %v first", got, want)
		}

		// Every page of one event is the one page of all.
		all := e.events(t, "")
		var paged []*sfv1.AuditEvent
		req := &sfv1.ListAuditEventsRequest{Limit: 1}
		for range len(all) + 1 {
			r, err := e.admin.ListAuditEvents(ctx, req, asAdmin)
			if err != nil {
				t.Fatalf("ListAuditEvents page %d: %v", len(paged)+1, err)
			}
			paged = append(paged, r.GetEvents()...)
			if req.PageToken = r.GetNextPageToken(); req.PageToken == "" {
				break
			}
		}
		if diff := cmp.Diff(ids(all), ids(paged)); diff != "" {
			t.Errorf("pages of one event vs one page (-all +paged):\n%s", diff)
		}
		users := map[string]bool{}
		for _, ev := range all {
			users[ev.GetUserId()] = true
		}
		if !users["dr-martin"] || !users["dr-other"] {
			t.Errorf("events of every user: users %v", users)
		}

		// Filters: actions, and a time range that holds only the wrong code.
		r, err := e.admin.ListAuditEvents(ctx, &sfv1.ListAuditEventsRequest{
			UserId: u.userID, Actions: []string{string(mfa.ActionVerifyTOTP)},
			Since: timestamppb.New(e.clock.Now().Add(-2 * time.Second)), Until: timestamppb.New(e.clock.Now().Add(-time.Second)),
		}, asAdmin)
		if err != nil || len(r.GetEvents()) != 1 || r.GetEvents()[0].GetResult() != "rejected" {
			t.Errorf("verify.totp events of the first second: %v, %v; want the rejected code alone", r.GetEvents(), err)
		}
		r, err = e.admin.ListAuditEvents(ctx, &sfv1.ListAuditEventsRequest{Actions: []string{string(mfa.ActionFactorAdded)}}, asAdmin)
		if err != nil || len(r.GetEvents()) != 2 {
			t.Errorf("factor.added events: %v, %v; want one per user", r.GetEvents(), err)
		}
		_, err = e.admin.ListAuditEvents(ctx, &sfv1.ListAuditEventsRequest{Since: &timestamppb.Timestamp{Seconds: -1e12}}, asAdmin)
		wantCode(t, "ListAuditEvents with a timestamp out of range", err, codes.InvalidArgument)
		if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, "since: ") {
			t.Errorf("ListAuditEvents with a bad since: message %q, want it to name since", msg)
		}

		// The chains are intact.
		for _, user := range []string{"", u.userID} {
			v, err := e.admin.VerifyAuditTrail(ctx, &sfv1.VerifyAuditTrailRequest{UserId: user}, asAdmin)
			want := uint64(len(all))
			if user != "" {
				want = uint64(len(e.events(t, user)))
			}
			if err != nil || !v.GetOk() || v.GetEvents() != want || v.GetBrokenEventId() != "" {
				t.Errorf("VerifyAuditTrail(%q): %v, %v; want ok with %d events", user, v, err, want)
			}
		}
	})
}

func ids(events []*sfv1.AuditEvent) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = ev.GetId()
	}
	return out
}

// TestAdminMethodsNeedAdmin: the portal's caller can call no Admin method.
func TestAdminMethodsNeedAdmin(t *testing.T) {
	e := newEnv(t, "bolt", envOptions{})
	for _, m := range sfv1.AdminService_ServiceDesc.Methods {
		method := "/" + sfv1.AdminService_ServiceDesc.ServiceName + "/" + m.MethodName
		var out emptypb.Empty // every answer below is an error, read before the body
		err := e.conn.Invoke(context.Background(), method, &emptypb.Empty{}, &out, asPortal)
		wantCode(t, m.MethodName+" as the portal", err, codes.PermissionDenied)
	}
}

// TestAdminHandlesNoSecret: no Admin request or response has a field that
// could carry a factor's secret, a code or a token, but the one-time codes
// that IssueActivationCode and IssueBypassCode return and the audit
// trail's and the bypass listing's page tokens and the hashes of events.
func TestAdminHandlesNoSecret(t *testing.T) {
	allowed := map[protoreflect.FullName]bool{
		"secondfactor.v1.IssueActivationCodeResponse.code":        true,
		"secondfactor.v1.IssueBypassCodeResponse.code":            true,
		"secondfactor.v1.ListFactorsResponse.recovery_codes":      true, // a count
		"secondfactor.v1.ListAuditEventsRequest.page_token":       true,
		"secondfactor.v1.ListAuditEventsResponse.next_page_token": true,
		"secondfactor.v1.ListBypassesRequest.page_token":          true,
		"secondfactor.v1.ListBypassesResponse.next_page_token":    true,
		"secondfactor.v1.AuditEvent.prev_hash":                    true,
		"secondfactor.v1.AuditEvent.hash":                         true,
	}
	suspect := []string{"secret", "code", "token", "key", "hash", "seal", "uri", "otp", "password", "credential"}
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] || md.ParentFile().Package() != "secondfactor.v1" {
			return
		}
		seen[md.FullName()] = true
		for i := range md.Fields().Len() {
			f := md.Fields().Get(i)
			for _, s := range suspect {
				if strings.Contains(string(f.Name()), s) && !allowed[f.FullName()] {
					t.Errorf("%s: an Admin message field named like a secret", f.FullName())
				}
			}
			if f.Message() != nil {
				walk(f.Message())
			}
		}
	}
	sd := sfv1.File_secondfactor_v1_secondfactor_proto.Services().ByName("AdminService")
	for i := range sd.Methods().Len() {
		walk(sd.Methods().Get(i).Input())
		walk(sd.Methods().Get(i).Output())
	}
}
