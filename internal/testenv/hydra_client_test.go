package testenv_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

// TestConfidentialClientConsentRevoked plays a web app with a confidential
// client: the authorization-code flow with PKCE through the login app, the
// code exchanged with the secret (and refused without it), one refresh;
// then the user withdraws consent at Hydra (RevokeConsent for the client)
// and the next refresh fails with invalid_grant, the access token is no
// longer active, and a new authorization asks for consent again.
// RevokeConsent for all clients does the same.
func TestConfidentialClientConsentRevoked(t *testing.T) {
	idp := testenv.StartHydra(t, testenv.HydraOptions{})
	app := idp.StartLoginApp(t, testenv.LoginAppOptions{Email: alice})
	// Nothing listens there: the flow stops at the redirect to it.
	const redirect = "http://127.0.0.1:9/cb"
	id, secret := idp.ConfidentialClient(t, testenv.ConfidentialClientOptions{RedirectURIs: []string{redirect}})
	if len(secret) < 32 {
		t.Fatalf("secret %q: want at least 32 characters", secret)
	}

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 15 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	// authorize runs the flow in the browser and returns the code and the
	// PKCE verifier.
	authorize := func() (code, verifier string) {
		t.Helper()
		verifier = rand.Text() + rand.Text()
		sum := sha256.Sum256([]byte(verifier))
		state := rand.Text()
		q := url.Values{"client_id": {id}, "response_type": {"code"}, "scope": {"openid email offline_access"},
			"redirect_uri": {redirect}, "state": {state},
			"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
		resp, err := browser.Get(idp.AuthURL + "?" + q.Encode())
		if err != nil {
			t.Fatalf("authorize: %v\n%s", err, app.Summary())
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil || !strings.HasPrefix(loc.String(), redirect) {
			t.Fatalf("authorize ended with status %d at %v, not at the client\n%s", resp.StatusCode, loc, app.Summary())
		}
		if got := loc.Query(); got.Get("code") == "" || got.Get("state") != state {
			t.Fatalf("redirect to the client: %v", got)
		}
		return loc.Query().Get("code"), verifier
	}
	// token posts form to the token endpoint, with the client's credentials
	// unless !auth, and returns the status and the JSON answer.
	token := func(form url.Values, auth bool) (int, map[string]any) {
		t.Helper()
		if !auth {
			form = maps.Clone(form)
			form.Set("client_id", id) // as a public client would
		}
		req, _ := http.NewRequest(http.MethodPost, idp.TokenURL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if auth {
			req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("token endpoint: status %d, %v", resp.StatusCode, err)
		}
		return resp.StatusCode, out
	}
	ok := func(status int, out map[string]any) map[string]any {
		t.Helper()
		if status != http.StatusOK {
			t.Fatalf("token endpoint: status %d, %v\n%s", status, out, idp.Log.TailBlock(20))
		}
		return out
	}
	refresh := func(rt string) (int, map[string]any) {
		t.Helper()
		return token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, true)
	}
	active := func(accessToken string) bool {
		t.Helper()
		resp, err := http.PostForm(idp.IntrospectionURL, url.Values{"token": {accessToken}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Active bool }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out.Active
	}
	// tokens authorizes and exchanges the code.
	tokens := func() (access, refreshToken string) {
		t.Helper()
		code, verifier := authorize()
		exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
		if status, out := token(exchange, false); status != http.StatusUnauthorized || out["error"] != "invalid_client" {
			t.Fatalf("code exchange without the secret: status %d, %v; want 401 invalid_client", status, out)
		}
		tok := ok(token(exchange, true))
		access, _ = tok["access_token"].(string)
		refreshToken, _ = tok["refresh_token"].(string)
		if access == "" || refreshToken == "" || tok["id_token"] == nil {
			t.Fatalf("code exchange: %v; want access, refresh and ID tokens", tok)
		}
		return access, refreshToken
	}
	// revoked checks what Hydra says to a refresh and about the access
	// token after a consent revocation.
	revoked := func(access, rt string) {
		t.Helper()
		status, out := refresh(rt)
		if status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Fatalf("refresh after the consent was revoked: status %d, %v; want 400 invalid_grant", status, out)
		}
		if active(access) {
			t.Fatal("the access token is still active after the consent was revoked")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	access, rt := tokens()
	claims := jwtClaims(t, access)
	if claims["client_id"] != id || claims["sub"] != alice || claims["email"] != alice {
		t.Fatalf("access token claims %v", claims)
	}
	tok := ok(refresh(rt))
	access, rt = tok["access_token"].(string), tok["refresh_token"].(string)
	if !active(access) || rt == "" {
		t.Fatalf("refresh: %v, active %v", tok, active(access))
	}
	if app.Logins() != 1 || app.Consents() != 1 {
		t.Fatalf("login app: %s; want 1 login and 1 consent", app.Summary())
	}

	if err := idp.RevokeConsent(ctx, alice, id); err != nil {
		t.Fatal(err)
	}
	revoked(access, rt)

	// Consent is asked again (no skip), the login is remembered.
	access, rt = tokens()
	if app.Logins() != 2 || app.Consents() != 2 || !strings.Contains(app.Summary(), "login client="+id+" skip=true") ||
		strings.Contains(app.Summary(), "consent client="+id+" skip=true") {
		t.Fatalf("login app after the revocation: %s; want a remembered login and a new consent", app.Summary())
	}
	if err := idp.RevokeConsent(ctx, alice, ""); err != nil {
		t.Fatal(err)
	}
	revoked(access, rt)
	// Nothing left to revoke is fine too.
	if err := idp.RevokeConsent(ctx, alice, ""); err != nil {
		t.Fatal(err)
	}
}
