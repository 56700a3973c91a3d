package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUseTLS(t *testing.T) {
	tests := []struct {
		target Target
		want   bool
	}{
		{Target{Addr: "127.0.0.1:7070"}, false},
		{Target{Addr: "127.8.9.10:7070"}, false},
		{Target{Addr: "[::1]:7070"}, false},
		{Target{Addr: "localhost:7070"}, false},
		{Target{Addr: "127.0.0.1:7070", ForceTLS: true}, true},
		{Target{Addr: "127.0.0.1:7070", CAFile: "ca.pem"}, true},
		{Target{Addr: "127.0.0.1:7070", ServerName: "sf.example.com"}, true},
		{Target{Addr: "10.0.0.1:7070"}, true},
		{Target{Addr: "0.0.0.0:7070"}, true},
		{Target{Addr: "[::]:7070"}, true},
		{Target{Addr: "[::ffff:10.0.0.1]:7070"}, true},
		{Target{Addr: "localhost.example.com:7070"}, true},
		{Target{Addr: "sf.example.com:7070"}, true},
		{Target{Addr: "127.0.0.1"}, true}, // not host:port: never plaintext
	}
	for _, tt := range tests {
		if got := tt.target.UseTLS(); got != tt.want {
			t.Errorf("UseTLS() with %+v = %v, want %v", tt.target, got, tt.want)
		}
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "local-token")
	if err := os.WriteFile(file, []byte("  file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("sec ret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		env        map[string]string
		file       string
		wantToken  string
		wantSource string
		wantErr    bool
	}{
		{name: "env wins over the file", env: map[string]string{"SECONDFACTOR_TOKEN": " env-token\n"}, file: file,
			wantToken: "env-token", wantSource: "SECONDFACTOR_TOKEN"},
		{name: "file, trimmed", file: file, wantToken: "file-token", wantSource: file},
		{name: "missing file", file: filepath.Join(dir, "nope"), wantErr: true},
		{name: "no file", file: "", wantErr: true},
		{name: "space inside", file: bad, wantErr: true},
		{name: "control character", env: map[string]string{"SECONDFACTOR_TOKEN": "a\x01b"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, source, err := LoadToken(func(k string) string { return tt.env[k] }, tt.file)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("loadToken: token %q, want an error", token)
				}
				if strings.Contains(err.Error(), "sec ret") || strings.Contains(err.Error(), "a\x01b") {
					t.Errorf("error %q shows the token", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if token != tt.wantToken || source != tt.wantSource {
				t.Errorf("loadToken = %q from %q, want %q from %q", token, source, tt.wantToken, tt.wantSource)
			}
		})
	}
}
