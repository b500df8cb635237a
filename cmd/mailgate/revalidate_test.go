package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/config"
)

// TestRevalidatorBypassesAndForgets: revalidation asks the provider even
// when the token is cached, and a refusal also drops the token from the
// cache, so that a reconnect with it is refused at once.
func TestRevalidatorBypassesAndForgets(t *testing.T) {
	var revoked atomic.Bool
	var calls atomic.Int32
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if revoked.Load() || r.Header.Get("Authorization") != "Bearer tok-alice" {
			http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"email":"alice@example.test","email_verified":true}`))
	}))
	defer stub.Close()
	ta := startTestApp(t, func(c *config.Config) {
		c.OAuth2.UserinfoURL = stub.URL
		c.OAuth2.CacheTTL = time.Hour
		c.OAuth2.SessionLifetime = "revalidate"
	})
	ctx := context.Background()
	cred := auth.Credentials{Mechanism: "XOAUTH2", User: "alice@example.test", Token: "tok-alice", RemoteAddr: "127.0.0.1:1"}
	for i := 0; i < 2; i++ {
		if _, err := ta.a.auth.Authenticate(ctx, cred); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("provider calls after two logins = %d, want 1 (cached)", n)
	}
	r := revalidator{ta.a}
	if err := r.Revalidate(ctx, cred); err != nil {
		t.Fatalf("revalidate a valid token: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("provider calls = %d, want 2 (revalidation bypasses the cache)", n)
	}
	revoked.Store(true)
	if err := r.Revalidate(ctx, cred); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("revalidate a revoked token = %v, want invalid", err)
	}
	if _, err := ta.a.auth.Authenticate(ctx, cred); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("login with the revoked token after revalidation = %v, want refused (not from the cache)", err)
	}
}
