package testenv_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

// TestLoginAppPublicClient plays a browser through the authorization-code
// flow of a public client with PKCE: the login app accepts the login and the
// consent (counted), the code is exchanged without a secret, the token
// carries the client id and the email claims but no audience, the refresh
// token works without the app, and Hydra refuses the client without PKCE.
func TestLoginAppPublicClient(t *testing.T) {
	idp := testenv.StartHydra(t, testenv.HydraOptions{})
	app := idp.StartLoginApp(t, testenv.LoginAppOptions{Email: alice})
	if _, err := idp.NewLoginApp(testenv.LoginAppOptions{Email: bob}); err == nil {
		t.Fatal("a second login app started for the same Hydra")
	}
	const redirect = "https://localhost"
	id := idp.PublicClient(t, testenv.PublicClientOptions{RedirectURIs: []string{redirect}})

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 15 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			return http.ErrUseLastResponse // what Thunderbird's window catches
		}
		return nil
	}}
	// authorize returns the query of the redirect to the client.
	authorize := func(pkce bool) (url.Values, string) {
		t.Helper()
		verifier := strings.Repeat("v", 50)
		sum := sha256.Sum256([]byte(verifier))
		q := url.Values{"client_id": {id}, "response_type": {"code"}, "scope": {"openid email offline_access"},
			"redirect_uri": {redirect}, "state": {"state-0123456789"}}
		if pkce {
			q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
			q.Set("code_challenge_method", "S256")
		}
		resp, err := browser.Get(idp.AuthURL + "?" + q.Encode())
		if err != nil {
			t.Fatalf("authorize: %v\n%s", err, app.Summary())
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil || !strings.HasPrefix(loc.String(), redirect) {
			t.Fatalf("authorize ended with status %d at %v, not at the client\n%s", resp.StatusCode, loc, app.Summary())
		}
		return loc.Query(), verifier
	}
	token := func(form url.Values) map[string]any {
		t.Helper()
		resp, err := http.PostForm(idp.TokenURL, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("token endpoint: status %d, %v, %v", resp.StatusCode, out, err)
		}
		return out
	}

	got, verifier := authorize(true)
	if got.Get("code") == "" || got.Get("state") != "state-0123456789" {
		t.Fatalf("redirect to the client: %v", got)
	}
	if app.Logins() != 1 || app.Consents() != 1 {
		t.Fatalf("login app: %s; want 1 login and 1 consent", app.Summary())
	}
	tok := token(url.Values{"grant_type": {"authorization_code"}, "code": {got.Get("code")}, "redirect_uri": {redirect},
		"client_id": {id}, "code_verifier": {verifier}})
	claims := jwtClaims(t, tok["access_token"].(string))
	if claims["client_id"] != id || claims["email"] != alice || claims["email_verified"] != true || claims["sub"] != alice {
		t.Fatalf("access token claims %v", claims)
	}
	if aud, _ := claims["aud"].([]any); len(aud) != 0 {
		t.Fatalf("access token aud %v; want none (the client asked for none)", aud)
	}
	refresh, _ := tok["refresh_token"].(string)
	if refresh == "" {
		t.Fatalf("no refresh token: %v", tok)
	}
	tok = token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {id}})
	if jwtClaims(t, tok["access_token"].(string))["email"] != alice || app.Logins() != 1 {
		t.Fatalf("refresh: %v; login app %s", tok, app.Summary())
	}

	// The session is remembered: the app is asked again, with skip.
	authorize(true)
	if app.Logins() != 2 || !strings.Contains(app.Summary(), "skip=true") {
		t.Fatalf("login app after a second authorization: %s", app.Summary())
	}
	// A public client must use PKCE.
	if got, _ := authorize(false); got.Get("error") == "" || got.Get("code") != "" {
		t.Fatalf("authorization without PKCE: %v; want an error", got)
	}
}

// jwtClaims decodes a JWT's payload without checking it.
func jwtClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20s...", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCA: the leaf verifies against the CA for each of its names, and is no
// CA itself (Thunderbird refuses a CA certificate as a server's).
func TestCA(t *testing.T) {
	ca, err := testenv.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.WriteLeaf(t.TempDir(), "127.0.0.1", "mail.example.test")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(pair.Certificate) != 2 {
		t.Fatalf("chain of %d certificates; want the leaf and the CA", len(pair.Certificate))
	}
	block, _ := pem.Decode(ca.CertPEM)
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !root.IsCA {
		t.Fatalf("CA certificate: %v, IsCA %v", err, root != nil && root.IsCA)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.IsCA {
		t.Fatal("the leaf is a CA")
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	for _, name := range []string{"127.0.0.1", "mail.example.test"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example.test"}); err == nil {
		t.Error("the leaf verifies for a name it does not have")
	}
}

func TestXPI(t *testing.T) {
	xpi, err := testenv.XPI(map[string][]byte{
		"manifest.json": []byte(`{"manifest_version": 2, "browser_specific_settings": {"gecko": {"id": "a@example.test"}}}`),
		"dir/b.js":      []byte("// b"),
	})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := testenv.XPI(map[string][]byte{
		"dir/b.js":      []byte("// b"),
		"manifest.json": []byte(`{"manifest_version": 2, "browser_specific_settings": {"gecko": {"id": "a@example.test"}}}`),
	})
	if string(xpi) != string(again) {
		t.Error("the same files make different .xpi files")
	}
	m, err := testenv.AddonManifest(xpi)
	if err != nil || testenv.AddonID(m) != "a@example.test" {
		t.Fatalf("manifest %v, %v", m, err)
	}
	if id := testenv.AddonID(map[string]any{"applications": map[string]any{"gecko": map[string]any{"id": "old@example.test"}}}); id != "old@example.test" {
		t.Errorf("AddonID of an applications key = %q", id)
	}
	if _, err := testenv.AddonManifest([]byte("not a zip")); err == nil {
		t.Error("a non-zip has a manifest")
	}
}

// TestThunderbirdStartQuit starts Thunderbird on a fresh profile with an
// add-on that closes its windows: it quits by itself, cleanly (the profile
// saved), and the profile trusts the CA given.
func TestThunderbirdStartQuit(t *testing.T) {
	ca, err := testenv.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	quitter, err := testenv.XPI(map[string][]byte{
		"manifest.json": []byte(`{"manifest_version": 2, "name": "quitter", "version": "1.0",
			"browser_specific_settings": {"gecko": {"id": "quitter@mailgate.test"}},
			"background": {"scripts": ["background.js"]}}`),
		// Closes every window once the main window is there.
		"background.js": []byte(`"use strict";
async function quit() {
  const ws = await browser.windows.getAll();
  if (!ws.some(w => w.type === "normal")) {
    setTimeout(quit, 100);
    return;
  }
  for (const w of ws) {
    await browser.windows.remove(w.id);
  }
}
quit();
`),
	})
	if err != nil {
		t.Fatal(err)
	}
	tb := testenv.NewThunderbird(t, testenv.ThunderbirdOptions{
		CACertPEM: ca.CertPEM,
		Addons:    []testenv.Addon{{ID: "quitter@mailgate.test", XPI: quitter}},
	})
	out, err := exec.Command("certutil", "-L", "-d", "sql:"+tb.ProfileDir, "-n", "mailgate test CA").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Valid CA") {
		t.Fatalf("certutil -L: %v\n%s", err, out)
	}
	for range 2 { // a second start on the same profile
		tb.Start(t)
		tb.WaitQuit(t, time.Minute)
	}
}
