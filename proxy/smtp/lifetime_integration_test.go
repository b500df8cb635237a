package smtp

import (
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// proxy.Session lifetime against the real provider (Hydra), Dovecot and Postfix.

// TestIntegrationSMTPLifetimeToken: with session_lifetime token a
// submission session works until its token's exp, and its next command
// after that gets 421 4.7.0 and the connection closes.
func TestIntegrationSMTPLifetimeToken(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, func(o *proxy.Options, so *Options) {
		o.Lifetime = proxy.LifetimeOptions{Mode: proxy.LifetimeToken}
	})
	token := it.idp.MintToken(t, "alice@example.test", testenv.TokenOptions{Lifetime: 5 * time.Second})
	exp := proxytest.JWTExpiry(t, token)
	c := it.tp.dialSubmissions(t)
	c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", token), "235 ")
	subject := proxytest.UniqueSubject("lifetime")
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<alice@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	c.SMTPCmd("Subject: "+subject+"\r\n\r\nbefore the token expired\r\n.", "250 2.0.0")
	if time.Now().After(exp) {
		t.Fatal("the token expired before the first message was sent; the test is too slow")
	}
	waitExpired(t, it.tp)
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "421 4.7.0 Access token expired")
	c.ExpectClosed()
	it.dc.WaitMessage(t, "alice@example.test", "Subject: "+subject, 15*time.Second)
	if strings.Contains(it.tp.logs.String(), token) {
		t.Fatal("the token appears in mailgate's log")
	}
}
