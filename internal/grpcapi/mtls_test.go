package grpcapi_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/config"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/server"
	"github.com/secondfactor/secondfactor/internal/server/servertest"
)

// The callers of the TLS server, by token and by certificate. The names of
// the two certificate callers are also given tokens, to test a call that
// presents both.
const (
	portalMTLSToken = "portal-mtls-token-for-tests-0123456789"
	opsPortalToken  = "ops-portal-token-for-tests-0123456789"
	unknownToken    = "nobody-knows-this-token-0123456789"

	portalDNS = "portal.internal.test"
	adminURI  = "spiffe://secondfactor.test/admin/ops"
)

// The certificates a test client may present.
const (
	certPortal      = "portal"       // dns=portal.internal.test: caller portal-mtls, role portal
	certAdmin       = "admin"        // uri=spiffe://…/admin/ops: caller ops-mtls, role admin
	certUnknown     = "unknown"      // signed by the CA, mapped to nobody
	certExpired     = "expired"      // the portal's identity, expired an hour ago
	certNotYetValid = "not-yet"      // the portal's identity, valid from an hour from now
	certWrongCA     = "wrong-ca"     // the portal's identity, signed by another CA
	certEmail       = "email"        // email=bot@secondfactor.test: caller mail-bot, role portal
	certCN          = "cn"           // cn=legacy-client, no SAN: caller cn-caller, roles portal and admin
	certAmbiguous   = "ambiguous"    // cn=two-faced (caller other) and the portal's DNS name
	certNoIdentity  = "no-identity"  // no common name, no SAN
	certPortalUpper = "portal-upper" // dns=PORTAL.internal.test: not an exact match
)

// mtlsEnv is a server with TLS and client CAs, built by server.New from a
// Config as secondfactord builds it, on a loopback listener.
type mtlsEnv struct {
	addr  string
	roots *x509.CertPool // trusts the server's certificate
	certs map[string]*tls.Certificate
	log   *logLines
	dir   string // holds the PEM files of the server's TLS
	ca    *testCA
}

func newMTLSEnv(t *testing.T) *mtlsEnv {
	t.Helper()
	ca, other := newCA(t, "secondfactor test CA"), newCA(t, "another CA")
	e := &mtlsEnv{roots: ca.pool(), log: &logLines{}, dir: t.TempDir(), ca: ca}
	cfg := e.tlsConfig(t)
	cfg.ClientCA = writeFile(t, e.dir, "client-ca.pem", ca.pem)
	cfg.Callers = []string{
		"portal:portal:" + secret.Hash(portalToken),
		"alice-admin:admin:" + secret.Hash(adminToken),
		"portal-mtls:portal:" + secret.Hash(portalMTLSToken),
		"ops-mtls:portal:" + secret.Hash(opsPortalToken),
	}
	cfg.CertCallers = []string{
		"portal-mtls:portal:dns=" + portalDNS,
		"ops-mtls:admin:uri=" + adminURI,
		"mail-bot:portal:email=bot@secondfactor.test",
		"cn-caller:portal+admin:cn=legacy-client",
		"other:admin:cn=two-faced",
	}
	e.addr = servertest.Start(t, cfg, slog.New(slog.NewJSONHandler(e.log, nil))).GRPC

	now := time.Now()
	portal := certSpec{cn: "portal backend", dns: []string{portalDNS}}
	expired, notYet := portal, portal
	expired.notBefore, expired.notAfter = now.Add(-48*time.Hour), now.Add(-time.Hour)
	notYet.notBefore, notYet.notAfter = now.Add(time.Hour), now.Add(48*time.Hour)
	specs := map[string]struct {
		ca   *testCA
		spec certSpec
	}{
		certPortal:      {ca, portal},
		certAdmin:       {ca, certSpec{cn: "ops cli", uris: []string{adminURI}}},
		certUnknown:     {ca, certSpec{cn: "stranger", dns: []string{"stranger.internal.test"}}},
		certExpired:     {ca, expired},
		certNotYetValid: {ca, notYet},
		certWrongCA:     {other, portal},
		certEmail:       {ca, certSpec{cn: "mailer", emails: []string{"bot@secondfactor.test"}}},
		certCN:          {ca, certSpec{cn: "legacy-client"}},
		certAmbiguous:   {ca, certSpec{cn: "two-faced", dns: []string{portalDNS}}},
		certNoIdentity:  {ca, certSpec{}},
		certPortalUpper: {ca, certSpec{cn: "portal backend", dns: []string{"PORTAL.internal.test"}}},
	}
	e.certs = map[string]*tls.Certificate{}
	for name, s := range specs {
		l := s.ca.issue(t, s.spec)
		e.certs[name] = &l.tls
	}
	return e
}

