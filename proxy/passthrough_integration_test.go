package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
)

// Password passthrough against the real Dovecot and Postfix: the users of
// testenv.DefaultUsers log in with their own password ("password").

const integrationPassword = "password" // testenv.DefaultUsers' password

// newIMAPPasswordIntegration starts mailgate with IMAP password passthrough
// in front of dc (ID with the client's address, as in production).
func newIMAPPasswordIntegration(t *testing.T, dc *testenv.Dovecot, th Throttle, mod func(*Options)) *testProxy {
	t.Helper()
	var tp *testProxy
	t.Cleanup(func() {
		if tp != nil && strings.Contains(tp.logs.String(), "wrong-password") {
			t.Errorf("a password appears in mailgate's log")
		}
	})
	opts := Options{
		Authenticator: fakeAuthenticator, // tokens are not used here
		Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
		IMAPBackend:   Backend{Address: dc.IMAPAddr, TLS: TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"},
		Passwords:     PasswordOptions{IMAP: true, Throttle: th},
	}
	if mod != nil {
		mod(&opts)
	}
	tp = newTestProxy(t, opts)
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
		c.Send(`a1 LOGIN "alice@example.test" "` + integrationPassword + `"`)
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
		if err := c.Authenticate(sasl.NewPlainClient("", "bob@example.test", integrationPassword)); err != nil {
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
	tp := newIMAPPasswordIntegration(t, dc, newTestThrottle(2), func(o *Options) { o.Limits.MaxAuthFailures = 10 })
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
	c.Send("a3 LOGIN alice@example.test " + integrationPassword)
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
	it := newIMAPIntegration(t, TLSStartTLS)
	mark := it.dc.Log.Mark()
	c := proxytest.DialTLS(t, it.tp.tlsAddr, it.tp.clientTLS)
	if g := c.Expect("* OK [CAPABILITY "); strings.Contains(g, "AUTH=PLAIN") || strings.Contains(g, "AUTH=LOGIN") {
		t.Fatalf("greeting %q advertises password mechanisms", g)
	}
	c.Send("a1 LOGIN alice@example.test " + integrationPassword)
	c.Expect("a1 NO [CANNOT]")
	c.Send("a2 AUTHENTICATE PLAIN " + plainIR("alice@example.test", integrationPassword))
	c.Expect("a2 NO Unsupported authentication mechanism.")
	c.Send("a3 LOGOUT")
	c.Expect("* BYE")
	if log := it.dc.Log.Since(mark); strings.Contains(log, "alice@example.test") {
		t.Fatalf("Dovecot saw a login:\n%s", log)
	}
}

// newSMTPPasswordIntegration starts mailgate with SMTP password passthrough
// in front of pf.
func newSMTPPasswordIntegration(t *testing.T, pf *testenv.Postfix, th Throttle) *smtpIntegration {
	t.Helper()
	it := newSMTPIntegration(t, pf, Backend{TLS: TLSStartTLS}, func(o *Options) {
		o.Passwords = PasswordOptions{SMTP: true, Throttle: th}
		o.Limits.MaxAuthFailures = 10
	})
	t.Cleanup(func() {
		if strings.Contains(it.tp.logs.String(), "wrong-password") {
			t.Errorf("a password appears in mailgate's log")
		}
	})
	return it
}

// TestIntegrationSMTPPasswordLogin: AUTH PLAIN and AUTH LOGIN with the
// user's own password are the user's own AUTH at Postfix (sasl_username is
// the user), and a message is delivered.
func TestIntegrationSMTPPasswordLogin(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	it := newSMTPPasswordIntegration(t, pf, nil)
	for _, cl := range []sasl.Client{
		sasl.NewPlainClient("", "alice@example.test", integrationPassword),
		sasl.NewLoginClient("alice@example.test", integrationPassword),
	} {
		mech, _, _ := cl.Start()
		t.Run(mech, func(t *testing.T) {
			mark := pf.Log.Mark()
			c, err := smtp.DialTLS(it.tp.tlsAddr, it.tp.clientTLS)
			if err != nil {
				t.Fatalf("dial mailgate: %v", err)
			}
			defer c.Close()
			if err := c.Auth(cl); err != nil {
				t.Fatalf("Auth(%s) = %v", mech, err)
			}
			subject := uniqueSubject("passthrough-" + mech)
			if _, err := smtpSend(t, c, "alice@example.test", "alice@example.test", strings.NewReader(string(smtpTestMessage(subject)))); err != nil {
				t.Fatalf("send: %v", err)
			}
			line := pf.Log.WaitSince(t, mark, "sasl_username=alice@example.test", 10*time.Second)
			if !strings.Contains(line, "sasl_method=PLAIN") {
				t.Fatalf("Postfix line %q, want the user's own PLAIN login", line)
			}
			it.dc.WaitMessage(t, "alice@example.test", "Subject: "+subject, 15*time.Second)
		})
	}
}

// TestIntegrationSMTPPasswordRefusedAndThrottled: a wrong password gets
// 535 5.7.8; after two failures mailgate refuses at once and Dovecot (behind
// Postfix) has seen two attempts only.
func TestIntegrationSMTPPasswordRefusedAndThrottled(t *testing.T) {
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{}) // its own: failures slow down Postfix's logins
	pf := testenv.StartPostfix(t, dc, testenv.PostfixOptions{})
	it := newSMTPPasswordIntegration(t, pf, newTestThrottle(2))
	mark := dc.Log.Mark()
	c := it.tp.dialSubmissions(t)
	for i := 0; i < 2; i++ {
		c.SMTPCmd("AUTH PLAIN "+plainIR("alice@example.test", "wrong-password"), "535 5.7.8")
	}
	start := time.Now()
	c.SMTPCmd("AUTH PLAIN "+plainIR("alice@example.test", integrationPassword), "454 4.7.0 Too many failed logins")
	if d := time.Since(start); d > time.Second {
		t.Errorf("throttled attempt answered after %v, want at once from mailgate", d)
	}
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "530 ")
	proxytest.WaitFor(t, "Dovecot to log the password mismatches", func() bool {
		return strings.Count(dc.Log.Since(mark), "Password mismatch") >= 2
	})
	if n := strings.Count(dc.Log.Since(mark), "Password mismatch"); n != 2 {
		t.Fatalf("Dovecot saw %d wrong passwords, want 2", n)
	}
	if n := strings.Count(pf.Log.String(), "SASL PLAIN authentication failed"); n != 2 {
		t.Fatalf("Postfix saw %d failed AUTHs, want 2", n)
	}
	if strings.Contains(pf.Log.String(), "sasl_method=PLAIN, sasl_username=alice@example.test") {
		t.Fatal("the throttled login reached Postfix")
	}
}

// TestIntegrationSMTPPasswordOffByDefault: without passthrough EHLO offers
// only the OAuth mechanisms and PLAIN is an unknown mechanism.
func TestIntegrationSMTPPasswordOffByDefault(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	it := newSMTPIntegration(t, pf, Backend{TLS: TLSStartTLS}, nil)
	c := it.tp.dialSubmissions(t)
	if got := proxytest.ExtParam(c.SMTPEHLO(), "AUTH"); got != "OAUTHBEARER XOAUTH2" {
		t.Fatalf("AUTH = %q, want OAUTHBEARER XOAUTH2", got)
	}
	c.SMTPCmd("AUTH PLAIN "+plainIR("alice@example.test", integrationPassword), "504 5.7.4")
}
