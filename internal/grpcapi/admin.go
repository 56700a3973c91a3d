package grpcapi

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/mfa"
)

// adminAPI implements the Admin service. Like portalAPI, its methods
// translate requests into calls of the flows and return the flows' errors as
// they are, for toStatus. The flows check every argument (a change without a
// reason is refused there) and take the administrator's name and the request
// id from the call's origin (see withOrigin). No method reads or sets a
// factor's secret: IssueActivationCode and IssueBypassCode return a new
// code, once, and nothing else returns a secret.
type adminAPI struct {
	sfv1.UnimplementedAdminServiceServer
	svc *mfa.Service
}

func (a *adminAPI) ListFactors(ctx context.Context, r *sfv1.ListFactorsRequest) (*sfv1.ListFactorsResponse, error) {
	u, err := a.svc.GetUser(ctx, r.GetUserId())
	if err != nil {
		return nil, err
	}
	out := &sfv1.ListFactorsResponse{Factors: factorsPB(u.Factors), RecoveryCodes: uint32(u.RecoveryCodes)}
	if u.Locked(a.svc.Now()) {
		out.LockedUntil = timestamppb.New(u.LockedUntil)
	}
	return out, nil
}

func (a *adminAPI) DeleteFactor(ctx context.Context, r *sfv1.DeleteFactorRequest) (*sfv1.DeleteFactorResponse, error) {
	if err := a.svc.DeleteFactor(ctx, r.GetUserId(), r.GetFactorId(), r.GetReason()); err != nil {
		return nil, err
	}
	return &sfv1.DeleteFactorResponse{}, nil
}

func (a *adminAPI) ResetUser(ctx context.Context, r *sfv1.ResetUserRequest) (*sfv1.ResetUserResponse, error) {
	removed, err := a.svc.ResetUser(ctx, r.GetUserId(), r.GetReason())
	if err != nil {
		return nil, err
	}
	return &sfv1.ResetUserResponse{FactorsRemoved: uint32(removed)}, nil
}

func (a *adminAPI) UnlockUser(ctx context.Context, r *sfv1.UnlockUserRequest) (*sfv1.UnlockUserResponse, error) {
	if err := a.svc.UnlockUser(ctx, r.GetUserId(), r.GetReason()); err != nil {
		return nil, err
	}
	return &sfv1.UnlockUserResponse{}, nil
}

func (a *adminAPI) EnableFactor(ctx context.Context, r *sfv1.EnableFactorRequest) (*sfv1.EnableFactorResponse, error) {
	if err := a.svc.EnableFactor(ctx, r.GetUserId(), r.GetFactorId(), r.GetReason()); err != nil {
		return nil, err
	}
	return &sfv1.EnableFactorResponse{}, nil
}

func (a *adminAPI) IssueActivationCode(ctx context.Context, r *sfv1.IssueActivationCodeRequest) (*sfv1.IssueActivationCodeResponse, error) {
	code, expires, err := a.svc.IssueActivationCode(ctx, r.GetUserId(), r.GetReason())
	if err != nil {
		return nil, err
	}
	return &sfv1.IssueActivationCodeResponse{Code: code.Reveal(), ExpiresAt: timestamppb.New(expires)}, nil
}

func (a *adminAPI) IssueBypassCode(ctx context.Context, r *sfv1.IssueBypassCodeRequest) (*sfv1.IssueBypassCodeResponse, error) {
	var ttl time.Duration
	if d := r.GetTtl(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, &mfa.FieldError{Field: "ttl", Problem: "not a valid duration"}
		}
		ttl = d.AsDuration()
	}
	b, err := a.svc.IssueBypassCode(ctx, r.GetUserId(), r.GetReason(), ttl)
	if err != nil {
		return nil, err
	}
	return &sfv1.IssueBypassCodeResponse{Code: b.Code.Reveal(), ExpiresAt: timestamppb.New(b.ExpiresAt), BypassId: b.ID}, nil
}

func (a *adminAPI) ListBypasses(ctx context.Context, r *sfv1.ListBypassesRequest) (*sfv1.ListBypassesResponse, error) {
	q := mfa.BypassQuery{Limit: int(r.GetLimit()), Cursor: r.GetPageToken()}
	var err error
	if q.Since, err = timeOf("since", r.GetSince()); err != nil {
		return nil, err
	}
	if q.Until, err = timeOf("until", r.GetUntil()); err != nil {
		return nil, err
	}
	bs, next, err := a.svc.ListBypasses(ctx, q)
	if err != nil {
		return nil, err
	}
	out := &sfv1.ListBypassesResponse{Bypasses: make([]*sfv1.Bypass, len(bs)), NextPageToken: next}
	for i, b := range bs {
		out.Bypasses[i] = bypassPB(b)
	}
	return out, nil
}

