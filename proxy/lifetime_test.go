package proxy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
)

// Session lifetime (Options.Lifetime) against the fake backends.

// expiringAuthenticator is fakeAuthenticator with every identity expiring at exp.
func expiringAuthenticator(exp time.Time) Authenticator {
	return AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
		id, err := fakeAuthenticator.Authenticate(ctx, c)
		id.Expiry = exp
		return id, err
	})
}

// testRevalidator accepts the token until revoke is called, then refuses it
// (or, with unavailable, never answers). It records what it was asked.
type testRevalidator struct {
	revoked     atomic.Bool
	unavailable bool
	calls       atomic.Int32 // answered calls
	refusals    atomic.Int32
	mu          sync.Mutex
	seen        []string // "mechanism user token"
}

func (r *testRevalidator) Revalidate(ctx context.Context, c auth.Credentials) error {
	r.mu.Lock()
	r.seen = append(r.seen, c.Mechanism+" "+c.User+" "+c.Token)
	r.mu.Unlock()
	defer r.calls.Add(1)
	switch {
	case r.unavailable:
		return fmt.Errorf("%w: test provider down", auth.ErrUnavailable)
	case r.revoked.Load():
		r.refusals.Add(1)
		return fmt.Errorf("%w: test revocation", auth.ErrInvalidCredentials)
	}
	return nil
}