// tlsConfig is a test server's Config with a server certificate for
// 127.0.0.1, ::1 and localhost, signed by the env's CA.
func (e *mtlsEnv) tlsConfig(t *testing.T) config.Config {
	t.Helper()
	srv := e.ca.issue(t, certSpec{
		cn: "secondfactor test server", dns: []string{"localhost"},
		ips: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, server: true,
	})
	cfg := servertest.Config(t)
	cfg.TLSCert = writeFile(t, e.dir, "server.pem", srv.certPEM)
	cfg.TLSKey = writeFile(t, e.dir, "server.key", srv.keyPEM)
	return cfg
}

// dial connects over TLS, presenting the named client certificate ("" for
// none). The client presents it whatever CAs the server asks for, as an
// attacker would: crypto/tls would otherwise keep back a certificate from
// another CA.
func (e *mtlsEnv) dial(t *testing.T, addr, cert string) *grpc.ClientConn {
	t.Helper()
	tc := &tls.Config{RootCAs: e.roots, MinVersion: tls.VersionTLS12}
	if cert != "" {
		c, ok := e.certs[cert]
		if !ok {
			t.Fatalf("no certificate %q", cert)
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return conn
}

// logLines keeps what a server logs, for a test to read.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// rpcLines returns the "rpc" lines logged since the last call, and forgets
// every line. The server logs a call's line before it answers, so the line
// of a call that has returned is there.
func (l *logLines) rpcLines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var lines []map[string]any
	for _, raw := range bytes.Split(bytes.TrimSpace(l.buf.Bytes()), []byte("\n")) {
		if len(raw) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("log line %q: %v", raw, err)
		}
		if m["msg"] == "rpc" {
			lines = append(lines, m)
		}
	}
	l.buf.Reset()
	return lines
}

// apiMethod is a unary method of the API, with the role its service
// demands and its message types.
type apiMethod struct {
	name    string
	role    string
	in, out protoreflect.MessageType
}

// apiMethods lists every method of the two services, read from their
// descriptors so that a method added later is covered without a word
// here. The role of each is stated here, apart from the server's table, so
// that the test does not read the rule it checks.
func apiMethods(t *testing.T) []apiMethod {
	t.Helper()
	var ms []apiMethod
	for _, s := range []struct {
		desc grpc.ServiceDesc
		role string
	}{
		{sfv1.SecondFactorService_ServiceDesc, "portal"},
		{sfv1.AdminService_ServiceDesc, "admin"},
	} {
		for _, st := range s.desc.Streams {
			t.Errorf("%s/%s streams: the matrix calls unary methods only, teach it streams", s.desc.ServiceName, st.StreamName)
		}
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(s.desc.ServiceName))
		if err != nil {
			t.Fatal(err)
		}
		sd := d.(protoreflect.ServiceDescriptor)
		for _, m := range s.desc.Methods {
			md := sd.Methods().ByName(protoreflect.Name(m.MethodName))
			in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
			if err != nil {
				t.Fatal(err)
			}
			out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, apiMethod{name: "/" + s.desc.ServiceName + "/" + m.MethodName, role: s.role, in: in, out: out})
		}
	}
	if len(ms) == 0 {
		t.Fatal("no method found")
	}
	return ms
}

// invoke calls m with an empty request.
func invoke(t *testing.T, conn *grpc.ClientConn, m apiMethod, opts ...grpc.CallOption) error {
	t.Helper()
	return conn.Invoke(t.Context(), m.name, m.in.New().Interface(), m.out.New().Interface(), opts...)
}

// credential is one way of calling, and what the server must make of it.
type credential struct {
	name  string
	cert  string // "" presents none
	token string // "" sends none

	handshake bool   // the TLS handshake refuses it: no call reaches the server
	reason    string // else, if the call is unauthenticated: the refusal's reason
	caller    string // else the caller it names,
	role      string // holding this one role
}

