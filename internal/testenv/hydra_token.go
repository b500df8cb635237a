package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"
)

const (
	// refusalTimeout bounds the wait for Hydra to refuse an expired or
	// revoked token.
	refusalTimeout = 15 * time.Second
	// accessTokenKeySet is Hydra's key set for JWT access tokens.
	accessTokenKeySet = "hydra.jwt.access-token"
)

// defaultScopes are requested and granted when TokenOptions.Scopes is nil.
var defaultScopes = []string{"openid", "email", "offline_access"}

// TokenOptions shapes a token minted by [Hydra.Mint]. The zero value mints a
// JWT access token valid for the instance's lifespan (1 h), with
// sub = email, top-level claims email and email_verified=true,
// aud = [Hydra.Audience] and scope "openid email offline_access".
type TokenOptions struct {
	// Opaque mints a Hydra opaque token (ory_at_...) instead of a JWT.
	Opaque bool
	// Expired mints a 1 s token and returns only once Hydra refuses it
	// (userinfo 401 and introspection active=false; typically 2-3 s). Its exp
	// is then in the past, but a local JWT validator with clock-skew leeway
	// may still accept it for up to that leeway.
	Expired bool
	// Revoked revokes the token at the revocation endpoint and returns once
	// userinfo refuses it. A revoked JWT still verifies locally.
	Revoked bool
	// Lifetime is the access token lifetime in whole seconds. Zero: the
	// instance default. Ignored when Expired.
	Lifetime time.Duration
	// EmailVerified is the email_verified claim. Nil: true.
	EmailVerified *bool
	// OmitEmail leaves out email and email_verified.
	OmitEmail bool
	// Audience is the requested and granted aud. Nil: [Hydra.Audience].
	Audience []string
	// NoAudience requests no audience: the token has no aud claim.
	NoAudience bool
	// Subject is the sub claim. Empty: the email.
	Subject string
	// Scopes are requested and granted. Nil: openid email offline_access.
	Scopes []string
	// Claims are extra session claims, added to the ID token and the access
	// token. Only email, email_verified, preferred_username and name appear
	// at the top level of a JWT access token and in userinfo; others appear
	// under "ext" (access token) or in the ID token.
	Claims map[string]any
}

// Token is what the token endpoint returned.
type Token struct {
	AccessToken  string
	IDToken      string
	RefreshToken string // set when offline_access was granted
	ClientID     string // the client that minted it
	Expiry       time.Time
}

// MintToken mints an access token for email (see TokenOptions) and fails tb
// on error.
func (h *Hydra) MintToken(tb testing.TB, email string, opts TokenOptions) string {
	tb.Helper()
	tok, err := h.Mint(context.Background(), email, opts)
	if err != nil {
		tb.Fatalf("mint token: %v\n%s", err, h.Log.TailBlock(20))
	}
	return tok.AccessToken
}

