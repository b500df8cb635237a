package imap

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// idleUntilBye logs in with token over XOAUTH2, selects INBOX, enters IDLE
// and returns the BYE line and when it arrived.
func idleUntilBye(t *testing.T, tp *testProxy, token string, idle func()) (string, time.Time) {
	t.Helper()
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", token))
	c.Expect("a1 OK [CAPABILITY")
	c.Send("a2 SELECT INBOX")
	for line := c.ReadLine(); !strings.HasPrefix(line, "a2 "); line = c.ReadLine() {
	}
	c.Send("a3 IDLE")
	c.Expect("+ idling")
	if idle != nil {
		idle()
	}
	for {
		line := c.ReadLine()
		if strings.HasPrefix(line, "* BYE") {
			at := time.Now()
			c.ExpectClosed()
			return line, at
		}
		if !strings.HasPrefix(line, "* ") {
			t.Fatalf("got %q while idling", line)
		}
	}
}

// TestIntegrationIMAPLifetimeTokenIdle: with session_lifetime token an IMAP
// client in IDLE gets "* BYE [EXPIRED]" within a second of its token's exp.
func TestIntegrationIMAPLifetimeTokenIdle(t *testing.T) {
	dc, idp := testenv.SharedDovecot(t), testenv.SharedHydra(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: proxytest.UserinfoAuthenticator(idp.UserinfoURL),
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
		Lifetime:      proxy.LifetimeOptions{Mode: proxy.LifetimeToken},
	}, Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"}})
	token := idp.MintToken(t, "alice@example.test", testenv.TokenOptions{Lifetime: 5 * time.Second})
	exp := proxytest.JWTExpiry(t, token)
	bye, at := idleUntilBye(t, tp, token, nil)
	if bye != "* BYE [EXPIRED] Access token expired, log in again." {
		t.Fatalf("got %q, want the expiry BYE", bye)
	}
	t.Logf("BYE %v after the token's exp", at.Sub(exp))
	if d := at.Sub(exp); d < 0 || d > time.Second {
		t.Fatalf("BYE %v after the token's exp, want within a second", d)
	}
	if strings.Contains(tp.logs.String(), token) {
		t.Fatal("the token appears in mailgate's log")
	}
}

// TestIntegrationIMAPLifetimeRevoked: with session_lifetime revalidate
// (every second here) an IDLE session whose token is revoked at the provider
// gets "* BYE [EXPIRED]" within one revalidation period; until then the
// token is revalidated without ending the session.
func TestIntegrationIMAPLifetimeRevoked(t *testing.T) {
	const every = time.Second
	dc, idp := testenv.SharedDovecot(t), testenv.SharedHydra(t)
	for _, tt := range []struct {
		name   string
		opaque bool
	}{{"jwt", false}, {"opaque", true}} {
		t.Run(tt.name, func(t *testing.T) {
			rv := &countingRevalidator{a: proxytest.UserinfoAuthenticator(idp.UserinfoURL)}
			tp := newTestProxy(t, proxy.Options{
				Authenticator: proxytest.UserinfoAuthenticator(idp.UserinfoURL),
				Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
				Lifetime:      proxy.LifetimeOptions{Mode: proxy.LifetimeRevalidate, RevalidateEvery: every, Revalidator: rv},
			}, Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"}})
			token := idp.MintToken(t, "alice@example.test", testenv.TokenOptions{Opaque: tt.opaque})
			var revoked time.Time
			bye, at := idleUntilBye(t, tp, token, func() {
				proxytest.WaitFor(t, "a revalidation", func() bool { return rv.calls.Load() >= 1 })
				idp.Revoke(t, token) // returns once userinfo refuses the token
				revoked = time.Now()
			})
			if bye != "* BYE [EXPIRED] Access token no longer valid, log in again." {
				t.Fatalf("got %q, want the revocation BYE", bye)
			}
			t.Logf("BYE %v after the revocation", at.Sub(revoked))
			if d := at.Sub(revoked); d > every+time.Second {
				t.Fatalf("BYE %v after the revocation, want within one period (%v) and the provider call", d, every)
			}
			if strings.Contains(tp.logs.String(), token) {
				t.Fatal("the token appears in mailgate's log")
			}
		})
	}
}

// countingRevalidator is what cmd/mailgate hands over: the token
// authenticator without cache; it counts the calls.
type countingRevalidator struct {
	a     auth.TokenAuthenticator
	calls atomic.Int32
}

func (r *countingRevalidator) Revalidate(ctx context.Context, c auth.Credentials) error {
	defer r.calls.Add(1)
	_, err := r.a.Authenticate(ctx, c)
	return err
}
