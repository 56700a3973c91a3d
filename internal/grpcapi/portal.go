package grpcapi

import (
	"context"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/totp"
)

// portalAPI implements the SecondFactor service. Its methods return the
// flows' errors as they are: the logging interceptor hands every error to
// toStatus, once.
type portalAPI struct {
	sfv1.UnimplementedSecondFactorServiceServer
	svc *mfa.Service
}

func (a *portalAPI) GetUser(ctx context.Context, r *sfv1.GetUserRequest) (*sfv1.GetUserResponse, error) {
	u, err := a.svc.GetUser(ctx, r.GetUserId())
	if err != nil {
		return nil, err
	}
	return &sfv1.GetUserResponse{
		UserId:   u.ID,
		Enrolled: len(u.Factors) > 0,
		Factors:  factorsPB(u.Factors),
		Locked:   u.Locked(a.svc.Now()),
	}, nil
}

var proofs = map[sfv1.Proof]mfa.Proof{
	sfv1.Proof_PROOF_PASSWORD_ONLY:   mfa.ProofPasswordOnly,
	sfv1.Proof_PROOF_STRONG:          mfa.ProofStrong,
	sfv1.Proof_PROOF_EXISTING_FACTOR: mfa.ProofExistingFactor,
}

func (a *portalAPI) CreateEnrollment(ctx context.Context, r *sfv1.CreateEnrollmentRequest) (*sfv1.CreateEnrollmentResponse, error) {
	e, err := a.svc.CreateEnrollment(ctx, mfa.EnrollmentRequest{
		UserID:      r.GetUserId(),
		DisplayName: r.GetDisplayName(),
		ReturnURL:   r.GetReturnUrl(),
		Proof:       proofs[r.GetProof()], // unknown values are refused by the flow
	})
	if err != nil {
		return nil, err
	}
	return &sfv1.CreateEnrollmentResponse{
		Token:              e.Token.Reveal(),
		Url:                e.URL,
		ExpiresAt:          timestamppb.New(e.ExpiresAt),
		ActivationRequired: !e.Usable(),
	}, nil
}

var algorithms = map[totp.Algorithm]sfv1.TOTPAlgorithm{
	totp.SHA1:   sfv1.TOTPAlgorithm_TOTP_ALGORITHM_SHA1,
	totp.SHA256: sfv1.TOTPAlgorithm_TOTP_ALGORITHM_SHA256,
	totp.SHA512: sfv1.TOTPAlgorithm_TOTP_ALGORITHM_SHA512,
}

func (a *portalAPI) BeginTOTPEnrollment(ctx context.Context, r *sfv1.BeginTOTPEnrollmentRequest) (*sfv1.BeginTOTPEnrollmentResponse, error) {
	p, err := a.svc.BeginTOTPEnrollment(ctx, r.GetEnrollmentToken(), r.GetName(), r.GetActivationCode())
	if err != nil {
		return nil, err
	}
	png, err := totp.QRCode(p.Key.URI, 256)
	if err != nil {
		return nil, err
	}
	return &sfv1.BeginTOTPEnrollmentResponse{
		FactorId:  p.FactorID,
		Uri:       p.Key.URI,
		Secret:    p.Key.Base32(),
		QrPng:     png,
		Algorithm: algorithms[p.Params.Algorithm],
		Digits:    uint32(p.Params.Digits),
		Period:    durationpb.New(p.Params.Period),
		ExpiresAt: timestamppb.New(p.ExpiresAt),
	}, nil
}

func (a *portalAPI) FinishTOTPEnrollment(ctx context.Context, r *sfv1.FinishTOTPEnrollmentRequest) (*sfv1.FinishTOTPEnrollmentResponse, error) {
	f, codes, err := a.svc.FinishTOTPEnrollment(ctx, r.GetEnrollmentToken(), r.GetFactorId(), r.GetCode())
	if err != nil {
		return nil, err
	}
	return &sfv1.FinishTOTPEnrollmentResponse{Factor: factorPB(f), RecoveryCodes: reveal(codes)}, nil
}

func reveal(codes []secret.String) []string {
	out := make([]string, len(codes))
	for i, c := range codes {
		out[i] = c.Reveal()
	}
	return out
}

func (a *portalAPI) BeginWebAuthnRegistration(ctx context.Context, r *sfv1.BeginWebAuthnRegistrationRequest) (*sfv1.BeginWebAuthnRegistrationResponse, error) {
	options, err := a.svc.BeginWebAuthnRegistration(ctx, r.GetEnrollmentToken(), r.GetName(), r.GetActivationCode())
	if err != nil {
		return nil, err
	}
	return &sfv1.BeginWebAuthnRegistrationResponse{OptionsJson: string(options)}, nil
}