// TestRoleMatrixOverTLS calls every method of both services with empty
// requests, over real TLS, with each credential. Cells:
//   - a certificate the handshake refuses (expired, not yet valid, other CA,
//     each carrying the portal caller's mapped identity, so that only its
//     validity or its issuer can refuse it): Unavailable, and the server
//     logs no call: nothing reached the interceptors, still less a handler;
//   - no credential, or a valid certificate mapped to no caller:
//     Unauthenticated, logged with the authentication rule that refused
//     it and no caller: the call ended in the auth interceptor, before any
//     handler;
//   - a caller without the method's role: PermissionDenied naming the
//     caller, logged with reason missing-role;
//   - a caller with the role: past authentication (any code but
//     Unauthenticated, PermissionDenied or Unavailable, and no reason of
//     the authentication checks on the log line).
func TestRoleMatrixOverTLS(t *testing.T) {
	e := newMTLSEnv(t)
	creds := []credential{
		{name: "no credential", reason: "missing-bearer-token"},
		{name: "portal token", token: portalToken, caller: "portal", role: "portal"},
		{name: "admin token", token: adminToken, caller: "alice-admin", role: "admin"},
		{name: "portal certificate", cert: certPortal, caller: "portal-mtls", role: "portal"},
		{name: "admin certificate", cert: certAdmin, caller: "ops-mtls", role: "admin"},
		{name: "unknown certificate", cert: certUnknown, reason: "unknown-client-certificate"},
		{name: "expired certificate", cert: certExpired, handshake: true},
		{name: "not yet valid certificate", cert: certNotYetValid, handshake: true},
		{name: "certificate of another CA", cert: certWrongCA, handshake: true},
	}
	methods := apiMethods(t)
	for _, c := range creds {
		t.Run(c.name, func(t *testing.T) {
			conn := e.dial(t, e.addr, c.cert)
			var opts []grpc.CallOption
			if c.token != "" {
				opts = append(opts, as(c.token))
			}
			for _, m := range methods {
				err := invoke(t, conn, m, opts...)
				checkCell(t, c, m, err, e.log.rpcLines(t))
			}
		})
	}
}

// checkCell checks one call of the matrix: its error and the rpc lines
// the server logged for it.
func checkCell(t *testing.T, c credential, m apiMethod, err error, lines []map[string]any) {
	t.Helper()
	st := status.Convert(err)
	if c.handshake {
		if st.Code() != codes.Unavailable || len(lines) != 0 {
			t.Errorf("%s: %v with %d rpc lines, want Unavailable from the refused handshake and no rpc line", m.name, err, len(lines))
		}
		return
	}
	if len(lines) != 1 {
		t.Errorf("%s: %v with %d rpc lines, want 1: %v", m.name, err, len(lines), lines)
		return
	}
	line := lines[0]
	if line["method"] != m.name || line["code"] != st.Code().String() {
		t.Errorf("%s: %v logged as %v %v", m.name, st.Code(), line["method"], line["code"])
	}
	switch {
	case c.reason != "":
		if st.Code() != codes.Unauthenticated || line["reason"] != c.reason || line["caller"] != nil {
			t.Errorf("%s: %v, logged reason %v caller %v; want Unauthenticated, reason %s, no caller", m.name, err, line["reason"], line["caller"], c.reason)
		}
	case c.role != m.role:
		if st.Code() != codes.PermissionDenied || line["reason"] != "missing-role" || !strings.Contains(st.Message(), `"`+c.caller+`"`) {
			t.Errorf("%s: %v, logged reason %v; want PermissionDenied naming %s, reason missing-role", m.name, err, line["reason"], c.caller)
		}
	default:
		if authRefusal(st.Code()) || authReasons[fmt.Sprint(line["reason"])] {
			t.Errorf("%s: %v, logged reason %v; want the call past authentication", m.name, err, line["reason"])
		}
	}
}

// authRefusal reports whether a call ended with a code of the
// authentication and role checks, or with no connection at all.
func authRefusal(c codes.Code) bool {
	return c == codes.Unauthenticated || c == codes.PermissionDenied || c == codes.Unavailable
}

// authReasons are the reasons the authentication and role checks log.
var authReasons = map[string]bool{
	"missing-bearer-token": true, "malformed-authorization": true, "unknown-bearer-token": true,
	"unknown-client-certificate": true, "ambiguous-client-certificate": true, "unverified-client-certificate": true,
	"credential-mismatch": true, "missing-role": true, "method-not-declared": true,
}