func (a *adminAPI) ReviewBypass(ctx context.Context, r *sfv1.ReviewBypassRequest) (*sfv1.ReviewBypassResponse, error) {
	b, err := a.svc.ReviewBypass(ctx, r.GetBypassId(), r.GetNote())
	if err != nil {
		return nil, err
	}
	return &sfv1.ReviewBypassResponse{Bypass: bypassPB(b)}, nil
}

func bypassPB(b mfa.Bypass) *sfv1.Bypass {
	out := &sfv1.Bypass{
		BypassId: b.ID, UserId: b.UserID, IssuedBy: b.IssuedBy, Reason: b.Reason,
		IssuedAt: timestamppb.New(b.IssuedAt), ExpiresAt: timestamppb.New(b.ExpiresAt),
		ReviewedBy: b.ReviewedBy, ReviewNote: b.ReviewNote,
	}
	if !b.UsedAt.IsZero() {
		out.UsedAt = timestamppb.New(b.UsedAt)
	}
	if !b.ReviewedAt.IsZero() {
		out.ReviewedAt = timestamppb.New(b.ReviewedAt)
	}
	return out
}

func (a *adminAPI) ListAuditEvents(ctx context.Context, r *sfv1.ListAuditEventsRequest) (*sfv1.ListAuditEventsResponse, error) {
	q, err := eventQuery(r)
	if err != nil {
		return nil, err
	}
	events, next, err := a.svc.ListAuditEvents(ctx, q)
	if err != nil {
		return nil, err
	}
	out := &sfv1.ListAuditEventsResponse{Events: make([]*sfv1.AuditEvent, len(events)), NextPageToken: next}
	for i, e := range events {
		out.Events[i] = eventPB(e)
	}
	return out, nil
}

// eventQuery translates a ListAuditEvents request. The page token is the
// store's cursor, as the previous page returned it; the flows check the
// query's values and set the default limit.
func eventQuery(r *sfv1.ListAuditEventsRequest) (mfa.EventQuery, error) {
	q := mfa.EventQuery{UserID: r.GetUserId(), Limit: int(r.GetLimit()), Cursor: r.GetPageToken()}
	var err error
	if q.Since, err = timeOf("since", r.GetSince()); err != nil {
		return mfa.EventQuery{}, err
	}
	if q.Until, err = timeOf("until", r.GetUntil()); err != nil {
		return mfa.EventQuery{}, err
	}
	for _, a := range r.GetActions() {
		q.Actions = append(q.Actions, mfa.Action(a))
	}
	return q, nil
}

// timeOf is the time of an optional timestamp field: zero when unset, a
// FieldError when out of the range of timestamps.
func timeOf(field string, ts *timestamppb.Timestamp) (t time.Time, err error) {
	if ts == nil {
		return t, nil
	}
	if err := ts.CheckValid(); err != nil {
		return t, &mfa.FieldError{Field: field, Problem: "not a valid timestamp (from 0001-01-01 to 9999-12-31, nanos 0 to 999999999)"}
	}
	return ts.AsTime(), nil
}

func eventPB(e mfa.Event) *sfv1.AuditEvent {
	return &sfv1.AuditEvent{
		Id:        e.ID(),
		Time:      timestamppb.New(e.Time),
		Action:    string(e.Action),
		UserId:    e.UserID,
		Actor:     e.Actor,
		Reason:    e.Reason,
		FactorId:  e.FactorID,
		Result:    e.Result,
		ClientIp:  e.ClientIP,
		UserAgent: e.UserAgent,
		RequestId: e.RequestID,
		PrevHash:  e.PrevHash,
		Hash:      e.Hash,
	}
}

func (a *adminAPI) VerifyAuditTrail(ctx context.Context, r *sfv1.VerifyAuditTrailRequest) (*sfv1.VerifyAuditTrailResponse, error) {
	rep, err := a.svc.VerifyAuditTrail(ctx, r.GetUserId())
	if err != nil {
		return nil, err
	}
	return &sfv1.VerifyAuditTrailResponse{
		Ok:            rep.BrokenEventID == "" && rep.Problem == "",
		Events:        rep.Events,
		BrokenEventId: rep.BrokenEventID,
		Problem:       rep.Problem,
	}, nil
}