// Mint runs the authorization-code flow with Go's HTTP client, playing the
// login and consent app through the admin API (accept login with subject,
// accept consent with the session claims, exchange the code).
func (h *Hydra) Mint(ctx context.Context, email string, opts TokenOptions) (Token, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*httpTimeout+refusalTimeout)
	defer cancel()
	key := clientKey{opaque: opts.Opaque, scope: clientScope}
	if opts.Expired {
		key.lifespan = expiringLifespan
	} else if opts.Lifetime > 0 {
		if opts.Lifetime%time.Second != 0 {
			return Token{}, errors.New("mint: Lifetime must be whole seconds")
		}
		if opts.Lifetime != h.lifespan {
			key.lifespan = opts.Lifetime
		}
	}
	audience := opts.Audience
	if audience == nil {
		audience = []string{h.Audience}
	}
	if opts.NoAudience {
		audience = nil
	}
	key.audience = h.Audience
	if extra := strings.Join(audience, " "); extra != h.Audience && extra != "" {
		key.audience = strings.Join(sortedUnique(append([]string{h.Audience}, audience...)), " ")
	}
	scopes := opts.Scopes
	if scopes == nil {
		scopes = defaultScopes
	}
	if extra := missing(strings.Fields(clientScope), scopes); len(extra) > 0 {
		key.scope = strings.Join(sortedUnique(append(strings.Fields(clientScope), extra...)), " ")
	}
	clientID, err := h.clientFor(ctx, key)
	if err != nil {
		return Token{}, err
	}

	jar, _ := cookiejar.New(nil) // never fails without options
	c := *h.http
	c.Jar = jar

	state := randomString(12)
	q := url.Values{
		"client_id":     {clientID},
		"response_type": {"code"},
		"scope":         {strings.Join(scopes, " ")},
		"redirect_uri":  {h.RedirectURL},
		"state":         {state},
	}
	if len(audience) > 0 {
		q.Set("audience", strings.Join(audience, " "))
	}
	loc, err := redirectOf(ctx, &c, h.AuthURL+"?"+q.Encode())
	if err != nil {
		return Token{}, fmt.Errorf("mint: authorize: %w", err)
	}
	challenge := loc.Query().Get("login_challenge")
	if challenge == "" {
		return Token{}, fmt.Errorf("mint: no login_challenge in redirect to %s (error=%q)", loc.Path, loc.Query().Get("error_description"))
	}
	subject := opts.Subject
	if subject == "" {
		subject = email
	}
	acc, err := h.adminJSON(ctx, http.MethodPut, "/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(challenge),
		map[string]any{"subject": subject}, http.StatusOK)
	if err != nil {
		return Token{}, fmt.Errorf("mint: accept login: %w", err)
	}
	if loc, err = redirectOf(ctx, &c, str(acc["redirect_to"])); err != nil {
		return Token{}, fmt.Errorf("mint: after login: %w", err)
	}
	challenge = loc.Query().Get("consent_challenge")
	if challenge == "" {
		return Token{}, fmt.Errorf("mint: no consent_challenge in redirect to %s (error=%q)", loc.Path, loc.Query().Get("error_description"))
	}
	claims := map[string]any{}
	for k, v := range opts.Claims {
		claims[k] = v
	}
	if !opts.OmitEmail {
		verified := true
		if opts.EmailVerified != nil {
			verified = *opts.EmailVerified
		}
		claims["email"] = email
		claims["email_verified"] = verified
	}
	grantAud := audience
	if grantAud == nil {
		grantAud = []string{}
	}
	acc, err = h.adminJSON(ctx, http.MethodPut, "/admin/oauth2/auth/requests/consent/accept?consent_challenge="+url.QueryEscape(challenge),
		map[string]any{
			"grant_scope":                 scopes,
			"grant_access_token_audience": grantAud,
			"session":                     map[string]any{"id_token": claims, "access_token": claims},
		}, http.StatusOK)
	if err != nil {
		return Token{}, fmt.Errorf("mint: accept consent: %w", err)
	}
	if loc, err = redirectOf(ctx, &c, str(acc["redirect_to"])); err != nil {
		return Token{}, fmt.Errorf("mint: after consent: %w", err)
	}
	code := loc.Query().Get("code")
	if code == "" || loc.Query().Get("state") != state {
		return Token{}, fmt.Errorf("mint: no code/state in callback (error=%q)", loc.Query().Get("error_description"))
	}

	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {h.RedirectURL}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Token{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(h.ClientSecret))
	issued := time.Now()
	resp, err := h.doJSON(req, http.StatusOK)
	if err != nil {
		return Token{}, fmt.Errorf("mint: token endpoint: %w", err)
	}
	tok := Token{
		AccessToken:  str(resp["access_token"]),
		IDToken:      str(resp["id_token"]),
		RefreshToken: str(resp["refresh_token"]),
		ClientID:     clientID,
	}
	if tok.AccessToken == "" {
		return Token{}, errors.New("mint: token endpoint returned no access_token")
	}
	if exp, ok := resp["expires_in"].(float64); ok {
		tok.Expiry = issued.Add(time.Duration(exp) * time.Second)
	}

	if opts.Revoked {
		if err := h.revoke(ctx, clientID, tok.AccessToken); err != nil {
			return Token{}, fmt.Errorf("mint: %w", err)
		}
	}
	if opts.Expired || opts.Revoked {
		if err := h.waitRefused(ctx, tok.AccessToken); err != nil {
			return Token{}, fmt.Errorf("mint: %w", err)
		}
	}
	return tok, nil
}