// TestCertificateAndToken: how a call that presents a certificate, a token
// or both is authenticated. A certificate and a token must name the same
// caller, who then holds only the roles both grant; every credential
// presented must be known; a certificate maps by the exact identity of one
// caller. A denial names the caller a credential mapped to; refusals name
// no credential.
func TestCertificateAndToken(t *testing.T) {
	e := newMTLSEnv(t)
	const portalMethod, adminMethod = "portal", "admin"
	tests := []struct {
		name, cert, auth, method string
		wantPast                 bool       // past authentication and roles, whatever the code
		wantCode                 codes.Code // else the refusal,
		wantMsg                  string     // its message
		wantReason               string     // and the reason logged
	}{
		{name: "certificate and token of the same caller", cert: certPortal, auth: "Bearer " + portalMTLSToken, method: portalMethod, wantPast: true},
		{name: "certificate and token of the same caller, other role", cert: certPortal, auth: "Bearer " + portalMTLSToken, method: adminMethod,
			wantCode: codes.PermissionDenied, wantMsg: `caller "portal-mtls" lacks role "admin"`, wantReason: "missing-role"},
		{name: "certificate and token of different callers", cert: certPortal, auth: "Bearer " + portalToken, method: portalMethod,
			wantCode: codes.Unauthenticated, wantMsg: "client certificate and bearer token belong to different callers", wantReason: "credential-mismatch"},
		{name: "certificate and unknown token", cert: certPortal, auth: "Bearer " + unknownToken, method: portalMethod,
			wantCode: codes.Unauthenticated, wantMsg: "unknown bearer token", wantReason: "unknown-bearer-token"},
		{name: "certificate and malformed authorization", cert: certPortal, auth: "Basic " + portalMTLSToken, method: portalMethod,
			wantCode: codes.Unauthenticated, wantMsg: "authorization metadata must be 'Bearer <token>'", wantReason: "malformed-authorization"},
		{name: "unknown certificate and a good token", cert: certUnknown, auth: "Bearer " + portalToken, method: portalMethod,
			wantCode: codes.Unauthenticated, wantMsg: "client certificate maps to no caller", wantReason: "unknown-client-certificate"},
		{name: "roles both grant: admin certificate, portal token, portal method", cert: certAdmin, auth: "Bearer " + opsPortalToken, method: portalMethod,
			wantCode: codes.PermissionDenied, wantMsg: `caller "ops-mtls" lacks role "portal"`, wantReason: "missing-role"},
		{name: "roles both grant: admin certificate, portal token, admin method", cert: certAdmin, auth: "Bearer " + opsPortalToken, method: adminMethod,
			wantCode: codes.PermissionDenied, wantMsg: `caller "ops-mtls" lacks role "admin"`, wantReason: "missing-role"},
		{name: "email match", cert: certEmail, method: portalMethod, wantPast: true},
		{name: "email match, other role", cert: certEmail, method: adminMethod,
			wantCode: codes.PermissionDenied, wantMsg: `caller "mail-bot" lacks role "admin"`, wantReason: "missing-role"},
		{name: "URI match, other role", cert: certAdmin, method: portalMethod,
			wantCode: codes.PermissionDenied, wantMsg: `caller "ops-mtls" lacks role "portal"`, wantReason: "missing-role"},
		{name: "common name match, portal method", cert: certCN, method: portalMethod, wantPast: true},
		{name: "common name match, admin method", cert: certCN, method: adminMethod, wantPast: true},
		{name: "identities of two callers", cert: certAmbiguous, method: portalMethod,
			wantCode: codes.Unauthenticated, wantMsg: "client certificate maps to more than one caller", wantReason: "ambiguous-client-certificate"},
		{name: "certificate without identity", cert: certNoIdentity, method: portalMethod,
			wantCode: codes.Unauthenticated, wantMsg: "client certificate maps to no caller", wantReason: "unknown-client-certificate"},
		{name: "DNS name in another case", cert: certPortalUpper, method: portalMethod,
			wantCode: codes.Unauthenticated, wantMsg: "client certificate maps to no caller", wantReason: "unknown-client-certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.auth != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tt.auth)
			}
			conn := e.dial(t, e.addr, tt.cert)
			var err error
			if tt.method == portalMethod {
				_, err = sfv1.NewSecondFactorServiceClient(conn).GetUser(ctx, &sfv1.GetUserRequest{UserId: "dr-martin"})
			} else {
				_, err = sfv1.NewAdminServiceClient(conn).ListFactors(ctx, &sfv1.ListFactorsRequest{UserId: "dr-martin"})
			}
			st := status.Convert(err)
			lines := e.log.rpcLines(t)
			if len(lines) != 1 {
				t.Fatalf("logged %d rpc lines, want 1: %v", len(lines), lines)
			}
			reason := fmt.Sprint(lines[0]["reason"])
			switch {
			case tt.wantPast:
				if authRefusal(st.Code()) || authReasons[reason] {
					t.Errorf("got %v %q, logged reason %s; want the call past authentication", st.Code(), st.Message(), reason)
				}
			case st.Code() != tt.wantCode || st.Message() != tt.wantMsg || reason != tt.wantReason:
				t.Errorf("got %v %q, logged reason %s; want %v %q, reason %s", st.Code(), st.Message(), reason, tt.wantCode, tt.wantMsg, tt.wantReason)
			}
			for _, tok := range []string{portalToken, portalMTLSToken, opsPortalToken, unknownToken} {
				if strings.Contains(st.Message(), tok) || strings.Contains(st.Message(), secret.Hash(tok)) {
					t.Errorf("the status repeats a token: %q", st.Message())
				}
			}
		})
	}
}

