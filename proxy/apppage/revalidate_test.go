package apppage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/apppass"
)

func TestRevalidator(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	r.now = func() time.Time { return now }
	ctx := context.Background()
	for _, u := range []string{"ok@example.org", "gone@example.org", "down@example.org", "moved@example.org"} {
		if err := r.store.SetRefreshToken(ctx, u, "rt-"+u); err != nil {
			t.Fatal(err)
		}
	}
	pws := map[string]string{}
	for _, u := range []string{"ok@example.org", "gone@example.org"} {
		pw, _, err := r.store.Create(ctx, u, "phone", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		pws[u] = pw
	}
	r.prov.refresh = func(rt string) (Tokens, error) {
		switch user := strings.TrimPrefix(rt, "rt-"); user {
		case "ok@example.org":
			return Tokens{Access: "at-" + user, Refresh: "rt2-" + user}, nil
		case "gone@example.org":
			return Tokens{}, fmt.Errorf("%w: refresh: invalid_grant (HTTP 400)", ErrRefused)
		case "moved@example.org":
			return Tokens{Access: "at-other@example.org"}, nil
		default:
			return Tokens{}, fmt.Errorf("%w: refresh: the token endpoint answered HTTP 503", auth.ErrUnavailable)
		}
	}
	var mu sync.Mutex
	counts := map[string]int{}
	now = now.Add(2 * time.Hour) // everyone is due
	v := &Revalidator{Store: r.store, Provider: r.prov, Authenticator: stubAuthenticator, Interval: time.Hour,
		Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Count: func(res string) { mu.Lock(); counts[res]++; mu.Unlock() }}
	if n := v.RunOnce(ctx); n != 3 {
		t.Errorf("RunOnce decided %d users, want 3 (ok, gone, moved)", n)
	}
	if counts[RevalidationOK] != 1 || counts[RevalidationRefused] != 2 || counts[RevalidationError] != 1 {
		t.Errorf("counts %v", counts)
	}
	if rt, _ := r.store.RefreshToken(ctx, "ok@example.org"); rt != "rt2-ok@example.org" {
		t.Errorf("rotated token not stored: %q", rt)
	}
	if _, err := r.store.Verify(ctx, "ok@example.org", pws["ok@example.org"], apppass.IMAP, ""); err != nil {
		t.Errorf("ok user's app password: %v", err)
	}
	if _, err := r.store.Verify(ctx, "gone@example.org", pws["gone@example.org"], apppass.IMAP, ""); !errors.Is(err, apppass.ErrSuspended) {
		t.Errorf("refused user's app password: %v, want ErrSuspended", err)
	}
	for u, suspended := range map[string]bool{"moved@example.org": true, "down@example.org": false} {
		l, err := r.store.LinkStatus(ctx, u)
		if err != nil || l.Suspended.IsZero() == suspended {
			t.Errorf("%s: link %+v, %v; want suspended %v", u, l, err, suspended)
		}
	}
	// Nothing is due again before the interval has passed, but the user
	// the provider could not be asked about is tried again a pass later.
	if n := v.RunOnce(ctx); n != 0 || counts[RevalidationError] != 1 {
		t.Errorf("second pass at once decided %d users, counts %v", n, counts)
	}
	now = now.Add(v.pass() + time.Second)
	if n := v.RunOnce(ctx); n != 0 || counts[RevalidationError] != 2 || counts[RevalidationOK] != 1 {
		t.Errorf("a pass later: decided %d users, counts %v; want down@ tried again only", n, counts)
	}
	// Signing in again lifts the suspension.
	if err := r.store.SetRefreshToken(ctx, "gone@example.org", "rt-new"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Verify(ctx, "gone@example.org", pws["gone@example.org"], apppass.IMAP, ""); err != nil {
		t.Errorf("after a new sign-in: %v", err)
	}
}

// tokenEndpoint is a stub provider answering the OpenID configuration
// and the token endpoint with answer.
func tokenEndpoint(t *testing.T, answer func(w http.ResponseWriter)) *OIDC {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			fmt.Fprintf(w, `{"issuer":%q,"authorization_endpoint":"%s/auth","token_endpoint":"%s/token"}`, srv.URL, srv.URL, srv.URL)
		case "/token":
			if id, secret, ok := r.BasicAuth(); !ok || id != "page" || secret != "s3cret" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			answer(w)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return NewOIDC(OIDCOptions{Issuer: srv.URL, ClientID: "page", ClientSecret: "s3cret", RedirectURL: "https://x/cb", Client: srv.Client()})
}

func TestRefreshErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		want   error // nil: success
		temp   bool
	}{
		{"rotated", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":"at","token_type":"bearer","refresh_token":"rt2","expires_in":60}`)
		}, nil, false},
		{"invalid_grant", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant","error_description":"rt-secret-value was revoked"}`)
		}, ErrRefused, false},
		{"invalid_client", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_client"}`)
		}, errors.New("invalid_client"), false},
		{"500", func(w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) }, auth.ErrUnavailable, true},
		{"garbage", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":`)
		}, auth.ErrUnavailable, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tokenEndpoint(t, tt.answer)
			tok, err := o.Refresh(context.Background(), "rt-secret-value")
			switch {
			case tt.want == nil:
				if err != nil || tok.Access != "at" || tok.Refresh != "rt2" {
					t.Fatalf("Refresh = %+v, %v", tok, err)
				}
				return
			case err == nil:
				t.Fatalf("Refresh succeeded, want %v", tt.want)
			case strings.Contains(err.Error(), "rt-secret-value"):
				t.Errorf("the error shows the refresh token: %v", err)
			case tt.temp != errors.Is(err, auth.ErrUnavailable), errors.Is(err, ErrRefused) != errors.Is(tt.want, ErrRefused):
				t.Errorf("Refresh error %v, want like %v", err, tt.want)
			case !tt.temp && !errors.Is(err, ErrRefused) && !strings.Contains(err.Error(), tt.want.Error()):
				t.Errorf("Refresh error %v, want one naming %v", err, tt.want)
			}
		})
	}
}

