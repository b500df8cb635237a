package auth

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestUserinfoValidator(t *testing.T) {
	const tok = "opaque-token-1234567890"
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    error // sentinel; nil = success
		claim   string
	}{
		{"200 object", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"sub":"1","email":"alice@example.com","email_verified":true}`)
		}, nil, "alice@example.com"},
		{"401", status(401, `{"error":"invalid_token"}`), ErrInvalidCredentials, ""},
		{"403", status(403, ""), ErrInvalidCredentials, ""},
		{"400", status(400, ""), ErrInvalidCredentials, ""},
		{"500", status(500, "oops"), ErrUnavailable, ""},
		{"503", status(503, ""), ErrUnavailable, ""},
		{"429", status(429, ""), ErrUnavailable, ""},
		{"404", status(404, ""), ErrUnavailable, ""},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusFound)
		}, ErrUnavailable, ""},
		{"invalid JSON", status(200, `{"email":`), ErrUnavailable, ""},
		{"HTML", status(200, `<html>login</html>`), ErrUnavailable, ""},
		{"JSON array", status(200, `[{"email":"a@b"}]`), ErrUnavailable, ""},
		{"JSON string", status(200, `"a@b"`), ErrUnavailable, ""},
		{"JSON null", status(200, `null`), ErrUnavailable, ""},
		{"trailing garbage", status(200, `{"email":"a@b"} x`), ErrUnavailable, ""},
		{"huge body", status(200, `{"email":"a@b","pad":"`+strings.Repeat("x", 70<<10)+`"}`), ErrUnavailable, ""},
		{"body just under cap", status(200, `{"email":"a@b","pad":"`+strings.Repeat("x", 60<<10)+`"}`), nil, "a@b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotAuth, gotAccept, gotMethod atomic.Value
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotAuth.Store(r.Header.Get("Authorization"))
				gotAccept.Store(r.Header.Get("Accept"))
				gotMethod.Store(r.Method)
				tt.handler(w, r)
			}))
			defer srv.Close()
			v := UserinfoValidator{URL: srv.URL + "/userinfo"}
			c, err := v.Validate(context.Background(), tok)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if s, _ := c.String("email"); s != tt.claim {
					t.Errorf("email = %q, want %q", s, tt.claim)
				}
			} else {
				if !errors.Is(err, tt.want) || c != nil {
					t.Fatalf("Validate = %v, %v; want %v", c, err, tt.want)
				}
				if strings.Contains(err.Error(), tok) {
					t.Fatalf("error contains the token: %v", err)
				}
			}
			if gotAuth.Load() != "Bearer "+tok || gotAccept.Load() != "application/json" || gotMethod.Load() != "GET" {
				t.Errorf("request: %v Authorization=%q Accept=%q", gotMethod.Load(), gotAuth.Load(), gotAccept.Load())
			}
		})
	}
}

func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

func TestUserinfoTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	v := UserinfoValidator{URL: srv.URL, Timeout: 100 * time.Millisecond}
	start := time.Now()
	_, err := v.Validate(context.Background(), "tok")
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Validate took %v with a 100ms timeout", elapsed)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestUserinfoSlowBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"email":`)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	v := UserinfoValidator{URL: srv.URL, Timeout: 100 * time.Millisecond}
	if _, err := v.Validate(context.Background(), "tok"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestUserinfoErrors(t *testing.T) {
	ctx := context.Background()
	var called atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called.Store(true) }))
	defer srv.Close()
	if _, err := (UserinfoValidator{URL: srv.URL}).Validate(ctx, ""); !errors.Is(err, ErrInvalidCredentials) || called.Load() {
		t.Errorf("empty token: err = %v, called = %v", err, called.Load())
	}
	if _, err := (UserinfoValidator{}).Validate(ctx, "tok"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("no URL: err = %v", err)
	}
	// A closed port: connection refused.
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	if _, err := (UserinfoValidator{URL: url}).Validate(ctx, "tok"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("refused: err = %v", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := (UserinfoValidator{URL: srv.URL}).Validate(canceled, "tok"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("canceled: err = %v", err)
	}
}

func TestNewHTTPClientCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"email":"a@b"}`)
	}))
	defer srv.Close()

	// Without the test CA the certificate is not trusted.
	plain, err := NewHTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (UserinfoValidator{URL: srv.URL, Client: plain}).Validate(context.Background(), "tok"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("untrusted cert: err = %v", err)
	}

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	client, err := NewHTTPClient(caFile)
	if err != nil {
		t.Fatalf("NewHTTPClient: %v", err)
	}
	if tr := client.Transport.(*http.Transport); tr.TLSClientConfig.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x", tr.TLSClientConfig.MinVersion)
	}
	c, err := (UserinfoValidator{URL: srv.URL, Client: client}).Validate(context.Background(), "tok")
	if err != nil {
		t.Fatalf("with CA: %v", err)
	}
	if s, _ := c.String("email"); s != "a@b" {
		t.Errorf("email = %q", s)
	}

	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not a pem"), 0o600)
	for _, f := range []string{bad, filepath.Join(t.TempDir(), "missing.pem")} {
		if _, err := NewHTTPClient(f); err == nil {
			t.Errorf("NewHTTPClient(%s) succeeded", f)
		}
	}
}
