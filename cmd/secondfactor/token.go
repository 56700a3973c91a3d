package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// roles are the caller roles the server knows.
var roles = []string{"portal", "admin"}

func runTokenNew(_ context.Context, a *app, cmd *command, args []string) error {
	fs := a.flagSet(cmd)
	name := fs.String("name", "", "caller `name`, shown in the audit trail: letters, digits, '.', '_', '-'")
	role := fs.String("role", "", "`roles` of the caller: portal, admin or portal+admin")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "name", "role"); err != nil {
		return err
	}
	if err := checkCallerName(*name); err != nil {
		return err
	}
	if err := checkRoles(*role); err != nil {
		return err
	}
	token, line, err := newCallerToken(*name, *role)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, token)
	fmt.Fprintln(a.stdout, line)
	fmt.Fprintln(a.stderr, "# line 1: the caller's bearer token (SECONDFACTOR_TOKEN), secret, shown only now")
	fmt.Fprintln(a.stderr, "# line 2: add it to SECONDFACTOR_CALLERS on the server; it holds only the token's hash")
	return nil
}

// newCallerToken returns a fresh 256-bit token, base64url without padding,
// and the server's caller entry for it: NAME:ROLES:SHA256HEX.
func newCallerToken(name, roles string) (token, line string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, name + ":" + roles + ":" + hex.EncodeToString(sum[:]), nil
}

func checkCallerName(name string) error {
	if len(name) > 64 {
		return usageErrorf("-name: at most 64 bytes")
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r)
		if !ok {
			return usageErrorf("-name %q: only letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}

func checkRoles(s string) error {
	var seen []string
	for r := range strings.SplitSeq(s, "+") {
		if !slices.Contains(roles, r) {
			return usageErrorf("-role %q: roles are %s, joined with '+'", s, strings.Join(roles, ", "))
		}
		if slices.Contains(seen, r) {
			return usageErrorf("-role %q: %s twice", s, r)
		}
		seen = append(seen, r)
	}
	return nil
}