func (a *portalAPI) FinishWebAuthnRegistration(ctx context.Context, r *sfv1.FinishWebAuthnRegistrationRequest) (*sfv1.FinishWebAuthnRegistrationResponse, error) {
	f, codes, err := a.svc.FinishWebAuthnRegistration(ctx, r.GetEnrollmentToken(), []byte(r.GetCredentialJson()))
	if err != nil {
		return nil, err
	}
	return &sfv1.FinishWebAuthnRegistrationResponse{Factor: factorPB(f), RecoveryCodes: reveal(codes)}, nil
}

func (a *portalAPI) BeginWebAuthnLogin(ctx context.Context, r *sfv1.BeginWebAuthnLoginRequest) (*sfv1.BeginWebAuthnLoginResponse, error) {
	lc, err := a.svc.BeginWebAuthnLogin(ctx, r.GetUserId(), clientOf(r.GetClient()))
	if err != nil {
		return nil, err
	}
	return &sfv1.BeginWebAuthnLoginResponse{ChallengeId: lc.ID.Reveal(), OptionsJson: string(lc.Options)}, nil
}

func (a *portalAPI) FinishWebAuthnLogin(ctx context.Context, r *sfv1.FinishWebAuthnLoginRequest) (*sfv1.FinishWebAuthnLoginResponse, error) {
	res, userID, err := a.svc.FinishWebAuthnLogin(ctx, r.GetChallengeId(), []byte(r.GetAssertionJson()), clientOf(r.GetClient()))
	if err != nil {
		return nil, err
	}
	return &sfv1.FinishWebAuthnLoginResponse{Verdict: verdictPB(res.Verdict), UserId: userID}, nil
}

func (a *portalAPI) VerifyRecoveryCode(ctx context.Context, r *sfv1.VerifyRecoveryCodeRequest) (*sfv1.VerifyRecoveryCodeResponse, error) {
	res, err := a.svc.VerifyRecoveryCode(ctx, r.GetUserId(), r.GetCode(), clientOf(r.GetClient()))
	if err != nil {
		return nil, err
	}
	out := &sfv1.VerifyRecoveryCodeResponse{Verdict: verdictPB(res.Verdict), Remaining: uint32(res.Remaining), Bypass: res.Bypass}
	if res.Verdict == mfa.Locked {
		out.RetryAfter = durationpb.New(res.RetryAfter)
	}
	return out, nil
}

func (a *portalAPI) RegenerateRecoveryCodes(ctx context.Context, r *sfv1.RegenerateRecoveryCodesRequest) (*sfv1.RegenerateRecoveryCodesResponse, error) {
	codes, err := a.svc.RegenerateRecoveryCodes(ctx, r.GetEnrollmentToken())
	if err != nil {
		return nil, err
	}
	return &sfv1.RegenerateRecoveryCodesResponse{RecoveryCodes: reveal(codes)}, nil
}

func (a *portalAPI) VerifyTOTP(ctx context.Context, r *sfv1.VerifyTOTPRequest) (*sfv1.VerifyTOTPResponse, error) {
	res, err := a.svc.VerifyTOTP(ctx, r.GetUserId(), r.GetCode(), clientOf(r.GetClient()))
	if err != nil {
		return nil, err
	}
	out := &sfv1.VerifyTOTPResponse{Verdict: verdictPB(res.Verdict)}
	if res.Verdict == mfa.Locked {
		out.RetryAfter = durationpb.New(res.RetryAfter)
	}
	return out, nil
}

func clientOf(c *sfv1.ClientInfo) mfa.Client {
	return mfa.Client{IP: c.GetIp(), UserAgent: c.GetUserAgent()}
}

func verdictPB(v mfa.Verdict) sfv1.Verdict {
	switch v {
	case mfa.Accepted:
		return sfv1.Verdict_VERDICT_ACCEPTED
	case mfa.Locked:
		return sfv1.Verdict_VERDICT_LOCKED
	default:
		return sfv1.Verdict_VERDICT_REJECTED
	}
}

var kinds = map[mfa.Kind]sfv1.FactorKind{
	mfa.KindTOTP:     sfv1.FactorKind_FACTOR_KIND_TOTP,
	mfa.KindWebAuthn: sfv1.FactorKind_FACTOR_KIND_WEBAUTHN,
}

func factorPB(f mfa.Factor) *sfv1.Factor {
	out := &sfv1.Factor{Id: f.ID, Kind: kinds[f.Kind], Name: f.Name, CreatedAt: timestamppb.New(f.CreatedAt)}
	if !f.LastUsedAt.IsZero() {
		out.LastUsedAt = timestamppb.New(f.LastUsedAt)
	}
	if !f.SuspendedAt.IsZero() {
		out.SuspendedAt = timestamppb.New(f.SuspendedAt)
	}
	return out
}

func factorsPB(fs []mfa.Factor) []*sfv1.Factor {
	out := make([]*sfv1.Factor, len(fs))
	for i, f := range fs {
		out[i] = factorPB(f)
	}
	return out
}
