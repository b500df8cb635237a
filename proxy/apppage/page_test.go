package apppage

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/apppass"
)

const testIssuer = "https://idp.invalid"

// stubProvider plays the provider for unit tests: the authorization
// request is answered by the test, which calls the callback itself with
// a code; codes are "code-<user>".
type stubProvider struct {
	mu         sync.Mutex
	challenges map[string]string // state -> S256 challenge
	noRefresh  bool
	refresh    func(rt string) (Tokens, error)
}

func (p *stubProvider) Issuer() string { return testIssuer }

func (p *stubProvider) AuthCodeURL(_ context.Context, state, verifier string) (string, error) {
	sum := sha256.Sum256([]byte(verifier))
	ch := base64.RawURLEncoding.EncodeToString(sum[:])
	p.mu.Lock()
	p.challenges[state] = ch
	p.mu.Unlock()
	return testIssuer + "/authorize?" + url.Values{"state": {state}, "code_challenge": {ch}, "code_challenge_method": {"S256"}}.Encode(), nil
}

// Exchange accepts code-<user> when the verifier matches one challenge
// handed out (as a provider checks PKCE).
func (p *stubProvider) Exchange(_ context.Context, code, verifier string) (Tokens, error) {
	sum := sha256.Sum256([]byte(verifier))
	ch := base64.RawURLEncoding.EncodeToString(sum[:])
	p.mu.Lock()
	defer p.mu.Unlock()
	for st, c := range p.challenges {
		if c == ch {
			delete(p.challenges, st)
			user := strings.TrimPrefix(code, "code-")
			t := Tokens{Access: "at-" + user, Refresh: "rt-" + user}
			if p.noRefresh {
				t.Refresh = ""
			}
			return t, nil
		}
	}
	return Tokens{}, fmt.Errorf("%w: PKCE verifier does not match", ErrRefused)
}

func (p *stubProvider) Refresh(_ context.Context, rt string) (Tokens, error) { return p.refresh(rt) }

// stubAuthenticator vouches for at-<mailbox> tokens of example.org, and,
// like auth.TokenAuthenticator, refuses one for another mailbox than the
// claimed user; at-down is a provider that cannot be reached.
var stubAuthenticator = auth.AuthenticatorFunc(func(_ context.Context, c auth.Credentials) (auth.Identity, error) {
	user, ok := strings.CutPrefix(c.Token, "at-")
	switch {
	case user == "down":
		return auth.Identity{}, fmt.Errorf("%w: provider down", auth.ErrUnavailable)
	case !ok || !strings.HasSuffix(user, "@example.org"):
		return auth.Identity{}, fmt.Errorf("%w: unknown token", auth.ErrInvalidCredentials)
	case c.User != "" && c.User != user:
		return auth.Identity{}, fmt.Errorf("%w: token for another user", auth.ErrInvalidCredentials)
	}
	return auth.Identity{User: user}, nil
})

type rig struct {
	t *testing.T
	// now, if set, is the store's clock (nil: the real one).
	now    func() time.Time
	store  *apppass.Store
	prov   *stubProvider
	srv    *httptest.Server
	h      *Handler
	client *http.Client
}

