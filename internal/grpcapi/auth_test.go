package grpcapi

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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
