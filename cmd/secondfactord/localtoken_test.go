package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/secondfactor/secondfactor/internal/grpcapi"
	"github.com/secondfactor/secondfactor/internal/secret"
)

func TestLocalCaller(t *testing.T) {
	path := filepath.Join(t.TempDir(), "local-token")
	hash, c, created, err := localCaller(path)
	if err != nil {
		t.Fatalf("localCaller (first): %v", err)
	}
	if !created {
		t.Error("localCaller (first) created = false, want true")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("token file mode = %v, want -rw-------", got)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) != 43 {
		t.Errorf("token file holds %d characters, want a 43-character token", len(tok))
	}
	if got, want := hash, secret.Hash(tok); got != want {
		t.Errorf("hash = %s, want the SHA-256 of the token in the file, %s", got, want)
	}
	if diff := cmp.Diff(grpcapi.Caller{Name: "local", Roles: []grpcapi.Role{grpcapi.RolePortal, grpcapi.RoleAdmin}}, c); diff != "" {
		t.Errorf("caller mismatch (-want +got):\n%s", diff)
	}
	if strings.Contains(hash, tok) || hash == tok {
		t.Error("localCaller returned the token, not its hash")
	}

	hash2, c2, created2, err := localCaller(path)
	if err != nil {
		t.Fatalf("localCaller (second): %v", err)
	}
	if created2 {
		t.Error("localCaller (second) created = true, want false")
	}
	if hash2 != hash {
		t.Errorf("localCaller (second) hash = %s, want the first %s", hash2, hash)
	}
	if diff := cmp.Diff(c, c2); diff != "" {
		t.Errorf("second caller mismatch (-first +second):\n%s", diff)
	}
	b2, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b2) != string(b) {
		t.Error("localCaller (second) rewrote the token file")
	}

	// Another file is another token.
	other, _, _, err := localCaller(filepath.Join(t.TempDir(), "local-token"))
	if err != nil {
		t.Fatal(err)
	}
	if other == hash {
		t.Error("two new local tokens have the same hash")
	}
}

func TestLocalCallerErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := localCaller(empty); err == nil {
		t.Error("localCaller(file of white space) = nil error, want one")
	}
	if _, _, _, err := localCaller(filepath.Join(dir, "no-such-dir", "local-token")); err == nil {
		t.Error("localCaller(path in a missing folder) = nil error, want one")
	}
	// A token written by hand is accepted as is, surrounding space trimmed.
	hand := filepath.Join(dir, "hand")
	if err := os.WriteFile(hand, []byte("  my-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hash, _, created, err := localCaller(hand)
	if err != nil {
		t.Fatal(err)
	}
	if created || hash != secret.Hash("my-token") {
		t.Errorf("localCaller(hand-written) = %s, created %v; want %s, false", hash, created, secret.Hash("my-token"))
	}
}