func (r *testRevalidator) asked() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func newIMAPLifetimeTest(t *testing.T, authn Authenticator, lt LifetimeOptions) *testProxy {
	t.Helper()
	fb := proxytest.StartFakeIMAPBackend(t)
	return newTestProxy(t, Options{
		Authenticator: authn,
		IMAPBackend:   Backend{Address: fb.Addr, TLS: TLSNone, ClientIP: "id"},
		Lifetime:      lt,
		Passwords:     PasswordOptions{IMAP: true},
	})
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
	tp := newIMAPLifetimeTest(t, expiringAuthenticator(exp), LifetimeOptions{Mode: LifetimeToken})
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
		tp := newIMAPLifetimeTest(t, expiringAuthenticator(past), LifetimeOptions{Mode: LifetimeToken})
		c := imapTokenLogin(t, tp)
		c.Expect("* BYE [EXPIRED]")
		c.ExpectClosed()
	})
	for _, mode := range []string{"", LifetimeNone} {
		t.Run(fmt.Sprintf("mode %q", mode), func(t *testing.T) {
			tp := newIMAPLifetimeTest(t, expiringAuthenticator(past), LifetimeOptions{Mode: mode})
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
		rv := &testRevalidator{}
		tp := newIMAPLifetimeTest(t, fakeAuthenticator, LifetimeOptions{Mode: LifetimeRevalidate, RevalidateEvery: every, Revalidator: rv})
		c := imapTokenLogin(t, tp)
		proxytest.WaitFor(t, "two revalidations", func() bool { return rv.calls.Load() >= 2 })
		c.Send("a2 NOOP")
		c.Expect("* ECHO NOOP")
		c.Expect("a2 OK")
		rv.revoked.Store(true)
		start := time.Now()
		if line := c.ReadLine(); line != "* BYE [EXPIRED] Access token no longer valid, log in again." {
			t.Fatalf("got %q, want the revocation BYE", line)
		}
		if d := time.Since(start); d > every+500*time.Millisecond {
			t.Fatalf("BYE %v after the revocation, want within one period (%v)", d, every)
		}
		c.ExpectClosed()
		for _, a := range rv.asked() {
			if a != "XOAUTH2 alice@example.test "+proxytest.TestToken {
				t.Fatalf("revalidator asked %q, want the session's mechanism, user and token", a)
			}
		}
	})
	t.Run("provider down", func(t *testing.T) {
		rv := &testRevalidator{unavailable: true}
		tp := newIMAPLifetimeTest(t, fakeAuthenticator, LifetimeOptions{Mode: LifetimeRevalidate, RevalidateEvery: every, Revalidator: rv})
		c := imapTokenLogin(t, tp)
		proxytest.WaitFor(t, "three revalidations", func() bool { return rv.calls.Load() >= 3 })
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
	rv := &testRevalidator{}
	rv.revoked.Store(true)
	tp := newIMAPLifetimeTest(t, fakeAuthenticator,
		LifetimeOptions{Mode: LifetimeRevalidate, RevalidateEvery: 50 * time.Millisecond, Revalidator: rv})
	pw := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	pw.Expect("* OK")
	pw.Send(fmt.Sprintf(`p1 LOGIN %s %s`, proxytest.FakeUser, proxytest.FakeUserPassword))
	pw.Expect("p1 OK")
	tok := imapTokenLogin(t, tp)
	tok.Expect("* BYE [EXPIRED] Access token no longer valid")
	pw.Send("p2 NOOP")
	pw.Expect("* ECHO NOOP")
	pw.Expect("p2 OK")
	for _, a := range rv.asked() {
		if !strings.HasPrefix(a, "XOAUTH2 ") {
			t.Fatalf("revalidator asked about a password session: %q", strings.Fields(a)[0])
		}
	}
}

func newSMTPLifetimeTest(t *testing.T, authn Authenticator, lt LifetimeOptions) (*smtpTestProxy, *proxytest.FakeSMTPBackend) {
	t.Helper()
	return newSMTPTest(t, proxytest.FakeSMTPOptions{}, func(o *Options) {
		o.Authenticator, o.Lifetime = authn, lt
	})
}

// TestSMTPLifetimeToken: after the token's expiry the next command outside a
// mail transaction gets 421 4.7.0 and the connection closes; a transaction
// begun before the expiry is finished first.
func TestSMTPLifetimeToken(t *testing.T) {
	t.Run("next command", func(t *testing.T) {
		exp := time.Now().Add(500 * time.Millisecond)
		tp, fb := newSMTPLifetimeTest(t, expiringAuthenticator(exp), LifetimeOptions{Mode: LifetimeToken})
		c := tp.dialSubmissions(t)
		c.SMTPLogin()
		c.SMTPCmd("NOOP", "250 ")
		time.Sleep(time.Until(exp) + 100*time.Millisecond) // let the token expire
		c.SMTPCmd("MAIL FROM:<alice@example.test>", "421 4.7.0 Access token expired")
		c.ExpectClosed()
		if fb.SawCommand("MAIL") {
			t.Fatal("the backend saw the MAIL sent after the expiry")
		}
	})
	t.Run("transaction finishes", func(t *testing.T) {
		exp := time.Now().Add(500 * time.Millisecond)
		tp, fb := newSMTPLifetimeTest(t, expiringAuthenticator(exp), LifetimeOptions{Mode: LifetimeToken})
		c := tp.dialSubmissions(t)
		c.SMTPLogin()
		c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
		time.Sleep(time.Until(exp) + 100*time.Millisecond)
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

// TestSMTPLifetimeRevalidate: once the provider refuses the token, the next
// command gets 421 4.7.0; sessions are unaffected while it accepts it.
func TestSMTPLifetimeRevalidate(t *testing.T) {
	rv := &testRevalidator{}
	tp, _ := newSMTPLifetimeTest(t, fakeAuthenticator, LifetimeOptions{Mode: LifetimeRevalidate, RevalidateEvery: 50 * time.Millisecond, Revalidator: rv})
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	proxytest.WaitFor(t, "two revalidations", func() bool { return rv.calls.Load() >= 2 })
	c.SMTPCmd("NOOP", "250 ")
	rv.revoked.Store(true)
	proxytest.WaitFor(t, "a refused revalidation", func() bool { return rv.refusals.Load() >= 1 })
	c.SMTPCmd("NOOP", "421 4.7.0 Access token no longer valid")
	c.ExpectClosed()
	for _, a := range rv.asked() {
		if a != "XOAUTH2 alice@example.test "+proxytest.TestToken {
			t.Fatalf("revalidator asked %q", a)
		}
	}
}

// TestLifetimeOptionsChecked: New refuses an unknown mode and revalidate
// without a Revalidator.
func TestLifetimeOptionsChecked(t *testing.T) {
	serverTLS, _ := proxytest.TLSPair(t)
	for _, tt := range []struct {
		lt      LifetimeOptions
		wantErr bool
	}{
		{LifetimeOptions{}, false},
		{LifetimeOptions{Mode: LifetimeToken}, false},
		{LifetimeOptions{Mode: LifetimeRevalidate, Revalidator: &testRevalidator{}}, false},
		{LifetimeOptions{Mode: LifetimeRevalidate}, true},
		{LifetimeOptions{Mode: "forever"}, true},
	} {
		_, err := New(Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS, Lifetime: tt.lt})
		if (err != nil) != tt.wantErr {
			t.Errorf("New(Lifetime %+v) = %v, want error %v", tt.lt, err, tt.wantErr)
		}
	}
}
