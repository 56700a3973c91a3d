package grpcapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// maxMatchBytes bounds the value of a certificate match.
const maxMatchBytes = 1024

// ParseCertCaller reads a caller that authenticates with a client
// certificate, written as NAME:ROLE[+ROLE]:MATCH. MATCH names one identity
// of the certificate, compared exactly: cn=<subject common name>,
// dns=<SAN DNS name>, uri=<SAN URI> or email=<SAN email address>. It
// returns the key of the caller in Callers.
//
// The certificate itself must also verify against the server's client CAs
// (-client-ca); the match only says which caller a verified certificate is.
func ParseCertCaller(s string) (match string, c Caller, err error) {
	parts := strings.SplitN(strings.TrimSpace(s), ":", 3) // a URI holds ':' itself
	if len(parts) != 3 {
		return "", Caller{}, fmt.Errorf("certificate caller: %d fields separated by ':', want NAME:ROLE[+ROLE]:MATCH", len(parts))
	}
	name, roles := parts[0], parts[1]
	if err := checkName(name); err != nil {
		return "", Caller{}, err
	}
	if c.Roles, err = parseRoles(name, roles); err != nil {
		return "", Caller{}, err
	}
	if match, err = parseMatch(parts[2]); err != nil {
		return "", Caller{}, fmt.Errorf("caller %q: %w", name, err)
	}
	c.Name = name
	return match, c, nil
}

// parseMatch checks a certificate match and returns it as the key that
// certIdentities produces for a certificate carrying that identity.
func parseMatch(m string) (string, error) {
	kind, value, _ := strings.Cut(m, "=")
	switch {
	case value == "":
		return "", fmt.Errorf("match %q: want cn=, dns=, uri= or email= and a value", m)
	case len(value) > maxMatchBytes:
		return "", fmt.Errorf("match %s=…: value longer than %d bytes", kind, maxMatchBytes)
	case strings.IndexFunc(value, unicode.IsControl) >= 0:
		return "", fmt.Errorf("match %s=…: value holds a control character", kind)
	}
	switch kind {
	case "cn", "dns", "email":
		return kind + "=" + value, nil
	case "uri":
		u, err := url.Parse(value)
		if err != nil || !u.IsAbs() {
			return "", fmt.Errorf("match %q: want an absolute URI such as spiffe://example.org/portal", m)
		}
		return uriKey(u), nil
	}
	return "", fmt.Errorf("match %q: want cn=, dns=, uri= or email= and a value", m)
}

// uriKey is the key of a SAN URI: the same text for the same URI whether it
// comes from the configuration or from a certificate.
func uriKey(u *url.URL) string { return "uri=" + u.String() }

// certIdentities lists the keys under which a certificate's caller may be
// found in Callers: its subject common name and its SAN DNS names, URIs and
// email addresses.
func certIdentities(cert *x509.Certificate) []string {
	var ids []string
	if cert.Subject.CommonName != "" {
		ids = append(ids, "cn="+cert.Subject.CommonName)
	}
	for _, d := range cert.DNSNames {
		ids = append(ids, "dns="+d)
	}
	for _, u := range cert.URIs {
		ids = append(ids, uriKey(u))
	}
	for _, e := range cert.EmailAddresses {
		ids = append(ids, "email="+e)
	}
	return ids
}

// certCaller returns the caller of the client certificate the connection
// of ctx presented, and whether it presented one. The TLS handshake has
// already refused a certificate that is expired, not yet valid, or not
// signed by a client CA; here a verified certificate that maps to no caller
// is refused, and so is one whose identities map to different callers.
func (cs Callers) certCaller(ctx context.Context) (Caller, bool, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Caller{}, false, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return Caller{}, false, nil
	}
	if len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		// Only a server that asks for no client CA lets this through.
		return Caller{}, true, &edgeError{kind: errUnauthenticated, reason: "unverified-client-certificate", msg: "client certificate not verified"}
	}
	ids := certIdentities(info.State.VerifiedChains[0][0])
	var (
		c     Caller
		found bool
	)
	for _, id := range ids {
		m, ok := cs[id]
		if !ok {
			continue
		}
		if !found {
			c, found = m, true
			continue
		}
		if c, ok = sameCaller(c, m); !ok {
			return Caller{}, true, &edgeError{kind: errUnauthenticated, reason: "ambiguous-client-certificate",
				msg: "client certificate maps to more than one caller", cause: identities(ids)}
		}
	}
	if !found {
		return Caller{}, true, &edgeError{kind: errUnauthenticated, reason: "unknown-client-certificate",
			msg: "client certificate maps to no caller", cause: identities(ids)}
	}
	return c, true, nil
}

// identities is a certificate's identities for the log line, so that an
// operator can see what to map; the caller never sees it (toStatus).
func identities(ids []string) error {
	if len(ids) == 0 {
		return errors.New("certificate carries no identity")
	}
	return fmt.Errorf("certificate identities %s", strings.Join(ids, " "))
}
