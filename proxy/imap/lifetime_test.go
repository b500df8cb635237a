package imap

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

func newIMAPLifetimeTest(t *testing.T, authn proxy.Authenticator, lt proxy.LifetimeOptions) *testProxy {
	t.Helper()
	fb := proxytest.StartFakeIMAPBackend(t)
	return newTestProxy(t, proxy.Options{
		Authenticator: authn,
		Lifetime:      lt,
		Passwords:     proxy.PasswordOptions{IMAP: true},
	}, Options{Backend: proxy.Backend{Address: fb.Addr, TLS: proxy.TLSNone, ClientIP: "id"}})
}

// imapLogin opens a TLS connection and logs in as alice with XOAUTH2.
func imapTokenLogin(t *testing.T, tp *testProxy) *proxytest.Conn {
	t.Helper()
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	c.Expect("a1 OK [CAPABILITY")
	return c
}

// TestIMAPLifetimeToken: with session_lifetime token the session gets
// "* BYE [EXPIRED]" when the token's expiry passes, not before, and is closed.
func TestIMAPLifetimeToken(t *testing.T) {
	exp := time.Now().Add(700 * time.Millisecond)
	tp := newIMAPLifetimeTest(t, proxy.AuthenticatorFunc(proxytest.ExpiringAuthenticate(exp)), proxy.LifetimeOptions{Mode: proxy.LifetimeToken})
	c := imapTokenLogin(t, tp)
	c.Send("a2 IDLE")
	c.Expect("* ECHO IDLE")
	c.Expect("a2 OK")
	line := c.ReadLine()
	at := time.Now()
	if line != "* BYE [EXPIRED] Access token expired, log in again." {
		t.Fatalf("got %q, want the expiry BYE", line)
	}
	if at.Before(exp) || at.After(exp.Add(time.Second)) {
		t.Fatalf("BYE at exp%+v, want within a second after exp", at.Sub(exp))
	}
	c.ExpectClosed()
	proxytest.WaitFor(t, "the session end to be logged", func() bool { return strings.Contains(tp.logs.String(), `end="token expired"`) })
}

// TestIMAPLifetimeExpiredAtLogin: a token that expired before the relay
// started ends the session at once with token, and not at all with none.
func TestIMAPLifetimeExpiredAtLogin(t *testing.T) {
	past := time.Now().Add(-time.Minute)
	t.Run("token", func(t *testing.T) {
		tp := newIMAPLifetimeTest(t, proxy.AuthenticatorFunc(proxytest.ExpiringAuthenticate(past)), proxy.LifetimeOptions{Mode: proxy.LifetimeToken})
		c := imapTokenLogin(t, tp)
		c.Expect("* BYE [EXPIRED]")
		c.ExpectClosed()
	})
	for _, mode := range []string{"", proxy.LifetimeNone} {
		t.Run(fmt.Sprintf("mode %q", mode), func(t *testing.T) {
			tp := newIMAPLifetimeTest(t, proxy.AuthenticatorFunc(proxytest.ExpiringAuthenticate(past)), proxy.LifetimeOptions{Mode: mode})
			c := imapTokenLogin(t, tp)
			c.Send("a2 NOOP")
			c.Expect("* ECHO NOOP") // not a BYE
			c.Expect("a2 OK")
		})
	}
}

// TestIMAPLifetimeRevalidate: the token is checked every period with the
// session's user and token; once it is refused the session gets BYE within
// a period; while the provider is down the session goes on.
func TestIMAPLifetimeRevalidate(t *testing.T) {
	const every = 100 * time.Millisecond
	t.Run("revoked", func(t *testing.T) {
		rv := &proxytest.Revalidator{}
		tp := newIMAPLifetimeTest(t, fakeAuthenticator, proxy.LifetimeOptions{Mode: proxy.LifetimeRevalidate, RevalidateEvery: every, Revalidator: rv})
		c := imapTokenLogin(t, tp)
		proxytest.WaitFor(t, "two revalidations", func() bool { return rv.Calls.Load() >= 2 })
		c.Send("a2 NOOP")
		c.Expect("* ECHO NOOP")
		c.Expect("a2 OK")
		rv.Revoked.Store(true)
		start := time.Now()
		if line := c.ReadLine(); line != "* BYE [EXPIRED] Access token no longer valid, log in again." {
			t.Fatalf("got %q, want the revocation BYE", line)
		}
		if d := time.Since(start); d > every+500*time.Millisecond {
			t.Fatalf("BYE %v after the revocation, want within one period (%v)", d, every)
		}
		c.ExpectClosed()
		for _, a := range rv.Asked() {
			if a != "XOAUTH2 alice@example.test "+proxytest.TestToken {
				t.Fatalf("revalidator asked %q, want the session's mechanism, user and token", a)
			}
		}
	})
	t.Run("provider down", func(t *testing.T) {
		rv := &proxytest.Revalidator{Unavailable: true}
		tp := newIMAPLifetimeTest(t, fakeAuthenticator, proxy.LifetimeOptions{Mode: proxy.LifetimeRevalidate, RevalidateEvery: every, Revalidator: rv})
		c := imapTokenLogin(t, tp)
		proxytest.WaitFor(t, "three revalidations", func() bool { return rv.Calls.Load() >= 3 })
		c.Send("a2 NOOP")
		c.Expect("* ECHO NOOP")
		c.Expect("a2 OK")
		if !strings.Contains(tp.logs.String(), "token revalidation failed; the session goes on") {
			t.Fatal("no warning about the failed revalidation")
		}
	})
}

// TestIMAPLifetimeSparesPasswords: a session opened with a password is
// neither revalidated nor ended, while a token session beside it is.
func TestIMAPLifetimeSparesPasswords(t *testing.T) {
	rv := &proxytest.Revalidator{}
	rv.Revoked.Store(true)
	tp := newIMAPLifetimeTest(t, fakeAuthenticator,
		proxy.LifetimeOptions{Mode: proxy.LifetimeRevalidate, RevalidateEvery: 50 * time.Millisecond, Revalidator: rv})
	pw := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	pw.Expect("* OK")
	pw.Send(fmt.Sprintf(`p1 LOGIN %s %s`, proxytest.FakeUser, proxytest.FakeUserPassword))
	pw.Expect("p1 OK")
	tok := imapTokenLogin(t, tp)
	tok.Expect("* BYE [EXPIRED] Access token no longer valid")
	pw.Send("p2 NOOP")
	pw.Expect("* ECHO NOOP")
	pw.Expect("p2 OK")
	for _, a := range rv.Asked() {
		if !strings.HasPrefix(a, "XOAUTH2 ") {
			t.Fatalf("revalidator asked about a password session: %q", strings.Fields(a)[0])
		}
	}
}
