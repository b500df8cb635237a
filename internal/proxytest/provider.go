package proxytest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// ProviderFaultTimeout is the validator timeout ProviderAuthenticator uses
// against ProviderFaults.
const ProviderFaultTimeout = 500 * time.Millisecond

// ProviderFaults are userinfo endpoints that fail in every way a provider
// can, by name; they stop when the test ends.
func ProviderFaults(t *testing.T) map[string]string {
	t.Helper()
	refused := httptest.NewServer(http.NotFoundHandler())
	refusedURL := refused.URL
	refused.Close()
	stub := func(h http.HandlerFunc) string {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return s.URL
	}
	return map[string]string{
		"refused": refusedURL,
		"slow": stub(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}),
		"500": stub(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "internal error", http.StatusInternalServerError)
		}),
		"invalid json": stub(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"email": "alice@example.test", "email_verified": tru`)
		}),
		"oversized body": stub(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"email": "alice@example.test", "padding": "`+strings.Repeat("x", 80<<10)+`"}`)
		}),
	}
}

// ProviderAuthenticator validates tokens at the userinfo url within
// timeout, with its own HTTP client whose idle connections are closed when
// the test ends.
func ProviderAuthenticator(t *testing.T, url string, timeout time.Duration) auth.TokenAuthenticator {
	t.Helper()
	hc, err := auth.NewHTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	return auth.TokenAuthenticator{
		Validator: auth.UserinfoValidator{URL: url, Client: hc, Timeout: timeout},
		Policy:    auth.Policy{UsernameClaim: "email"},
		Source:    "userinfo",
	}
}

// ExpiringAuthenticate is FakeAuthenticate with every identity expiring at
// exp. Wrap it in proxy.AuthenticatorFunc.
func ExpiringAuthenticate(exp time.Time) func(context.Context, auth.Credentials) (auth.Identity, error) {
	return func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
		id, err := FakeAuthenticate(ctx, c)
		id.Expiry = exp
		return id, err
	}
}

// Revalidator (a proxy.Revalidator) accepts the token until Revoked is
// set, then refuses it (or, with Unavailable, never answers). It records
// what it was asked.
type Revalidator struct {
	Revoked     atomic.Bool
	Unavailable bool
	Calls       atomic.Int32 // answered calls
	Refusals    atomic.Int32
	mu          sync.Mutex
	seen        []string // "mechanism user token"
}

// Revalidate answers as configured.
func (r *Revalidator) Revalidate(ctx context.Context, c auth.Credentials) error {
	r.mu.Lock()
	r.seen = append(r.seen, c.Mechanism+" "+c.User+" "+c.Token)
	r.mu.Unlock()
	defer r.Calls.Add(1)
	switch {
	case r.Unavailable:
		return fmt.Errorf("%w: test provider down", auth.ErrUnavailable)
	case r.Revoked.Load():
		r.Refusals.Add(1)
		return fmt.Errorf("%w: test revocation", auth.ErrInvalidCredentials)
	}
	return nil
}

// Asked returns "mechanism user token" for every call so far.
func (r *Revalidator) Asked() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// UserinfoAuthenticator validates tokens with a provider's userinfo
// endpoint at url, as oauth2.mode userinfo does.
func UserinfoAuthenticator(url string) auth.TokenAuthenticator {
	return auth.TokenAuthenticator{
		Validator: auth.UserinfoValidator{URL: url, Timeout: 2 * time.Second},
		Policy:    auth.Policy{UsernameClaim: "email"},
		Source:    "userinfo",
	}
}

// JWTExpiry reads the exp claim of a JWT (unverified: the test minted it).
func JWTExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct{ Exp int64 }
	if err != nil || json.Unmarshal(raw, &claims) != nil || claims.Exp == 0 {
		t.Fatalf("no exp in the token's claims")
	}
	return time.Unix(claims.Exp, 0)
}

// UniqueSubject is prefix with a number that makes it unique.
func UniqueSubject(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

// UserPassword is the password of testenv.DefaultUsers.
const UserPassword = "password"
