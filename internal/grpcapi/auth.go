package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/secret"
)

// Role is what a caller may do.
type Role string

// The roles.
const (
	RolePortal Role = "portal"
	RoleAdmin  Role = "admin"
	// rolePublic marks methods anyone may call (health checks).
	rolePublic Role = "public"
)

// Caller is an authenticated client of the API.
type Caller struct {
	Name  string
	Roles []Role
}

func (c Caller) has(r Role) bool {
	for _, have := range c.Roles {
		if have == r {
			return true
		}
	}
	return false
}

// methodRoles declares the role of every method. A method not listed here
// is refused to everyone.
var methodRoles = map[string]Role{
	sfv1.SecondFactorService_GetUser_FullMethodName:                    RolePortal,
	sfv1.SecondFactorService_CreateEnrollment_FullMethodName:           RolePortal,
	sfv1.SecondFactorService_BeginTOTPEnrollment_FullMethodName:        RolePortal,
	sfv1.SecondFactorService_FinishTOTPEnrollment_FullMethodName:       RolePortal,
	sfv1.SecondFactorService_VerifyTOTP_FullMethodName:                 RolePortal,
	sfv1.SecondFactorService_BeginWebAuthnRegistration_FullMethodName:  RolePortal,
	sfv1.SecondFactorService_FinishWebAuthnRegistration_FullMethodName: RolePortal,
	sfv1.SecondFactorService_BeginWebAuthnLogin_FullMethodName:         RolePortal,
	sfv1.SecondFactorService_FinishWebAuthnLogin_FullMethodName:        RolePortal,
	sfv1.SecondFactorService_VerifyRecoveryCode_FullMethodName:         RolePortal,
	sfv1.SecondFactorService_RegenerateRecoveryCodes_FullMethodName:    RolePortal,
	sfv1.SecondFactorService_CreateVerification_FullMethodName:         RolePortal,
	sfv1.SecondFactorService_RedeemVerification_FullMethodName:         RolePortal,
	sfv1.AdminService_ListFactors_FullMethodName:                       RoleAdmin,
	sfv1.AdminService_DeleteFactor_FullMethodName:                      RoleAdmin,
	sfv1.AdminService_ResetUser_FullMethodName:                         RoleAdmin,
	sfv1.AdminService_UnlockUser_FullMethodName:                        RoleAdmin,
	sfv1.AdminService_IssueActivationCode_FullMethodName:               RoleAdmin,
	sfv1.AdminService_ListAuditEvents_FullMethodName:                   RoleAdmin,
	sfv1.AdminService_EnableFactor_FullMethodName:                      RoleAdmin,
	sfv1.AdminService_VerifyAuditTrail_FullMethodName:                  RoleAdmin,
	sfv1.AdminService_IssueBypassCode_FullMethodName:                   RoleAdmin,
	sfv1.AdminService_ListBypasses_FullMethodName:                      RoleAdmin,
	sfv1.AdminService_ReviewBypass_FullMethodName:                      RoleAdmin,
	"/grpc.health.v1.Health/Check":                                     rolePublic,
	"/grpc.health.v1.Health/Watch":                                     rolePublic,
	"/grpc.health.v1.Health/List":                                      rolePublic,
}

// Callers maps each credential a caller may present to that caller. A key
// is the hex SHA-256 of a bearer token (ParseCaller) or an identity a client
// certificate carries, such as "cn=portal-backend" (ParseCertCaller). The
// two kinds never collide: a token hash holds no '='.
type Callers map[string]Caller

// ParseCaller reads a caller written as NAME:ROLE[+ROLE]:SHA256HEX, where
// SHA256HEX is the hex SHA-256 of the caller's bearer token. Errors repeat
// no part of the line but a mistyped role: the hash fingerprints a credential
// and the errors go to the log.
func ParseCaller(s string) (hash string, c Caller, err error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) != 3 {
		return "", Caller{}, fmt.Errorf("caller: %d fields separated by ':', want NAME:ROLE[+ROLE]:SHA256HEX", len(parts))
	}
	name, roles, hash := parts[0], parts[1], strings.ToLower(parts[2])
	if err := checkName(name); err != nil {
		return "", Caller{}, err
	}
	if len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return "", Caller{}, errors.New("caller: token hash must be 64 hex digits (secondfactor token new prints it)")
	}
	if c.Roles, err = parseRoles(name, roles); err != nil {
		return "", Caller{}, err
	}
	c.Name = name
	return hash, c, nil
}

