package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// loginAppRemember is how long Hydra remembers a login and a consent
// accepted by the login app.
const loginAppRemember = time.Hour

// LoginAppOptions configures [Hydra.StartLoginApp].
type LoginAppOptions struct {
	// Email is the address every login is accepted for: the email claim,
	// with email_verified true, of the ID token and the access token.
	// Required.
	Email string
	// Subject is the sub claim. Empty: Email.
	Subject string
}

// LoginApp is Hydra's login and consent app for browsers: a real HTTP server
// on the address Hydra's urls.login and urls.consent point to. It shows no
// page: like a user who signs in as LoginAppOptions.Email and allows
// everything, it accepts each login challenge (subject, remember) and each
// consent challenge (the requested scopes and audience, the email claims,
// remember) through the admin API and redirects the browser on. It counts
// the requests, so a test can tell whether a client had to show the login
// window again.
type LoginApp struct {
	URL string // http://127.0.0.1:port, no trailing slash

	h    *Hydra
	opts LoginAppOptions
	srv  *http.Server
	done chan struct{}

	mu       sync.Mutex
	logins   int
	consents int
	events   []string // one line per request, for failure messages
}

// StartLoginApp starts the login and consent app of h and stops it in
// tb.Cleanup. One app at a time can run for a Hydra, so use it on a Hydra of
// the test's own ([StartHydra]), not [SharedHydra].
func (h *Hydra) StartLoginApp(tb testing.TB, opts LoginAppOptions) *LoginApp {
	tb.Helper()
	a, err := h.NewLoginApp(opts)
	if err != nil {
		tb.Fatalf("start login app: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("login app: %s", a.Summary())
		}
		a.Stop()
	})
	return a
}

// NewLoginApp is StartLoginApp without testing.TB; the caller must call Stop.
func (h *Hydra) NewLoginApp(opts LoginAppOptions) (*LoginApp, error) {
	if opts.Email == "" {
		return nil, errors.New("login app: Email is required")
	}
	if opts.Subject == "" {
		opts.Subject = opts.Email
	}
	h.appMu.Lock()
	defer h.appMu.Unlock()
	if h.app != nil {
		return nil, errors.New("login app: one is already running for this Hydra")
	}
	// The port was free when Hydra's configuration was written; nothing of
	// ours has taken it since.
	ln, err := net.Listen("tcp", h.uiAddr)
	if err != nil {
		return nil, fmt.Errorf("login app: listen on Hydra's login URL address: %w", err)
	}
	a := &LoginApp{URL: "http://" + h.uiAddr, h: h, opts: opts, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", a.login)
	mux.HandleFunc("GET /consent", a.consent)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: httpTimeout}
	go func() {
		defer close(a.done)
		_ = a.srv.Serve(ln) // http.ErrServerClosed after Stop
	}()
	h.app = a
	return a, nil
}

// Stop stops the app and waits for it. It is idempotent.
func (a *LoginApp) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
	<-a.done
	a.h.appMu.Lock()
	if a.h.app == a {
		a.h.app = nil
	}
	a.h.appMu.Unlock()
}

// Logins is the number of login requests served (the login window was
// shown, with or without Hydra remembering the user).
func (a *LoginApp) Logins() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logins
}

// Consents is the number of consent requests served.
func (a *LoginApp) Consents() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.consents
}

// Summary describes every request served, for failure messages.
func (a *LoginApp) Summary() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return fmt.Sprintf("%d login and %d consent requests\n  %s", a.logins, a.consents, strings.Join(a.events, "\n  "))
}