// waitRefused polls until userinfo answers 401 and introspection says inactive.
func (h *Hydra) waitRefused(ctx context.Context, token string) error {
	ctx, cancel := context.WithTimeout(ctx, refusalTimeout)
	defer cancel()
	for {
		status, _, err := h.Userinfo(ctx, token)
		if err == nil && status == http.StatusUnauthorized {
			intro, err := h.Introspect(ctx, token)
			if err == nil && intro["active"] == false {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hydra still accepts the token (userinfo status %d): %w", status, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Userinfo calls the userinfo endpoint with token as Bearer and returns the
// status and body.
func (h *Hydra) Userinfo(ctx context.Context, token string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.UserinfoURL, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := h.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("userinfo: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
	return resp.StatusCode, b, err
}

// Introspect asks the admin introspection endpoint about token.
func (h *Hydra) Introspect(ctx context.Context, token string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.IntrospectionURL, strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	out, err := h.doJSON(req, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("introspect: %w", err)
	}
	return out, nil
}

// RevokeToken revokes an access token minted by this instance and waits
// until userinfo refuses it. Revoking an inactive token is a no-op.
func (h *Hydra) RevokeToken(ctx context.Context, token string) error {
	ctx, cancel := context.WithTimeout(ctx, httpTimeout+refusalTimeout)
	defer cancel()
	intro, err := h.Introspect(ctx, token)
	if err != nil {
		return err
	}
	clientID := str(intro["client_id"])
	if intro["active"] != true || clientID == "" {
		return nil
	}
	if err := h.revoke(ctx, clientID, token); err != nil {
		return err
	}
	return h.waitRefused(ctx, token)
}

// Revoke is RevokeToken for tests: it fails tb on error.
func (h *Hydra) Revoke(tb testing.TB, token string) {
	tb.Helper()
	if err := h.RevokeToken(context.Background(), token); err != nil {
		tb.Fatalf("revoke token: %v\n%s", err, h.Log.TailBlock(20))
	}
}

func (h *Hydra) revoke(ctx context.Context, clientID, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.RevocationURL, strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(h.ClientSecret))
	if _, err := h.doJSON(req, http.StatusOK); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

// NewSigningKey adds an RS256 key to Hydra's JWT access token key set
// (POST /admin/keys/hydra.jwt.access-token) and returns its kid. Hydra signs
// access tokens minted afterwards with the new key. Older keys stay in the
// JWKS, so older JWTs still verify locally, but Hydra itself then refuses
// them (userinfo 400 token_signature_mismatch, introspection active=false):
// rotate keys only on a Hydra of your own, not a shared one.
func (h *Hydra) NewSigningKey(ctx context.Context) (string, error) {
	kid := "testenv-" + randomString(8)
	set, err := h.adminJSON(ctx, http.MethodPost, "/admin/keys/"+accessTokenKeySet,
		map[string]any{"alg": "RS256", "use": "sig", "kid": kid}, http.StatusCreated)
	if err != nil {
		return "", fmt.Errorf("create signing key: %w", err)
	}
	keys, _ := set["keys"].([]any)
	for _, k := range keys {
		if m, ok := k.(map[string]any); ok && str(m["kid"]) != "" {
			return str(m["kid"]), nil
		}
	}
	return "", errors.New("create signing key: reply has no kid")
}

// RotateSigningKey is NewSigningKey for tests: it fails tb on error.
func (h *Hydra) RotateSigningKey(tb testing.TB) string {
	tb.Helper()
	kid, err := h.NewSigningKey(context.Background())
	if err != nil {
		tb.Fatalf("%v\n%s", err, h.Log.TailBlock(20))
	}
	return kid
}

// SigningKeyIDs returns the kids published at JWKSURL.
func (h *Hydra) SigningKeyIDs(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: status %d", resp.StatusCode)
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxHTTPBody)).Decode(&set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	kids := make([]string, 0, len(set.Keys))
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids, nil
}

// redirectOf GETs u and returns the Location of the 302/303 reply.
func redirectOf(ctx context.Context, c *http.Client, u string) (*url.URL, error) {
	if u == "" {
		return nil, errors.New("empty redirect target")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("status %d, want a redirect: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	loc, err := resp.Location()
	if err != nil {
		return nil, err
	}
	return loc, nil
}

// str returns v if it is a string, else "".
func str(v any) string {
	s, _ := v.(string)
	return s
}

// missing returns the elements of want not in have.
func missing(have, want []string) []string {
	set := map[string]bool{}
	for _, s := range have {
		set[s] = true
	}
	var out []string
	for _, s := range want {
		if !set[s] {
			out = append(out, s)
		}
	}
	return out
}

// sortedUnique sorts and deduplicates ss.
func sortedUnique(ss []string) []string {
	sort.Strings(ss)
	out := ss[:0]
	for i, s := range ss {
		if i == 0 || s != ss[i-1] {
			out = append(out, s)
		}
	}
	return out
}
