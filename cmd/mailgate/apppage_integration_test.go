package main

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailgate/mailgate/auth/apppass"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/testenv"
)

// pageStep bounds one browser action (a page load through the provider
// included).
const pageStep = 30 * time.Second

// pageRig is mailgate with the app-password page on, signing in at a real
// Hydra, in front of the real Dovecot and Postfix.
type pageRig struct {
	a        *app
	idp      *testenv.Hydra
	clientID string
	pageURL  string
	mu       sync.Mutex
	logs     bytes.Buffer
}

func (r *pageRig) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

// newPageRig runs mailgate with its store at database and the page signing
// in with a confidential client of idp.
func newPageRig(t *testing.T, idp *testenv.Hydra, database string) *pageRig {
	t.Helper()
	dc, pf := testenv.SharedDovecot(t), testenv.SharedPostfix(t)
	cfg, _ := realBackends(t, dc, pf)
	listen := testenv.FreeAddr(t)
	r := &pageRig{idp: idp, pageURL: "https://" + listen + "/app-passwords/"}
	var secret string
	r.clientID, secret = idp.ConfidentialClient(t, testenv.ConfidentialClientOptions{RedirectURIs: []string{r.pageURL + "callback"}})
	dir := t.TempDir()
	keyFile, secretFile := filepath.Join(dir, "key"), filepath.Join(dir, "page-secret")
	writeFile(t, keyFile, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n")
	writeFile(t, secretFile, secret+"\n")
	cfg.OAuth2.Mode, cfg.OAuth2.UserinfoURL, cfg.OAuth2.Issuer = config.ModeJWT, "", idp.Issuer
	a := &cfg.AppPasswords
	a.Enabled, a.Database, a.KeyFile = true, database, keyFile
	a.Listen, a.PageURL, a.OIDCClientID, a.OIDCClientSecretFile = listen, r.pageURL, r.clientID, secretFile
	a.RevalidateInterval = 2 * time.Second
	if err := loadSecretForTest(cfg); err != nil {
		t.Fatal(err)
	}
	r.a = runApp(t, cfg, slog.New(slog.NewTextHandler(lockedWriter{&r.mu, &r.logs}, nil)))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mailgate log:\n%s", r.log())
		}
	})
	return r
}

// loadSecretForTest reads oidc_client_secret_file as config.Load does.
func loadSecretForTest(cfg *config.Config) error {
	b, err := os.ReadFile(cfg.AppPasswords.OIDCClientSecretFile)
	cfg.AppPasswords.OIDCClientSecret = strings.TrimSpace(string(b))
	return err
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// browse runs browser steps within pageStep.
func browse(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, pageStep)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		t.Fatalf("%s: %v\npage:\n%.3000s", what, err, pageHTML(ctx))
	}
}

// read runs one browser action that reads something, within pageStep.
func read[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, pageStep)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		t.Fatalf("%s: %v\npage:\n%.3000s", what, err, pageHTML(ctx))
	}
	return v
}

// pageHTML is the browser's page, for failure messages.
func pageHTML(ctx context.Context) string {
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	html, _ := chromedp.Run(hctx, chromedp.OuterHTML(chromedp.CSS("html")))
	return html
}

// signIn opens the page and signs in at the provider (the login app
// accepts), landing on the list.
func (r *pageRig) signIn(t *testing.T, b context.Context) {
	t.Helper()
	browse(t, b, "sign in",
		chromedp.Navigate(r.pageURL),
		chromedp.WaitVisible(chromedp.ID("signin")),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("user")))
	if user := read(t, b, "user", chromedp.Text(chromedp.ID("user"))); user != apAlice {
		t.Fatalf("signed in as %q, want %s", user, apAlice)
	}
}

// create makes an app password on the page and reads it from the page;
// byKeyboard submits the form with Enter in the name field rather than a
// click on the button.
func (r *pageRig) create(t *testing.T, b context.Context, name string, byKeyboard bool) string {
	t.Helper()
	submit := chromedp.Click(chromedp.CSS("#create button[type=submit]"))
	if byKeyboard {
		submit = chromedp.SendKeys(chromedp.ID("name"), "\r")
	}
	browse(t, b, "create "+name,
		chromedp.Navigate(r.pageURL),
		chromedp.WaitVisible(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), name),
		submit,
		chromedp.WaitVisible(chromedp.ID("password")))
	pw := read(t, b, "password", chromedp.Value(chromedp.ID("password")))
	if !strings.HasPrefix(pw, apppass.Prefix) {
		t.Fatalf("the page shows %q as the password", pw)
	}
	return pw
}