func newRig(t *testing.T) *rig {
	t.Helper()
	key, err := apppass.ParseKeyFile([]byte(strings.Repeat("7f", 32)))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := apppass.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, prov: &stubProvider{challenges: map[string]string{}}}
	clock := func() time.Time {
		if r.now != nil {
			return r.now()
		}
		return time.Now()
	}
	st, err := apppass.Open(context.Background(), "sqlite::memory:", apppass.Options{Keys: kr, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.store = st
	var h http.Handler = http.NotFoundHandler()
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { h.ServeHTTP(w, req) }))
	t.Cleanup(r.srv.Close)
	r.h, err = New(Options{Store: st, Provider: r.prov, Authenticator: stubAuthenticator, URL: r.srv.URL + "/app-passwords",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h = r.h
	r.client = r.browser()
	return r
}

// browser is a client with its own cookie jar that does not follow
// redirects, like a browser whose every step the test checks.
func (r *rig) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := r.srv.Client()
	return &http.Client{Transport: c.Transport, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (r *rig) url(p string) string { return r.srv.URL + "/app-passwords/" + p }

func (r *rig) get(c *http.Client, p string, hdr ...string) (*http.Response, string) {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.url(p), nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return r.do(c, req)
}

func (r *rig) post(c *http.Client, p string, form url.Values, hdr ...string) (*http.Response, string) {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.url(p), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", r.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return r.do(c, req)
}

func (r *rig) do(c *http.Client, req *http.Request) (*http.Response, string) {
	r.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// signIn runs the flow for user in c and returns the provider's
// authorization URL it was sent to.
func (r *rig) signIn(c *http.Client, user string) *url.URL {
	r.t.Helper()
	resp, _ := r.get(c, "signin")
	if resp.StatusCode != http.StatusSeeOther {
		r.t.Fatalf("signin: %s", resp.Status)
	}
	to, _ := url.Parse(resp.Header.Get("Location"))
	resp, body := r.get(c, "callback?"+url.Values{"state": {to.Query().Get("state")}, "code": {"code-" + user}, "iss": {testIssuer}}.Encode())
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app-passwords/" {
		r.t.Fatalf("callback: %s to %q\n%s", resp.Status, resp.Header.Get("Location"), body)
	}
	return to
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token from the signed-in page.
func (r *rig) csrf(c *http.Client) string {
	r.t.Helper()
	_, body := r.get(c, "")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		r.t.Fatalf("no CSRF token on the page:\n%s", body)
	}
	return m[1]
}

func cookieOf(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestSignInCreateRevoke(t *testing.T) {
	r := newRig(t)
	resp, body := r.get(r.client, "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `href="/app-passwords/signin"`) {
		t.Fatalf("signed-out page: %s\n%s", resp.Status, body)
	}
	to := r.signIn(r.client, "alice@example.org")
	if q := to.Query(); q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		t.Errorf("authorization request without PKCE S256: %s", to)
	}
	if _, err := r.store.RefreshToken(context.Background(), "alice@example.org"); err != nil {
		t.Errorf("refresh token not kept: %v", err)
	}
	csrf := r.csrf(r.client)
	resp, body = r.post(r.client, "create", url.Values{"csrf": {csrf}, "name": {"<b>phone</b>"}, "protocol": {"imap", "smtp"}, "expiry": {"30"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create: %s\n%s", resp.Status, body)
	}
	pw := regexp.MustCompile(`id="password"[^>]*value="(mgp_[a-z0-9_]+)"`).FindStringSubmatch(body)
	if pw == nil {
		t.Fatalf("no password on the created page:\n%s", body)
	}
	if strings.Contains(body, "<b>phone</b>") || !strings.Contains(body, "&lt;b&gt;phone&lt;/b&gt;") {
		t.Errorf("the name is not escaped:\n%s", body)
	}
	rec, err := r.store.Verify(context.Background(), "alice@example.org", pw[1], apppass.IMAP, "192.0.2.1")
	if err != nil || rec.Name != "<b>phone</b>" || !rec.Allows(apppass.SMTP) || rec.Allows(apppass.POP3) {
		t.Fatalf("Verify = %+v, %v", rec, err)
	}
	if rec.Expires.IsZero() || rec.Expires.Sub(rec.Created) != 30*24*time.Hour {
		t.Errorf("expiry %v after %v, want 30 days", rec.Expires, rec.Created)
	}
	_, body = r.get(r.client, "")
	if !strings.Contains(body, `data-id="`+rec.ID+`"`) || strings.Contains(body, pw[1]) || !strings.Contains(body, "from 192.0.2.1") {
		t.Errorf("list lacks the record or its last use, or shows the password:\n%s", body)
	}
	resp, _ = r.post(r.client, "revoke", url.Values{"csrf": {csrf}, "id": {rec.ID}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %s", resp.Status)
	}
	if _, err := r.store.Verify(context.Background(), "alice@example.org", pw[1], apppass.IMAP, ""); !errors.Is(err, apppass.ErrInvalid) {
		t.Errorf("after revoke: Verify err = %v, want ErrInvalid", err)
	}
	resp, body = r.post(r.client, "revoke", url.Values{"csrf": {csrf}, "id": {rec.ID}})
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "no such app password") {
		t.Errorf("revoking again: %s\n%s", resp.Status, body)
	}
}

func TestRevokeAllAndOtherUsers(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.signIn(r.client, "alice@example.org")
	_, a1, _ := r.store.Create(ctx, "alice@example.org", "one", nil, 0)
	_, a2, _ := r.store.Create(ctx, "alice@example.org", "two", nil, 0)
	_, b1, _ := r.store.Create(ctx, "bob@example.org", "bob's", nil, 0)
	csrf := r.csrf(r.client)
	if resp, _ := r.post(r.client, "revoke", url.Values{"csrf": {csrf}, "id": {b1.ID}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("revoking another user's password: %s, want 404", resp.Status)
	}
	resp, _ := r.post(r.client, "revoke-all", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke-all: %s", resp.Status)
	}
	left, _ := r.store.List(ctx, "alice@example.org")
	bobs, _ := r.store.List(ctx, "bob@example.org")
	if len(left) != 0 || len(bobs) != 1 {
		t.Errorf("after revoke-all: alice %d (had %s, %s), bob %d", len(left), a1.ID, a2.ID, len(bobs))
	}
	_, body := r.get(r.client, resp.Header.Get("Location")[len("/app-passwords/"):])
	if !strings.Contains(body, "2 app passwords were revoked") {
		t.Errorf("no notice after revoke-all:\n%s", body)
	}
}

func TestCSRF(t *testing.T) {
	r := newRig(t)
	r.signIn(r.client, "alice@example.org")
	csrf := r.csrf(r.client)
	create := func(form url.Values, hdr ...string) int {
		resp, _ := r.post(r.client, "create", form, hdr...)
		return resp.StatusCode
	}
	good := url.Values{"csrf": {csrf}, "name": {"x"}, "protocol": {"imap"}}
	for _, tt := range []struct {
		name string
		form url.Values
		hdr  []string
	}{
		{"no token", url.Values{"name": {"x"}, "protocol": {"imap"}}, nil},
		{"wrong token", url.Values{"csrf": {csrf + "x"}, "name": {"x"}, "protocol": {"imap"}}, nil},
		{"cross-site fetch", good, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}},
		{"other origin", good, []string{"Sec-Fetch-Site", "", "Origin", "https://evil.example"}},
	} {
		if got := create(tt.form, tt.hdr...); got != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tt.name, got)
		}
	}
	if recs, _ := r.store.List(context.Background(), "alice@example.org"); len(recs) != 0 {
		t.Fatalf("a forged POST made %d app passwords", len(recs))
	}
	// Another user's token does not work in alice's session.
	bob := r.browser()
	r.signIn(bob, "bob@example.org")
	if got := create(url.Values{"csrf": {r.csrf(bob)}, "name": {"x"}, "protocol": {"imap"}}); got != http.StatusForbidden {
		t.Errorf("bob's token in alice's session: %d, want 403", got)
	}
	if got := create(good); got != http.StatusOK {
		t.Errorf("the real form: %d, want 200", got)
	}
}

func TestSessionFixationAndSignOut(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	// The attacker signs in and plants the session id in the victim's browser.
	attacker := r.browser()
	r.signIn(attacker, "mallory@example.org")
	u, _ := url.Parse(r.srv.URL)
	planted := attacker.Jar.Cookies(u)[0]
	if planted.Name != "__Host-mailgate-session" {
		t.Fatalf("session cookie %q", planted.Name)
	}
	r.client.Jar.SetCookies(u, []*http.Cookie{planted})
	r.signIn(r.client, "alice@example.org")
	var now string
	for _, c := range r.client.Jar.Cookies(u) {
		if c.Name == planted.Name {
			now = c.Value
		}
	}
	if now == "" || now == planted.Value {
		t.Fatalf("the session id did not change at sign-in")
	}
	if _, err := r.store.Session(ctx, planted.Value); !errors.Is(err, apppass.ErrNoSession) {
		t.Errorf("the planted session survived the sign-in: %v", err)
	}
	if _, body := r.get(r.client, ""); !strings.Contains(body, `id="user">alice@example.org<`) {
		t.Errorf("not signed in as alice:\n%s", body)
	}
	csrf := r.csrf(r.client)
	resp, _ := r.post(r.client, "signout", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther || cookieOf(resp, planted.Name) == nil || cookieOf(resp, planted.Name).MaxAge >= 0 {
		t.Fatalf("sign-out: %s, cookies %v", resp.Status, resp.Cookies())
	}
	if _, err := r.store.Session(ctx, now); !errors.Is(err, apppass.ErrNoSession) {
		t.Errorf("the session survived sign-out: %v", err)
	}
	// Replaying the old cookie after sign-out fails.
	replay := r.browser()
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: planted.Name, Value: now}})
	if resp, _ := r.post(replay, "create", url.Values{"csrf": {csrf}, "name": {"x"}, "protocol": {"imap"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST with a signed-out session: %s, want 401", resp.Status)
	}
}

func TestCallbackRefusals(t *testing.T) {
	r := newRig(t)
	start := func(c *http.Client) string {
		resp, _ := r.get(c, "signin")
		to, _ := url.Parse(resp.Header.Get("Location"))
		return to.Query().Get("state")
	}
	cb := func(c *http.Client, q url.Values) (int, string) {
		resp, body := r.get(c, "callback?"+q.Encode())
		return resp.StatusCode, body
	}
	state := start(r.client)
	// Another browser cannot complete it (login CSRF).
	if code, _ := cb(r.browser(), url.Values{"state": {state}, "code": {"code-mallory@example.org"}}); code != http.StatusBadRequest {
		t.Errorf("callback from another browser: %d, want 400", code)
	}
	if code, _ := cb(r.client, url.Values{"state": {state}, "code": {"code-alice@example.org"}, "iss": {"https://other.invalid"}}); code != http.StatusBadRequest {
		t.Errorf("iss of another issuer: %d, want 400", code)
	}
	state = start(r.client)
	if code, body := cb(r.client, url.Values{"state": {state}, "error": {"access_denied"}, "error_description": {"<script>x</script>"}}); code != http.StatusForbidden || strings.Contains(body, "<script>x") {
		t.Errorf("provider error: %d\n%s", code, body)
	}
	state = start(r.client)
	if code, body := cb(r.client, url.Values{"state": {state}, "code": {"code-eve@elsewhere.example"}}); code != http.StatusForbidden || !strings.Contains(body, "does not name a mailbox") {
		t.Errorf("a token for another domain: %d\n%s", code, body)
	}
	// A state works once, even in the browser that started it.
	state = start(r.client)
	jar := r.client.Jar
	u, _ := url.Parse(r.srv.URL)
	cookies := jar.Cookies(u)
	if code, _ := cb(r.client, url.Values{"state": {state}, "code": {"code-alice@example.org"}}); code != http.StatusSeeOther {
		t.Fatalf("first callback: %d", code)
	}
	jar.SetCookies(u, cookies)
	if code, _ := cb(r.client, url.Values{"state": {state}, "code": {"code-alice@example.org"}}); code != http.StatusBadRequest {
		t.Errorf("replayed state: %d, want 400", code)
	}
	r.prov.noRefresh = true
	state = start(r.client)
	if code, _ := cb(r.client, url.Values{"state": {state}, "code": {"code-bob@example.org"}}); code != http.StatusInternalServerError {
		t.Errorf("no refresh token: %d, want 500", code)
	}
}

func TestHeadersAndCookies(t *testing.T) {
	r := newRig(t)
	resp, _ := r.get(r.client, "signin")
	c := cookieOf(resp, "__Host-mailgate-signin")
	if c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("sign-in cookie %+v", c)
	}
	for _, p := range []string{"", "signin", "callback", "style.css", "nothing"} {
		resp, _ := r.get(r.client, p)
		h := resp.Header
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", p, h)
		}
	}
	r.signIn(r.client, "alice@example.org")
	u, _ := url.Parse(r.srv.URL)
	if cs := r.client.Jar.Cookies(u); len(cs) != 1 || cs[0].Name != "__Host-mailgate-session" {
		t.Errorf("cookies after sign-in: %v (the sign-in cookie should be gone)", cs)
	}
	// A short, valid form padded past the cap: refused as a whole (the
	// token is never read), not for its name.
	resp, body := r.post(r.client, "create", url.Values{"csrf": {r.csrf(r.client)}, "name": {"x"}, "protocol": {"imap"},
		"padding": {strings.Repeat("x", maxFormBytes)}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("oversized form: %s, want 403\n%.200s", resp.Status, body)
	}
}

func TestPageWithoutJavaScriptNeedsNoScript(t *testing.T) {
	r := newRig(t)
	r.signIn(r.client, "alice@example.org")
	_, body := r.get(r.client, "")
	// Every action is a plain form or link; the only script is copy.js.
	if strings.Count(body, "<script") != 1 || !strings.Contains(body, `<script src="/app-passwords/copy.js" defer></script>`) {
		t.Errorf("unexpected scripts:\n%s", body)
	}
	for _, action := range []string{"create", "signout"} { // revoke-all is shown only with passwords
		if !strings.Contains(body, `<form method="post" action="/app-passwords/`+action+`"`) {
			t.Errorf("no form for %s", action)
		}
	}
	for _, label := range []string{`<label for="name">`, `<label for="expiry">`, "<legend>"} {
		if !strings.Contains(body, label) {
			t.Errorf("form control without %s", label)
		}
	}
}

func TestSuspendedUserIsAskedToSignInAgain(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.signIn(r.client, "alice@example.org")
	if _, body := r.get(r.client, ""); strings.Contains(body, `id="suspended"`) {
		t.Fatalf("a linked user is shown as suspended:\n%s", body)
	}
	if err := r.store.Suspend(ctx, "alice@example.org", "invalid_grant"); err != nil {
		t.Fatal(err)
	}
	_, body := r.get(r.client, "")
	if !strings.Contains(body, `id="suspended"`) || !strings.Contains(body, `id="signin"`) {
		t.Fatalf("no suspension notice with a sign-in link:\n%s", body)
	}
	r.signIn(r.client, "alice@example.org")
	if l, err := r.store.LinkStatus(ctx, "alice@example.org"); err != nil || !l.Suspended.IsZero() {
		t.Errorf("after signing in again: %+v, %v", l, err)
	}
}

func TestLinksAndAddon(t *testing.T) {
	r := newRig(t)
	r.get(r.client, "") // nothing linked: no section
	r.signIn(r.client, "alice@example.org")
	if _, body := r.get(r.client, ""); strings.Contains(body, `id="setup"`) {
		t.Errorf("a setup section with nothing to link:\n%s", body)
	}
	if resp, _ := r.get(r.client, "thunderbird.xpi"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("thunderbird.xpi without an add-on: %s", resp.Status)
	}
	r.h.opts.Links = func(user string) []Link {
		return []Link{{Label: "Automatic setup", URL: "https://autoconfig.example.org/mail/config-v1.1.xml?emailaddress=" + url.QueryEscape(user)}}
	}
	r.h.opts.Addon = func() []byte { return []byte("PK\x03\x04xpi") }
	_, body := r.get(r.client, "")
	for _, want := range []string{`href="https://autoconfig.example.org/mail/config-v1.1.xml?emailaddress=alice%40example.org"`, `href="/app-passwords/thunderbird.xpi"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s:\n%s", want, body)
		}
	}
	resp, xpi := r.get(r.client, "thunderbird.xpi")
	if resp.StatusCode != http.StatusOK || xpi != "PK\x03\x04xpi" || resp.Header.Get("Content-Type") != "application/x-xpinstall" {
		t.Errorf("thunderbird.xpi: %s %q %q", resp.Status, resp.Header.Get("Content-Type"), xpi)
	}
}

// Sign-ins are rows until they complete: a flood of GET signin is cut off,
// per client network (unless behind a proxy) and in all.
func TestSignInFloodBounded(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	r.h.opts.Now = func() time.Time { return now }
	flood := func(n int) (ok, refused int) {
		for range n {
			switch resp, _ := r.get(r.client, "signin"); resp.StatusCode {
			case http.StatusSeeOther:
				ok++
			case http.StatusTooManyRequests:
				refused++
			default:
				t.Fatalf("signin: %s", resp.Status)
			}
		}
		return ok, refused
	}
	if ok, refused := flood(signInBurstPerClient + 5); ok != signInBurstPerClient || refused != 5 {
		t.Errorf("one client: %d started, %d refused; want %d and 5", ok, refused, signInBurstPerClient)
	}
	now = now.Add(signInEveryPerClient)
	if ok, _ := flood(2); ok != 1 {
		t.Errorf("one client, %v later: %d started, want 1", signInEveryPerClient, ok)
	}
	// Behind a proxy every request has the proxy's address: the bound in
	// all still holds.
	r.h.signIns = newSignInLimits(true, func() time.Time { return now })
	if ok, refused := flood(signInBurst + 20); ok != signInBurst || refused != 20 {
		t.Errorf("proxied: %d started, %d refused; want %d and 20", ok, refused, signInBurst)
	}
	now = now.Add(time.Second) // refills signInRate
	if ok, _ := flood(signInRate + 1); ok != signInRate {
		t.Errorf("a second later: %d started, want %d", ok, signInRate)
	}
	// Other networks are not held back by one client's flood.
	l := newSignInLimits(false, func() time.Time { return now })
	for range signInBurstPerClient {
		l.allow("192.0.2.1:1000")
	}
	if l.allow("192.0.2.1:1001") || !l.allow("192.0.2.2:1000") || !l.allow("[2001:db8:1::1]:1") {
		t.Error("the per-client bucket is not per client network")
	}
}

func TestSignOutEverywhere(t *testing.T) {
	r := newRig(t)
	laptop, phone, bob := r.browser(), r.browser(), r.browser()
	for _, c := range []*http.Client{laptop, phone} {
		r.signIn(c, "alice@example.org")
	}
	r.signIn(bob, "bob@example.org")
	resp, _ := r.post(laptop, "signout", url.Values{"csrf": {r.csrf(laptop)}, "everywhere": {"1"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out everywhere: %s", resp.Status)
	}
	for name, c := range map[string]*http.Client{"laptop": laptop, "phone": phone} {
		if _, body := r.get(c, ""); !strings.Contains(body, `id="signin"`) || strings.Contains(body, `id="user"`) {
			t.Errorf("%s still signed in", name)
		}
	}
	if _, body := r.get(bob, ""); !strings.Contains(body, `id="user">bob@example.org<`) {
		t.Error("another user was signed out")
	}
}

// A sign-in whose token cannot be checked (the provider's validation is
// down) is a temporary failure, not a refusal.
func TestSignInValidatorDown(t *testing.T) {
	r := newRig(t)
	resp, _ := r.get(r.client, "signin")
	to, _ := url.Parse(resp.Header.Get("Location"))
	resp, body := r.get(r.client, "callback?"+url.Values{"state": {to.Query().Get("state")}, "code": {"code-down"}}.Encode())
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "unavailable") {
		t.Errorf("callback with the validator down: %s\n%s", resp.Status, body)
	}
}

// The form's first lifetime says what the store makes of "none given".
func TestExpiryChoices(t *testing.T) {
	r := newRig(t)
	for _, tt := range []struct {
		def, max time.Duration
		want     string
	}{
		{0, 0, "Never expires"},
		{0, 90 * 24 * time.Hour, "The longest allowed (90 days)"},
		{30 * 24 * time.Hour, 365 * 24 * time.Hour, "In 30 days (the default)"},
	} {
		r.h.opts.DefaultExpiry, r.h.opts.MaxExpiry = tt.def, tt.max
		if got := r.h.expiries()[0].Label; got != tt.want {
			t.Errorf("default %v, max %v: first choice %q, want %q", tt.def, tt.max, got, tt.want)
		}
	}
}
