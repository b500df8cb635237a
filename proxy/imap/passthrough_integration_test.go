package imap

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// newIMAPPasswordIntegration starts mailgate with IMAP password passthrough
// in front of dc (ID with the client's address, as in production).
func newIMAPPasswordIntegration(t *testing.T, dc *testenv.Dovecot, th proxy.Throttle, mod func(*proxy.Options)) *testProxy {
	t.Helper()
	var tp *testProxy
	t.Cleanup(func() {
		if tp != nil && strings.Contains(tp.logs.String(), "wrong-password") {
			t.Errorf("a password appears in mailgate's log")
		}
	})
	opts := proxy.Options{
		Authenticator: fakeAuthenticator, // tokens are not used here
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
		Passwords:     proxy.PasswordOptions{IMAP: true, Throttle: th},
	}
	if mod != nil {
		mod(&opts)
	}
	tp = newTestProxy(t, opts, Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"}})
	return tp
}

// TestIntegrationIMAPPasswordLogin: LOGIN and AUTHENTICATE PLAIN with the
// user's own password reach Dovecot as the user's own login (no master
// user), from the client's address; Dovecot's OK is the client's.
func TestIntegrationIMAPPasswordLogin(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	tp := newIMAPPasswordIntegration(t, dc, nil, nil)
	t.Run("LOGIN", func(t *testing.T) {
		mark := dc.Log.Mark()
		c := proxytest.DialTLSFrom(t, "127.0.0.21", tp.tlsAddr, tp.clientTLS)
		c.Expect("* OK [CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ AUTH=OAUTHBEARER AUTH=XOAUTH2 AUTH=PLAIN AUTH=LOGIN]")
		c.Send(`a1 LOGIN "alice@example.test" "` + proxytest.UserPassword + `"`)
		ok := c.Expect("a1 OK [CAPABILITY IMAP4rev1")
		if !strings.Contains(ok, " IDLE ") || strings.Contains(ok, "AUTH=") {
			t.Fatalf("login reply %q, want Dovecot's post-login capabilities", ok)
		}
		c.Send("a2 SELECT INBOX")
		for line := c.ReadLine(); !strings.HasPrefix(line, "a2 "); line = c.ReadLine() {
		}
		line := dc.Log.WaitSince(t, mark, "rip=127.0.0.21", 10*time.Second)
		if !strings.Contains(line, "user=<alice@example.test>") || !strings.Contains(line, "method=PLAIN") {
			t.Fatalf("Dovecot login line = %q", line)
		}
		if strings.Contains(dc.Log.Since(mark), "Master user logging in") {
			t.Fatal("Dovecot saw a master login for a password login")
		}
	})
	t.Run("AUTHENTICATE PLAIN with go-imap", func(t *testing.T) {
		c, err := imapclient.DialTLS(tp.tlsAddr, &imapclient.Options{TLSConfig: tp.clientTLS})
		if err != nil {
			t.Fatalf("DialTLS() = %v", err)
		}
		defer c.Close()
		if !c.Caps().Has(imap.AuthCap(sasl.Plain)) {
			t.Fatalf("caps = %v, want AUTH=PLAIN", c.Caps())
		}
		if err := c.Authenticate(sasl.NewPlainClient("", "bob@example.test", proxytest.UserPassword)); err != nil {
			t.Fatalf("Authenticate(PLAIN) = %v", err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatalf("SELECT = %v", err)
		}
		if err := c.Logout().Wait(); err != nil {
			t.Fatalf("LOGOUT = %v", err)
		}
	})
}

// TestIntegrationIMAPPasswordRefusedAndThrottled: a wrong password gets
// Dovecot's own NO [AUTHENTICATIONFAILED]; after two failures mailgate's
// throttle refuses the address at once, and Dovecot has seen two attempts,
// not the third (which had the right password).
func TestIntegrationIMAPPasswordRefusedAndThrottled(t *testing.T) {
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{}) // its own: failures make Dovecot slow down
	tp := newIMAPPasswordIntegration(t, dc, proxytest.NewTestThrottle(2), func(o *proxy.Options) { o.Limits.MaxAuthFailures = 10 })
	mark := dc.Log.Mark()
	c := proxytest.DialTLSFrom(t, "127.0.0.22", tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	for i := 1; i <= 2; i++ {
		c.Send(fmt.Sprintf("a%d LOGIN alice@example.test wrong-password", i))
		if got := c.ReadLine(); got != fmt.Sprintf("a%d NO [AUTHENTICATIONFAILED] Authentication failed.", i) {
			t.Fatalf("attempt %d: %q, want Dovecot's refusal", i, got)
		}
	}
	proxytest.WaitFor(t, "Dovecot to log two password mismatches", func() bool {
		return strings.Count(dc.Log.Since(mark), "Password mismatch") >= 2
	})
	start := time.Now()
	c.Send("a3 LOGIN alice@example.test " + proxytest.UserPassword)
	c.Expect("a3 NO [LIMIT] Too many failed logins from your network")
	if d := time.Since(start); d > time.Second {
		t.Errorf("throttled attempt answered after %v, want at once from mailgate", d)
	}
	log := dc.Log.Since(mark)
	if n := strings.Count(log, "Password mismatch"); n != 2 {
		t.Fatalf("Dovecot saw %d wrong passwords, want 2:\n%s", n, log)
	}
	if strings.Contains(log, "Login: user=<alice@example.test>") {
		t.Fatalf("the throttled login reached Dovecot:\n%s", log)
	}
}

// TestIntegrationIMAPPasswordOffByDefault: without passthrough mailgate
// offers no AUTH=PLAIN and refuses LOGIN and PLAIN itself.
func TestIntegrationIMAPPasswordOffByDefault(t *testing.T) {
	it := newIMAPIntegration(t, proxy.TLSStartTLS)
	mark := it.dc.Log.Mark()
	c := proxytest.DialTLS(t, it.tp.tlsAddr, it.tp.clientTLS)
	if g := c.Expect("* OK [CAPABILITY "); strings.Contains(g, "AUTH=PLAIN") || strings.Contains(g, "AUTH=LOGIN") {
		t.Fatalf("greeting %q advertises password mechanisms", g)
	}
	c.Send("a1 LOGIN alice@example.test " + proxytest.UserPassword)
	c.Expect("a1 NO [CANNOT]")
	c.Send("a2 AUTHENTICATE PLAIN " + proxytest.PlainIR("alice@example.test", proxytest.UserPassword))
	c.Expect("a2 NO Unsupported authentication mechanism.")
	c.Send("a3 LOGOUT")
	c.Expect("* BYE")
	if log := it.dc.Log.Since(mark); strings.Contains(log, "alice@example.test") {
		t.Fatalf("Dovecot saw a login:\n%s", log)
	}
}
