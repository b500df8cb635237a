package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenCommand(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer tok-alice-0123456789":
			io.WriteString(w, `{"sub":"a","email":"Alice@Example.test","email_verified":true}`)
		case "Bearer tok-unverified-0123456789":
			io.WriteString(w, `{"sub":"b","email":"bob@example.test","email_verified":false}`)
		case "Bearer tok-down-0123456789":
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "mailgate.yaml")
	os.WriteFile(conf, []byte("oauth2:\n  mode: userinfo\n  userinfo_url: "+srv.URL+"/userinfo\n  require_email_verified: true\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("oauth2:\n  mode: jwt\n"), 0o600)

	tests := []struct {
		name  string
		args  []string
		stdin string
		code  int
		out   []string
	}{
		{"accepted", []string{"--config", conf, "tok-alice-0123456789"}, "", 0,
			[]string{"ACCEPTED: alice@example.test", "checked   by userinfo", `email           "Alice@Example.test"`, "email_verified  true"}},
		{"from stdin", []string{"--config", conf, "-"}, "Bearer tok-alice-0123456789\n", 0, []string{"ACCEPTED: alice@example.test"}},
		{"stdin without -", []string{"--config", conf}, "tok-alice-0123456789", 0, []string{"ACCEPTED"}},
		{"email not verified", []string{"--config", conf, "tok-unverified-0123456789"}, "", 1,
			[]string{"REFUSED: email not verified (email_verified=false)", "claims used (as vouched for"}},
		{"refused by the provider", []string{"--config", conf, "tok-revoked-0123456789"}, "", 1, []string{"REFUSED: userinfo: HTTP 401"}},
		{"provider down", []string{"--config", conf, "tok-down-0123456789"}, "", 3, []string{"NO ANSWER", "HTTP 502"}},
		{"no token", []string{"--config", conf}, "", 2, nil},
		{"two tokens", []string{"--config", conf, "a", "b"}, "", 2, nil},
		{"bad oauth2 config", []string{"--config", bad, "tok-alice-0123456789"}, "", 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tokenStdin = strings.NewReader(tt.stdin)
			defer func() { tokenStdin = os.Stdin }()
			var stdout, stderr bytes.Buffer
			code := runToken(tt.args, &stdout, &stderr)
			t.Logf("stdout:\n%s", stdout.String())
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, want := range tt.out {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, stdout.String())
				}
			}
			for _, a := range append(tt.args, tt.stdin) {
				if strings.HasPrefix(a, "tok-") && strings.Contains(stdout.String()+stderr.String(), a) {
					t.Errorf("the token was printed:\n%s%s", stdout.String(), stderr.String())
				}
			}
		})
	}
}