func (a *LoginApp) event(format string, args ...any) {
	a.mu.Lock()
	a.events = append(a.events, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	a.mu.Unlock()
}

// login accepts a login challenge for the configured subject.
func (a *LoginApp) login(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.logins++
	a.mu.Unlock()
	challenge := r.URL.Query().Get("login_challenge")
	req, err := a.h.adminJSON(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/login?login_challenge="+url.QueryEscape(challenge), nil, http.StatusOK)
	if err != nil {
		a.fail(w, "login", err)
		return
	}
	client, _ := req["client"].(map[string]any)
	a.event("login client=%s skip=%v scope=%v", str(client["client_id"]), req["skip"], req["requested_scope"])
	acc, err := a.h.adminJSON(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(challenge),
		map[string]any{"subject": a.opts.Subject, "remember": true, "remember_for": int(loginAppRemember / time.Second)}, http.StatusOK)
	if err != nil {
		a.fail(w, "login", err)
		return
	}
	a.redirect(w, r, "login", str(acc["redirect_to"]))
}

// consent grants what was requested, with the email claims in both tokens.
func (a *LoginApp) consent(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.consents++
	a.mu.Unlock()
	challenge := r.URL.Query().Get("consent_challenge")
	req, err := a.h.adminJSON(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/consent?consent_challenge="+url.QueryEscape(challenge), nil, http.StatusOK)
	if err != nil {
		a.fail(w, "consent", err)
		return
	}
	client, _ := req["client"].(map[string]any)
	a.event("consent client=%s skip=%v scope=%v audience=%v", str(client["client_id"]), req["skip"], req["requested_scope"], req["requested_access_token_audience"])
	scopes, audience := req["requested_scope"], req["requested_access_token_audience"]
	if scopes == nil {
		scopes = []string{}
	}
	if audience == nil {
		audience = []string{}
	}
	claims := map[string]any{"email": a.opts.Email, "email_verified": true}
	acc, err := a.h.adminJSON(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/consent/accept?consent_challenge="+url.QueryEscape(challenge),
		map[string]any{
			"grant_scope":                 scopes,
			"grant_access_token_audience": audience,
			"remember":                    true,
			"remember_for":                int(loginAppRemember / time.Second),
			"session":                     map[string]any{"id_token": claims, "access_token": claims},
		}, http.StatusOK)
	if err != nil {
		a.fail(w, "consent", err)
		return
	}
	a.redirect(w, r, "consent", str(acc["redirect_to"]))
}

func (a *LoginApp) redirect(w http.ResponseWriter, r *http.Request, what, to string) {
	if to == "" {
		a.fail(w, what, errors.New("admin API returned no redirect_to"))
		return
	}
	http.Redirect(w, r, to, http.StatusFound)
}

func (a *LoginApp) fail(w http.ResponseWriter, what string, err error) {
	a.event("%s FAILED: %v", what, err)
	http.Error(w, what+": "+err.Error(), http.StatusBadGateway)
}

// PublicClientOptions configures [Hydra.RegisterPublicClient].
type PublicClientOptions struct {
	// ID is the client id. Empty: "public-" and random characters.
	ID string
	// RedirectURIs are the registered redirect URIs. Required.
	RedirectURIs []string
	// Scope is the space-separated scope the client may request. Empty:
	// "openid email offline_access".
	Scope string
}

// RegisterPublicClient registers a public client, as a desktop or mobile
// mail client has: no secret (token_endpoint_auth_method none; Hydra then
// requires PKCE), the authorization_code and refresh_token grants, JWT access
// tokens, and no allowed audience, so its tokens carry Hydra's defaults. It
// returns the client id.
func (h *Hydra) RegisterPublicClient(ctx context.Context, opts PublicClientOptions) (string, error) {
	if len(opts.RedirectURIs) == 0 {
		return "", errors.New("public client: RedirectURIs is required")
	}
	if opts.ID == "" {
		opts.ID = "public-" + randomString(6)
	}
	if opts.Scope == "" {
		opts.Scope = strings.Join(defaultScopes, " ")
	}
	body := map[string]any{
		"client_id":                  opts.ID,
		"client_name":                opts.ID,
		"access_token_strategy":      "jwt",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      opts.Scope,
		"redirect_uris":              opts.RedirectURIs,
		"token_endpoint_auth_method": "none",
	}
	if _, err := h.adminJSON(ctx, http.MethodPost, "/admin/clients", body, http.StatusCreated); err != nil {
		return "", fmt.Errorf("register public client %s: %w", opts.ID, err)
	}
	return opts.ID, nil
}

// PublicClient is RegisterPublicClient for tests: it fails tb on error.
func (h *Hydra) PublicClient(tb testing.TB, opts PublicClientOptions) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
	defer cancel()
	id, err := h.RegisterPublicClient(ctx, opts)
	if err != nil {
		tb.Fatalf("%v\n%s", err, h.Log.TailBlock(20))
	}
	return id
}

// ConfidentialClientOptions configures [Hydra.RegisterConfidentialClient].
type ConfidentialClientOptions struct {
	// ID is the client id. Empty: "confidential-" and random characters.
	ID string
	// RedirectURIs are the registered redirect URIs. Required.
	RedirectURIs []string
	// Scope is the space-separated scope the client may request. Empty:
	// "openid email offline_access".
	Scope string
}

// RegisterConfidentialClient registers a confidential client, as a web
// application has: a random secret of 48 characters it returns, sent with
// HTTP Basic authentication at the token endpoint (client_secret_basic), the
// authorization_code and refresh_token grants, response type code, JWT
// access tokens, and no allowed audience, so its tokens carry Hydra's
// defaults. PKCE is optional for it (Hydra enforces it for public clients
// only) but accepted.
func (h *Hydra) RegisterConfidentialClient(ctx context.Context, opts ConfidentialClientOptions) (id, secret string, err error) {
	if len(opts.RedirectURIs) == 0 {
		return "", "", errors.New("confidential client: RedirectURIs is required")
	}
	if opts.ID == "" {
		opts.ID = "confidential-" + randomString(6)
	}
	if opts.Scope == "" {
		opts.Scope = strings.Join(defaultScopes, " ")
	}
	secret = randomString(24)
	body := map[string]any{
		"client_id":                  opts.ID,
		"client_name":                opts.ID,
		"client_secret":              secret,
		"access_token_strategy":      "jwt",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      opts.Scope,
		"redirect_uris":              opts.RedirectURIs,
		"token_endpoint_auth_method": "client_secret_basic",
	}
	if _, err := h.adminJSON(ctx, http.MethodPost, "/admin/clients", body, http.StatusCreated); err != nil {
		return "", "", fmt.Errorf("register confidential client %s: %w", opts.ID, err)
	}
	return opts.ID, secret, nil
}

// ConfidentialClient is RegisterConfidentialClient for tests: it fails tb on
// error.
func (h *Hydra) ConfidentialClient(tb testing.TB, opts ConfidentialClientOptions) (id, secret string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
	defer cancel()
	id, secret, err := h.RegisterConfidentialClient(ctx, opts)
	if err != nil {
		tb.Fatalf("%v\n%s", err, h.Log.TailBlock(20))
	}
	return id, secret
}

// RevokeConsent withdraws subject's consent for clientID ("" = all clients),
// as a user does at the provider's account page, which also revokes the
// refresh and access tokens issued under it (Hydra v2.3.0's admin API,
// DELETE /admin/oauth2/auth/sessions/consent, answering 204; also when there
// was nothing to revoke). Afterwards the token endpoint answers a refresh
// with such a refresh token 400 {"error": "invalid_grant"} (the description
// ends "The refresh token is malformed or not valid."), introspection
// says active=false for its access tokens (a JWT one still verifies
// locally until it expires), and the next authorization asks for consent
// again. Hydra's login session stays: the login app sees the login with
// skip=true.
func (h *Hydra) RevokeConsent(ctx context.Context, subject, clientID string) error {
	if subject == "" {
		return errors.New("revoke consent: subject is required")
	}
	q, of := url.Values{"subject": {subject}}, "all clients"
	if clientID != "" {
		q.Set("client", clientID)
		of = "client " + clientID
	} else {
		q.Set("all", "true")
	}
	if _, err := h.adminJSON(ctx, http.MethodDelete, "/admin/oauth2/auth/sessions/consent?"+q.Encode(), nil, http.StatusNoContent); err != nil {
		return fmt.Errorf("revoke consent of %s for %s: %w", subject, of, err)
	}
	return nil
}
