package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/secondfactor/secondfactor/internal/grpcapi"
	"github.com/secondfactor/secondfactor/internal/secret"
)

// localCaller returns the caller of the local token kept at path, creating
// the file with a new random token if it does not exist. It serves a server
// on loopback with no caller configured: the CLI on the same machine reads
// the file. The caller has both roles.
func localCaller(path string) (hash string, c grpcapi.Caller, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		tok, err := secret.NewToken(rand.Reader)
		if err != nil {
			return "", grpcapi.Caller{}, false, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", grpcapi.Caller{}, false, fmt.Errorf("local token: %w", err)
		}
		_, werr := f.WriteString(tok.Reveal() + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return "", grpcapi.Caller{}, false, fmt.Errorf("local token: %w", werr)
		}
		b, created = []byte(tok.Reveal()), true
	} else if err != nil {
		return "", grpcapi.Caller{}, false, fmt.Errorf("local token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", grpcapi.Caller{}, false, fmt.Errorf("local token: %s is empty", path)
	}
	return secret.Hash(tok), grpcapi.Caller{Name: "local", Roles: []grpcapi.Role{grpcapi.RolePortal, grpcapi.RoleAdmin}}, created, nil
}