// TestIntegrationAppPasswordPage: in a real headless Chromium, alice signs
// in on the page at the real provider (Hydra; the harness plays login and
// consent), makes an app password and reads it from the page; Python's
// smtplib sends a message through mailgate to the real Postfix with it,
// imaplib and curl read it back from the real Dovecot; the page shows the
// last use; revoked on the page, it is refused. A second one, made with
// JavaScript off, works until alice's consent is withdrawn at the
// provider: refused after the next revalidation, and again accepted after
// alice signs in again. The same against SQLite and a real PostgreSQL.
func TestIntegrationAppPasswordPage(t *testing.T) {
	testenv.RequireChromium(t)
	idp := testenv.StartHydra(t, testenv.HydraOptions{})
	idp.StartLoginApp(t, testenv.LoginAppOptions{Email: apAlice})
	t.Run("sqlite", func(t *testing.T) {
		testAppPasswordPage(t, idp, "sqlite://"+filepath.Join(t.TempDir(), "app-passwords.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		pg := testenv.StartPostgres(t, testenv.PostgresOptions{Password: "pg-s3cret"})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		url, err := pg.CreateDatabase(ctx, "mailgate")
		if err != nil {
			t.Fatal(err)
		}
		testAppPasswordPage(t, idp, url)
	})
}

func testAppPasswordPage(t *testing.T, idp *testenv.Hydra, database string) {
	r := newPageRig(t, idp, database)
	b := testenv.NewBrowser(t, testenv.BrowserOptions{IgnoreCertErrors: true})
	r.signIn(t, b)
	r.forgedPost(t, b)
	pw := r.create(t, b, "python", false)
	browse(t, b, "copy button shown with JavaScript on", chromedp.WaitVisible(chromedp.CSS("button.copy")))

	subject := fmt.Sprintf("page-%d", time.Now().UnixNano())
	r.python(t, smtplibScript, pw, subject)
	testenv.SharedDovecot(t).WaitMessageIn(t, apAlice, "INBOX", subject, 30*time.Second)
	if out := r.python(t, imaplibSearchScript, pw, subject); strings.TrimSpace(out) != "OK 1" {
		t.Errorf("imaplib found %q, want the message once (OK 1)", out)
	}
	if out := r.curl(t, pw, subject); !strings.HasPrefix(strings.TrimSpace(out), "* SEARCH ") || strings.TrimSpace(out) == "* SEARCH" {
		t.Errorf("curl IMAP search: %q, want the message", out)
	}

	id := pw[len(apppass.Prefix) : len(apppass.Prefix)+16]
	rowSel := chromedp.CSS(`tr[data-id="` + id + `"]`)
	browse(t, b, "list", chromedp.Navigate(r.pageURL), chromedp.WaitVisible(rowSel))
	if row := read(t, b, "row", chromedp.Text(rowSel)); !strings.Contains(row, "python") || !strings.Contains(row, "from 127.0.0.1") {
		t.Errorf("the row of the password reads %q; want its name and last use from 127.0.0.1", row)
	}
	browse(t, b, "revoke on the page",
		chromedp.Click(chromedp.CSS(`tr[data-id="`+id+`"] button`)),
		chromedp.WaitVisible(chromedp.ID("notice")))
	if out, err := r.pythonErr(t, imaplibSearchScript, pw, subject); err == nil || !strings.Contains(out, "AUTHENTICATIONFAILED") {
		t.Errorf("imaplib with the revoked password: %v\n%s\nwant AUTHENTICATIONFAILED", err, out)
	}

	// JavaScript off, keyboard only: the same forms work; no Copy button.
	nojs := testenv.NewBrowser(t, testenv.BrowserOptions{IgnoreCertErrors: true, NoJavaScript: true})
	r.signIn(t, nojs)
	pw2 := r.create(t, nojs, "no-js", true)
	if hidden := read(t, nojs, "copy button", chromedp.AttributeValue(chromedp.CSS("button.copy"), "hidden")); !hidden.Exists {
		t.Error("the Copy button is shown without JavaScript")
	}
	r.python(t, imaplibSearchScript, pw2, subject)

	// Consent withdrawn at the provider: refused after the next revalidation.
	ctx, cancel := context.WithTimeout(context.Background(), pageStep)
	defer cancel()
	if err := idp.RevokeConsent(ctx, apAlice, r.clientID); err != nil {
		t.Fatal(err)
	}
	r.waitSuspended(t)
	if out, err := r.pythonErr(t, imaplibSearchScript, pw2, subject); err == nil || !strings.Contains(out, "AUTHENTICATIONFAILED") {
		t.Errorf("imaplib after consent withdrawn: %v\n%s\nwant AUTHENTICATIONFAILED", err, out)
	}
	if !strings.Contains(r.log(), "app passwords suspended until the user signs in again") {
		t.Error("the suspension is not logged")
	}
	// Signing in again (consent given again) lifts it.
	r.signIn(t, nojs)
	r.python(t, imaplibSearchScript, pw2, subject)
}

// waitSuspended waits until the revalidation loop has suspended alice.
func (r *pageRig) waitSuspended(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		l, err := r.a.appPass.LinkStatus(context.Background(), apAlice)
		if err == nil && !l.Suspended.IsZero() {
			return
		}
		<-tick.C
	}
	t.Fatal("alice's app passwords not suspended 30 s after her consent was withdrawn")
}

const smtplibScript = `
import os, smtplib, ssl, sys
host, port, cafile, user, subject = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
with smtplib.SMTP_SSL(host, int(port), context=ctx, timeout=15) as s:
    s.login(user, os.environ["APP_PASSWORD"])
    s.sendmail(user, [user], "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nsent with an app password from the page\r\n" % (user, user, subject))
print("sent")
`

const imaplibSearchScript = `
import imaplib, os, ssl, sys
host, port, cafile, user, subject = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=15)
try:
    m.login(user, os.environ["APP_PASSWORD"])
except imaplib.IMAP4.error as e:
    print(e)
    sys.exit(1)
m.select("INBOX", readonly=True)
typ, data = m.search(None, "SUBJECT", '"%s"' % subject)
print(typ, len(data[0].split()))
m.logout()
`

// python runs a script with the app password and wants it to succeed.
func (r *pageRig) python(t *testing.T, script, pw, subject string) string {
	t.Helper()
	out, err := r.pythonErr(t, script, pw, subject)
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	return out
}

func (r *pageRig) pythonErr(t *testing.T, script, pw, subject string) (string, error) {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 not installed")
	}
	addr := r.a.addr("imap.listen_tls")
	if strings.Contains(script, "smtplib") {
		addr = r.a.addr("smtp.listen_tls")
	}
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", script, host, port, r.a.cfg.TLS.CertFile, apAlice, subject)
	cmd.Env = append(os.Environ(), "APP_PASSWORD="+pw)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// curl searches alice's INBOX for subject over mailgate's IMAPS.
func (r *pageRig) curl(t *testing.T, pw, subject string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The credentials go in a netrc file, not on the command line.
	netrc := filepath.Join(t.TempDir(), "netrc")
	host, _, _ := strings.Cut(r.a.addr("imap.listen_tls"), ":")
	writeFile(t, netrc, fmt.Sprintf("machine %s login %s password %s\n", host, apAlice, pw))
	cmd := exec.CommandContext(ctx, "curl", "-sS", "--netrc-file", netrc, "--cacert", r.a.cfg.TLS.CertFile,
		"imaps://"+r.a.addr("imap.listen_tls")+"/INBOX", "-X", `SEARCH SUBJECT "`+subject+`"`)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	return string(out)
}

// forgedPost: a page of another site (127.0.0.2) that alice visits while
// signed in posts the create form, even with her real CSRF token: refused
// (403), nothing made.
func (r *pageRig) forgedPost(t *testing.T, b context.Context) {
	t.Helper()
	browse(t, b, "list", chromedp.Navigate(r.pageURL), chromedp.WaitVisible(chromedp.ID("create")))
	token := read(t, b, "csrf token", chromedp.AttributeValue(chromedp.CSS(`#create input[name=csrf]`), "value")).Value
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	evil := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%screate"><input type="hidden" name="csrf" value="%s">`+
			`<input type="hidden" name="name" value="forged"><input type="hidden" name="protocol" value="imap">`+
			`<button id="go" type="submit">win a prize</button></form>`, html.EscapeString(r.pageURL), html.EscapeString(token))
	})}}
	evil.Start()
	defer evil.Close()
	browse(t, b, "attacker's page", chromedp.Navigate(evil.URL), chromedp.WaitVisible(chromedp.ID("go")))
	sctx, cancel := context.WithTimeout(b, pageStep)
	defer cancel()
	resp, err := chromedp.RunResponse(sctx, chromedp.Click(chromedp.ID("go")))
	if err != nil {
		t.Fatalf("forged POST: %v", err)
	}
	if resp.Status != http.StatusForbidden { // the cross-origin check, before the (Lax, so absent) cookie is looked at
		t.Errorf("forged cross-site POST answered %d, want 403", resp.Status)
	}
	recs, err := r.a.appPass.List(context.Background(), apAlice)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if rec.Name == "forged" {
			t.Fatal("a forged cross-site POST made an app password")
		}
	}
}
