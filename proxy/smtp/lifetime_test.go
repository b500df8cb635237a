package smtp

import (
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

func newSMTPLifetimeTest(t *testing.T, authn proxy.Authenticator, lt proxy.LifetimeOptions) (*smtpTestProxy, *proxytest.FakeSMTPBackend) {
	t.Helper()
	return newSMTPTest(t, proxytest.FakeSMTPOptions{}, func(o *proxy.Options, so *Options) {
		o.Authenticator, o.Lifetime = authn, lt
	})
}

// TestSMTPLifetimeToken: after the token's expiry the next command outside a
// mail transaction gets 421 4.7.0 and the connection closes; a transaction
// begun before the expiry is finished first.
func TestSMTPLifetimeToken(t *testing.T) {
	t.Run("next command", func(t *testing.T) {
		exp := time.Now().Add(1500 * time.Millisecond) // the login and the first command come before it, even on a loaded machine
		tp, fb := newSMTPLifetimeTest(t, proxy.AuthenticatorFunc(proxytest.ExpiringAuthenticate(exp)), proxy.LifetimeOptions{Mode: proxy.LifetimeToken})
		c := tp.dialSubmissions(t)
		c.SMTPLogin()
		c.SMTPCmd("NOOP", "250 ")
		waitExpired(t, tp)
		c.SMTPCmd("MAIL FROM:<alice@example.test>", "421 4.7.0 Access token expired")
		c.ExpectClosed()
		if fb.SawCommand("MAIL") {
			t.Fatal("the backend saw the MAIL sent after the expiry")
		}
	})
	t.Run("transaction finishes", func(t *testing.T) {
		exp := time.Now().Add(1500 * time.Millisecond) // the login and the first command come before it, even on a loaded machine
		tp, fb := newSMTPLifetimeTest(t, proxy.AuthenticatorFunc(proxytest.ExpiringAuthenticate(exp)), proxy.LifetimeOptions{Mode: proxy.LifetimeToken})
		c := tp.dialSubmissions(t)
		c.SMTPLogin()
		c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
		waitExpired(t, tp)
		c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
		c.SMTPCmd("DATA", "354 ")
		c.SMTPCmd("Subject: x\r\n\r\nx\r\n.", "250 2.0.0 Ok: queued as FAKE1")
		c.SMTPCmd("NOOP", "421 4.7.0")
		c.ExpectClosed()
		if n := len(fb.Messages()); n != 1 {
			t.Fatalf("backend got %d messages, want 1", n)
		}
	})
}

// waitExpired waits until the session's watch has seen its token expire
// (its log line), rather than sleeping past the expiry: a loaded machine
// may run the timer late.
func waitExpired(t *testing.T, tp *smtpTestProxy) {
	t.Helper()
	proxytest.WaitFor(t, "the token's expiry", func() bool {
		return strings.Contains(tp.logs.String(), "session ends: token expired")
	})
}

// TestSMTPLifetimeRevalidate: once the provider refuses the token, the next
// command gets 421 4.7.0; sessions are unaffected while it accepts it.
func TestSMTPLifetimeRevalidate(t *testing.T) {
	rv := &proxytest.Revalidator{}
	tp, _ := newSMTPLifetimeTest(t, fakeAuthenticator, proxy.LifetimeOptions{Mode: proxy.LifetimeRevalidate, RevalidateEvery: 50 * time.Millisecond, Revalidator: rv})
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	proxytest.WaitFor(t, "two revalidations", func() bool { return rv.Calls.Load() >= 2 })
	c.SMTPCmd("NOOP", "250 ")
	rv.Revoked.Store(true)
	proxytest.WaitFor(t, "a refused revalidation", func() bool { return rv.Refusals.Load() >= 1 })
	c.SMTPCmd("NOOP", "421 4.7.0 Access token no longer valid")
	c.ExpectClosed()
	for _, a := range rv.Asked() {
		if a != "XOAUTH2 alice@example.test "+proxytest.TestToken {
			t.Fatalf("revalidator asked %q", a)
		}
	}
}