// TestUnknownCertificateLogged: the log line of a refused certificate
// names the identities it carries, for the operator to map; the caller's
// status does not.
func TestUnknownCertificateLogged(t *testing.T) {
	e := newMTLSEnv(t)
	err := e.dial(t, e.addr, certUnknown).Invoke(t.Context(), sfv1.SecondFactorService_GetUser_FullMethodName, &sfv1.GetUserRequest{UserId: "u"}, &sfv1.GetUserResponse{})
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || strings.Contains(st.Message(), "stranger") {
		t.Fatalf("got %v %q, want Unauthenticated without the certificate's names", st.Code(), st.Message())
	}
	lines := e.log.rpcLines(t)
	if len(lines) != 1 {
		t.Fatalf("logged %d rpc lines, want 1", len(lines))
	}
	want := "client certificate maps to no caller: certificate identities cn=stranger dns=stranger.internal.test"
	if got := lines[0]["error"]; got != want {
		t.Errorf("logged error %q, want %q", got, want)
	}
}

// TestCertificateCallersOnly: a server whose only callers are certificate
// callers starts, and serves them; a plain TLS client without a
// certificate is refused.
func TestCertificateCallersOnly(t *testing.T) {
	e := &mtlsEnv{log: &logLines{}, dir: t.TempDir(), ca: newCA(t, "secondfactor test CA")}
	e.roots = e.ca.pool()
	cfg := e.tlsConfig(t)
	cfg.ClientCA = writeFile(t, e.dir, "client-ca.pem", e.ca.pem)
	cfg.Callers, cfg.CertCallers = nil, []string{"portal-mtls:portal:dns=" + portalDNS}
	addr := servertest.Start(t, cfg, nil).GRPC
	l := e.ca.issue(t, certSpec{dns: []string{portalDNS}})
	e.certs = map[string]*tls.Certificate{certPortal: &l.tls}

	portal := sfv1.NewSecondFactorServiceClient(e.dial(t, addr, certPortal))
	if _, err := portal.GetUser(t.Context(), &sfv1.GetUserRequest{UserId: "u"}); err != nil {
		t.Errorf("GetUser with the portal certificate: %v", err)
	}
	anonymous := sfv1.NewSecondFactorServiceClient(e.dial(t, addr, ""))
	_, err := anonymous.GetUser(t.Context(), &sfv1.GetUserRequest{UserId: "u"})
	wantCode(t, "GetUser without a certificate", err, codes.Unauthenticated)
}

// TestClientCARefused: a client CA file that cannot be read or holds no
// certificate stops the server at start, naming -client-ca.
func TestClientCARefused(t *testing.T) {
	e := &mtlsEnv{dir: t.TempDir(), ca: newCA(t, "secondfactor test CA")}
	for _, tt := range []struct {
		name, file, want string
	}{
		{"missing file", e.dir + "/no-such-ca.pem", "-client-ca: open "},
		{"no certificate", writeFile(t, e.dir, "empty.pem", []byte("not a PEM file\n")), "-client-ca " + e.dir + "/empty.pem: no PEM certificate in it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.tlsConfig(t)
			cfg.ClientCA, cfg.CertCallers = tt.file, []string{"portal-mtls:portal:dns=" + portalDNS}
			srv, err := server.New(t.Context(), cfg, discardLogger())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, %v; want an error containing %q", srv, err, tt.want)
			}
		})
	}
}