// checkName checks the name of a caller, which its log lines carry.
func checkName(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("caller: name must be 1 to 64 bytes")
	}
	return nil
}

// parseRoles reads ROLE[+ROLE].
func parseRoles(name, roles string) ([]Role, error) {
	var rs []Role
	for _, r := range strings.Split(roles, "+") {
		switch Role(r) {
		case RolePortal, RoleAdmin:
			rs = append(rs, Role(r))
		default:
			return nil, fmt.Errorf("caller %q: role %q: want portal, admin or portal+admin", name, r)
		}
	}
	return rs, nil
}

type callerKey struct{}

// CallerFrom returns the authenticated caller of a request.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// authorize authenticates the caller of a call (authenticate) and checks the
// role its method declares. Its refusals are edge errors that toStatus maps
// to Unauthenticated or PermissionDenied; they never repeat a credential.
func (cs Callers) authorize(ctx context.Context, method string) (context.Context, error) {
	role, declared := methodRoles[method]
	if !declared {
		return nil, &edgeError{kind: errPermissionDenied, reason: "method-not-declared", msg: "method is not open to any caller"}
	}
	if role == rolePublic {
		return ctx, nil
	}
	c, err := cs.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if !c.has(role) {
		return nil, &edgeError{kind: errPermissionDenied, reason: "missing-role", msg: fmt.Sprintf("caller %q lacks role %q", c.Name, role)}
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

// authenticate finds the caller of a call from the client certificate of its
// connection, its bearer token, or both. Every credential presented must be
// known: an unmapped certificate is refused even beside a good token. With
// both, they must name the same caller, who then holds only the roles both
// grant (sameCaller), so that adding a credential never widens what a call
// may do.
func (cs Callers) authenticate(ctx context.Context) (Caller, error) {
	byCert, hasCert, err := cs.certCaller(ctx)
	if err != nil {
		return Caller{}, err
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if hasCert && len(vals) == 0 {
		return byCert, nil
	}
	byToken, err := cs.tokenCaller(vals)
	if err != nil {
		return Caller{}, err
	}
	if !hasCert {
		return byToken, nil
	}
	c, ok := sameCaller(byCert, byToken)
	if !ok {
		return Caller{}, &edgeError{kind: errUnauthenticated, reason: "credential-mismatch",
			msg: "client certificate and bearer token belong to different callers"}
	}
	return c, nil
}

// tokenCaller is the caller of the bearer token in the authorization
// metadata values.
func (cs Callers) tokenCaller(vals []string) (Caller, error) {
	if len(vals) != 1 {
		return Caller{}, &edgeError{kind: errUnauthenticated, reason: "missing-bearer-token", msg: "missing bearer token: send metadata 'authorization: Bearer <token>'"}
	}
	tok, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || tok == "" {
		return Caller{}, &edgeError{kind: errUnauthenticated, reason: "malformed-authorization", msg: "authorization metadata must be 'Bearer <token>'"}
	}
	c, ok := cs[secret.Hash(tok)]
	if !ok {
		return Caller{}, &edgeError{kind: errUnauthenticated, reason: "unknown-bearer-token", msg: "unknown bearer token"}
	}
	return c, nil
}

// sameCaller combines two credentials of one call, reporting whether they
// name the same caller; that caller keeps only the roles both grant.
func sameCaller(a, b Caller) (Caller, bool) {
	if a.Name != b.Name {
		return Caller{}, false
	}
	c := Caller{Name: a.Name}
	for _, r := range a.Roles {
		if b.has(r) && !c.has(r) {
			c.Roles = append(c.Roles, r)
		}
	}
	return c, true
}

// unaryAuth is the interceptor that runs authorize before every unary call.
func (cs Callers) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := cs.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// streamAuth is the interceptor for streaming calls (health Watch).
func (cs Callers) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if _, err := cs.authorize(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}
