package grpcapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/secret"
)

func TestParseCaller(t *testing.T) {
	lower := strings.Repeat("0123456789abcdef", 4)
	upper := strings.ToUpper(lower)
	type result struct {
		Hash   string
		Caller Caller
	}
	tests := []struct {
		name string
		in   string
		want result
	}{
		{"portal", "web:portal:" + lower, result{lower, Caller{"web", []Role{RolePortal}}}},
		{"admin", "ops:admin:" + lower, result{lower, Caller{"ops", []Role{RoleAdmin}}}},
		{"both roles", "cli:portal+admin:" + lower, result{lower, Caller{"cli", []Role{RolePortal, RoleAdmin}}}},
		{"both roles reversed", "cli:admin+portal:" + lower, result{lower, Caller{"cli", []Role{RoleAdmin, RolePortal}}}},
		{"upper-case hex is lowered", "web:portal:" + upper, result{lower, Caller{"web", []Role{RolePortal}}}},
		{"surrounding space", "  web:portal:" + lower + "\n", result{lower, Caller{"web", []Role{RolePortal}}}},
		{"64-byte name", strings.Repeat("n", 64) + ":portal:" + lower, result{lower, Caller{strings.Repeat("n", 64), []Role{RolePortal}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hash, c, err := ParseCaller(tt.in)
			if err != nil {
				t.Fatalf("ParseCaller(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, result{hash, c}); diff != "" {
				t.Errorf("ParseCaller(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseCallerErrors(t *testing.T) {
	// The token hash is a credential's fingerprint: errors go to the
	// start-up log, so none may repeat it, whatever the mistake.
	hash := strings.Repeat("9f86d081884c7d65", 4)
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"bad role", "web:root:" + hash, `role "root"`},
		{"empty role", "web::" + hash, `role ""`},
		{"one good one bad role", "web:portal+root:" + hash, `role "root"`},
		{"trailing plus", "web:portal+:" + hash, `role ""`},
		{"upper-case role", "web:PORTAL:" + hash, `role "PORTAL"`},
		{"hash too short", "web:portal:" + hash[:63], "64 hex"},
		{"hash too long", "web:portal:" + hash + "0", "64 hex"},
		{"hash not hex", "web:portal:" + hash[:63] + "g", "64 hex"},
		{"empty hash", "web:portal:", "64 hex"},
		{"empty name", ":portal:" + hash, "name"},
		{"name too long", strings.Repeat("n", 65) + ":portal:" + hash, "name"},
		{"missing role", "web:" + hash, "NAME:ROLE"},
		{"missing name and role", hash, "NAME:ROLE"},
		{"empty", "", "NAME:ROLE"},
		{"space instead of colon", "web portal " + hash, "NAME:ROLE"},
		{"extra field after hash", "web:portal:" + hash + ":extra", "NAME:ROLE"},
		{"trailing colon", "web:portal:" + hash + ":", "NAME:ROLE"},
		{"name and hash swapped", hash + ":portal:web", "64 hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotHash, c, err := ParseCaller(tt.in)
			if err == nil {
				t.Fatalf("ParseCaller(%q) = %q, %+v, nil; want an error", tt.in, gotHash, c)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("ParseCaller(%q) error = %q, want it to mention %q", tt.in, msg, tt.wantErr)
			}
			// 16 hex digits of the hash are enough to recognise it.
			if strings.Contains(strings.ToLower(msg), hash[:16]) {
				t.Errorf("ParseCaller(%q) error = %q echoes the token hash", tt.in, msg)
			}
			if gotHash != "" {
				t.Errorf("ParseCaller(%q) returned hash %q with an error", tt.in, gotHash)
			}
		})
	}
}

func FuzzParseCaller(f *testing.F) {
	h := strings.Repeat("ab", 32)
	for _, s := range []string{"", ":", "::", "web:portal:" + h, "web:portal+admin:" + strings.ToUpper(h), "web:root:" + h, "a:b:c:d", "\xff:portal:" + h, h} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hash, c, err := ParseCaller(s)
		if err != nil {
			return
		}
		if len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
			t.Fatalf("ParseCaller(%q) hash = %q, want 64 lower-case hex digits", s, hash)
		}
		if c.Name == "" || len(c.Roles) == 0 {
			t.Fatalf("ParseCaller(%q) = %+v, want a name and a role", s, c)
		}
		for _, r := range c.Roles {
			if r != RolePortal && r != RoleAdmin {
				t.Fatalf("ParseCaller(%q) role %q", s, r)
			}
		}
	})
}

func TestParseCertCaller(t *testing.T) {
	type result struct {
		Match  string
		Caller Caller
	}
	tests := []struct {
		name string
		in   string
		want result
	}{
		{"common name", "web:portal:cn=portal backend", result{"cn=portal backend", Caller{"web", []Role{RolePortal}}}},
		{"dns name", "web:portal:dns=portal.internal.example", result{"dns=portal.internal.example", Caller{"web", []Role{RolePortal}}}},
		{"uri with colons", "ops:admin:uri=spiffe://example.org/ns/ops:8443", result{"uri=spiffe://example.org/ns/ops:8443", Caller{"ops", []Role{RoleAdmin}}}},
		{"email", "bot:portal+admin:email=bot@example.org", result{"email=bot@example.org", Caller{"bot", []Role{RolePortal, RoleAdmin}}}},
		{"value holding '='", "web:portal:cn=a=b", result{"cn=a=b", Caller{"web", []Role{RolePortal}}}},
		{"case kept", "web:portal:dns=Portal.Example", result{"dns=Portal.Example", Caller{"web", []Role{RolePortal}}}},
		{"surrounding space", " web:portal:cn=x\n", result{"cn=x", Caller{"web", []Role{RolePortal}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			match, c, err := ParseCertCaller(tt.in)
			if err != nil {
				t.Fatalf("ParseCertCaller(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, result{match, c}); diff != "" {
				t.Errorf("ParseCertCaller(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseCertCallerErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"empty", "", "NAME:ROLE[+ROLE]:MATCH"},
		{"no match", "web:portal", "NAME:ROLE[+ROLE]:MATCH"},
		{"empty name", ":portal:cn=x", "name"},
		{"name too long", strings.Repeat("n", 65) + ":portal:cn=x", "name"},
		{"bad role", "web:root:cn=x", `role "root"`},
		{"empty match", "web:portal:", `match ""`},
		{"no kind", "web:portal:portal.example", `match "portal.example"`},
		{"unknown kind", "web:portal:ip=10.0.0.1", `match "ip=10.0.0.1"`},
		{"kind in capitals", "web:portal:CN=x", `match "CN=x"`},
		{"empty value", "web:portal:dns=", `match "dns="`},
		{"relative uri", "web:portal:uri=/portal", "absolute URI"},
		{"unparsable uri", "web:portal:uri=spiffe://exa mple/%zz", "absolute URI"},
		{"control character", "web:portal:cn=a\x00b", "control character"},
		{"value too long", "web:portal:cn=" + strings.Repeat("x", 1025), "longer than 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			match, c, err := ParseCertCaller(tt.in)
			if err == nil {
				t.Fatalf("ParseCertCaller(%q) = %q, %+v, nil; want an error", tt.in, match, c)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCertCaller(%q) error = %q, want it to mention %q", tt.in, err, tt.wantErr)
			}
			if match != "" {
				t.Errorf("ParseCertCaller(%q) returned match %q with an error", tt.in, match)
			}
		})
	}
}

func FuzzParseCertCaller(f *testing.F) {
	for _, s := range []string{"", ":", "::", "web:portal:cn=x", "web:admin:uri=spiffe://a/b:1", "web:portal:dns=", "a:b:c:d", "web:portal:email=\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		match, c, err := ParseCertCaller(s)
		if err != nil {
			return
		}
		kind, value, ok := strings.Cut(match, "=")
		if !ok || value == "" || (kind != "cn" && kind != "dns" && kind != "uri" && kind != "email") {
			t.Fatalf("ParseCertCaller(%q) match = %q", s, match)
		}
		if len(match) == 64 && strings.Trim(match, "0123456789abcdef") == "" {
			t.Fatalf("ParseCertCaller(%q) match %q could be a token hash", s, match)
		}
		if c.Name == "" || len(c.Roles) == 0 {
			t.Fatalf("ParseCertCaller(%q) = %+v, want a name and a role", s, c)
		}
	})
}

// tlsPeer is the context of a call over a TLS connection whose client
// presented cert, verified by the handshake or not.
func tlsPeer(cert *x509.Certificate, verified bool) context.Context {
	var state tls.ConnectionState
	if cert != nil {
		state.PeerCertificates = []*x509.Certificate{cert}
		if verified {
			state.VerifiedChains = [][]*x509.Certificate{{cert}}
		}
	}
	return peer.NewContext(context.Background(), &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000},
		AuthInfo: credentials.TLSInfo{State: state},
	})
}

// TestAuthorizeCallerFrom: the caller a certificate, a token or both name
// is the one the handler reads with CallerFrom, with the roles the rule
// gives it.
func TestAuthorizeCallerFrom(t *testing.T) {
	const token = "token-of-web-0123456789"
	admin, _ := url.Parse("spiffe://example.org/ops")
	cs := Callers{
		secret.Hash(token):       {"web", []Role{RolePortal, RoleAdmin}},
		"dns=web.example":        {"web", []Role{RolePortal}},
		"uri=" + admin.String():  {"ops", []Role{RoleAdmin}},
		"cn=web backend":         {"web", []Role{RolePortal}},
		"email=both@example.org": {"both", []Role{RolePortal, RoleAdmin}},
	}
	withToken := func(ctx context.Context) context.Context {
		return metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
	}
	getUser := sfv1.SecondFactorService_GetUser_FullMethodName
	tests := []struct {
		name   string
		ctx    context.Context
		method string
		want   Caller
	}{
		{"token over plaintext", withToken(context.Background()), getUser, Caller{"web", []Role{RolePortal, RoleAdmin}}},
		{"token over TLS without certificate", withToken(tlsPeer(nil, false)), getUser, Caller{"web", []Role{RolePortal, RoleAdmin}}},
		{"dns certificate", tlsPeer(&x509.Certificate{DNSNames: []string{"other.example", "web.example"}}, true), getUser, Caller{"web", []Role{RolePortal}}},
		{"uri certificate", tlsPeer(&x509.Certificate{URIs: []*url.URL{admin}}, true), sfv1.AdminService_ResetUser_FullMethodName, Caller{"ops", []Role{RoleAdmin}}},
		{"email certificate", tlsPeer(&x509.Certificate{EmailAddresses: []string{"both@example.org"}}, true), getUser, Caller{"both", []Role{RolePortal, RoleAdmin}}},
		{"two identities of one caller", tlsPeer(&x509.Certificate{Subject: pkix.Name{CommonName: "web backend"}, DNSNames: []string{"web.example"}}, true), getUser, Caller{"web", []Role{RolePortal}}},
		{"certificate and token: the roles both grant", withToken(tlsPeer(&x509.Certificate{DNSNames: []string{"web.example"}}, true)), getUser, Caller{"web", []Role{RolePortal}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, err := cs.authorize(tt.ctx, tt.method)
			if err != nil {
				t.Fatalf("authorize: %v", err)
			}
			got, ok := CallerFrom(ctx)
			if !ok {
				t.Fatal("CallerFrom: no caller")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("CallerFrom mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAuthorizeRefusesCertificate: the refusals of a certificate's caller
// are edge errors of the right kind and reason.
func TestAuthorizeRefusesCertificate(t *testing.T) {
	cs := Callers{"dns=web.example": {"web", []Role{RolePortal}}, "cn=ops": {"ops", []Role{RoleAdmin}}}
	tests := []struct {
		name       string
		ctx        context.Context
		method     string
		wantKind   error
		wantReason string
	}{
		{"presented but not verified", tlsPeer(&x509.Certificate{DNSNames: []string{"web.example"}}, false), sfv1.SecondFactorService_GetUser_FullMethodName, errUnauthenticated, "unverified-client-certificate"},
		{"mapped to nobody", tlsPeer(&x509.Certificate{DNSNames: []string{"x.example"}}, true), sfv1.SecondFactorService_GetUser_FullMethodName, errUnauthenticated, "unknown-client-certificate"},
		{"mapped to two callers", tlsPeer(&x509.Certificate{Subject: pkix.Name{CommonName: "ops"}, DNSNames: []string{"web.example"}}, true), sfv1.SecondFactorService_GetUser_FullMethodName, errUnauthenticated, "ambiguous-client-certificate"},
		{"lacks the role", tlsPeer(&x509.Certificate{DNSNames: []string{"web.example"}}, true), sfv1.AdminService_ResetUser_FullMethodName, errPermissionDenied, "missing-role"},
		{"no credential over TLS", tlsPeer(nil, false), sfv1.SecondFactorService_GetUser_FullMethodName, errUnauthenticated, "missing-bearer-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, err := cs.authorize(tt.ctx, tt.method)
			if !errors.Is(err, tt.wantKind) || reasonOf(err) != tt.wantReason {
				t.Fatalf("authorize = %v (reason %q), want %v with reason %s", err, reasonOf(err), tt.wantKind, tt.wantReason)
			}
			if ctx != nil {
				t.Error("a refused call goes on with a context")
			}
		})
	}
}
