package smtp

import (
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// Password passthrough against the real Dovecot and Postfix: the users of
// testenv.DefaultUsers log in with their own password ("password").

// newSMTPPasswordIntegration starts mailgate with SMTP password passthrough
// in front of pf.
func newSMTPPasswordIntegration(t *testing.T, pf *testenv.Postfix, th proxy.Throttle) *smtpIntegration {
	t.Helper()
	it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, func(o *proxy.Options, so *Options) {
		o.Passwords = proxy.PasswordOptions{SMTP: true, Throttle: th}
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
		sasl.NewPlainClient("", "alice@example.test", proxytest.UserPassword),
		sasl.NewLoginClient("alice@example.test", proxytest.UserPassword),
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
			subject := proxytest.UniqueSubject("passthrough-" + mech)
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
	it := newSMTPPasswordIntegration(t, pf, proxytest.NewTestThrottle(2))
	mark := dc.Log.Mark()
	c := it.tp.dialSubmissions(t)
	for i := 0; i < 2; i++ {
		c.SMTPCmd("AUTH PLAIN "+proxytest.PlainIR("alice@example.test", "wrong-password"), "535 5.7.8")
	}
	start := time.Now()
	c.SMTPCmd("AUTH PLAIN "+proxytest.PlainIR("alice@example.test", proxytest.UserPassword), "454 4.7.0 Too many failed logins")
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
	it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, nil)
	c := it.tp.dialSubmissions(t)
	if got := proxytest.ExtParam(c.SMTPEHLO(), "AUTH"); got != "OAUTHBEARER XOAUTH2" {
		t.Fatalf("AUTH = %q, want OAUTHBEARER XOAUTH2", got)
	}
	c.SMTPCmd("AUTH PLAIN "+proxytest.PlainIR("alice@example.test", proxytest.UserPassword), "504 5.5.4")
}