func TestProviderDownAtSignIn(t *testing.T) {
	o := NewOIDC(OIDCOptions{Issuer: "http://127.0.0.1:1", ClientID: "page", Client: &http.Client{Timeout: time.Second}})
	if _, err := o.AuthCodeURL(context.Background(), "s", strings.Repeat("v", 43)); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("AuthCodeURL with the provider down: %v, want ErrUnavailable", err)
	}
}

// fakeRevalStore is a store whose claims fail as claimErr says, for the
// failure modes a real store cannot be made to show on demand.
type fakeRevalStore struct {
	due      int
	claimErr error
	claims   int
	refused  []string
}

func (f *fakeRevalStore) DueForRevalidation(_ context.Context, _ time.Time, limit int) ([]string, error) {
	users := make([]string, min(f.due, limit))
	for i := range users {
		users[i] = fmt.Sprintf("u%d@example.org", i)
	}
	return users, nil
}

func (f *fakeRevalStore) ClaimRevalidationRetry(_ context.Context, user string, _ time.Time, _ time.Duration) (apppass.Claim, error) {
	f.claims++
	return apppass.Claim{User: user, Linked: time.Unix(1, 0)}, f.claimErr
}

func (f *fakeRevalStore) Revalidated(context.Context, apppass.Claim, string) error { return nil }

func (f *fakeRevalStore) Refused(_ context.Context, c apppass.Claim, reason string) error {
	f.refused = append(f.refused, c.User+": "+reason)
	return nil
}

func TestRevalidatorStoreFailures(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	prov := &stubProvider{refresh: func(string) (Tokens, error) { t.Fatal("the provider was asked"); return Tokens{}, nil }}
	// A store that lists users but cannot claim them: the pass ends at the
	// first failure instead of listing the same batch again and again.
	broken := &fakeRevalStore{due: 500, claimErr: fmt.Errorf("%w: read-only database", auth.ErrUnavailable)}
	v := &Revalidator{Store: broken, Provider: prov, Authenticator: stubAuthenticator, Interval: time.Hour, Logger: quiet}
	if n := v.RunOnce(context.Background()); n != 0 || broken.claims != 1 {
		t.Errorf("RunOnce decided %d after %d claims, want 0 after 1", n, broken.claims)
	}
	// A token that no longer decrypts (key_file replaced) is refused: the
	// user must sign in again, rather than keep working unchecked.
	lost := &fakeRevalStore{due: 2, claimErr: fmt.Errorf("%w: unknown key", apppass.ErrKey)}
	v.Store = lost
	if n := v.RunOnce(context.Background()); n != 2 || len(lost.refused) != 2 || !strings.Contains(lost.refused[0], "cannot be decrypted") {
		t.Errorf("RunOnce decided %d, refused %q; want both refused", n, lost.refused)
	}
}

// A provider whose token validation cannot be reached at revalidation
// (the refresh worked, the check of the new token could not be made)
// suspends nobody.
func TestRevalidatorValidatorDown(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	r.now = func() time.Time { return now }
	ctx := context.Background()
	if err := r.store.SetRefreshToken(ctx, "alice@example.org", "rt"); err != nil {
		t.Fatal(err)
	}
	r.prov.refresh = func(string) (Tokens, error) { return Tokens{Access: "at-down"}, nil }
	now = now.Add(2 * time.Hour)
	v := &Revalidator{Store: r.store, Provider: r.prov, Authenticator: stubAuthenticator, Interval: time.Hour,
		Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if n := v.RunOnce(ctx); n != 0 {
		t.Errorf("RunOnce decided %d users", n)
	}
	if l, err := r.store.LinkStatus(ctx, "alice@example.org"); err != nil || !l.Suspended.IsZero() {
		t.Errorf("link %+v, %v: suspended while the validator was down", l, err)
	}
}
