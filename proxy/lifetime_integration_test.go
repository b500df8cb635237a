package proxy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
)

// Session lifetime against the real provider (Hydra), Dovecot and Postfix.

// jwtExpiry reads the exp claim of a JWT (unverified: the test minted it).
func jwtExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct{ Exp int64 }
	if err != nil || json.Unmarshal(raw, &claims) != nil || claims.Exp == 0 {
		t.Fatalf("no exp in the token's claims")
	}
	return time.Unix(claims.Exp, 0)
}

// userinfoAuthenticator validates tokens with the provider's userinfo
// endpoint, as oauth2.mode userinfo does.
func userinfoAuthenticator(idp *testenv.Hydra) auth.TokenAuthenticator {
	return auth.TokenAuthenticator{
		Validator: auth.UserinfoValidator{URL: idp.UserinfoURL, Timeout: 2 * time.Second},
		Policy:    auth.Policy{UsernameClaim: "email"},
		Source:    "userinfo",
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
	tp := newTestProxy(t, Options{
		Authenticator: userinfoAuthenticator(idp),
		Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
		IMAPBackend:   Backend{Address: dc.IMAPAddr, TLS: TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"},
		Lifetime:      LifetimeOptions{Mode: LifetimeToken},
	})
	token := idp.MintToken(t, "alice@example.test", testenv.TokenOptions{Lifetime: 5 * time.Second})
	exp := jwtExpiry(t, token)
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
			rv := &countingRevalidator{a: userinfoAuthenticator(idp)}
			tp := newTestProxy(t, Options{
				Authenticator: userinfoAuthenticator(idp),
				Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
				IMAPBackend:   Backend{Address: dc.IMAPAddr, TLS: TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"},
				Lifetime:      LifetimeOptions{Mode: LifetimeRevalidate, RevalidateEvery: every, Revalidator: rv},
			})
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

// TestIntegrationSMTPLifetimeToken: with session_lifetime token a
// submission session works until its token's exp, and its next command
// after that gets 421 4.7.0 and the connection closes.
func TestIntegrationSMTPLifetimeToken(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	it := newSMTPIntegration(t, pf, Backend{TLS: TLSStartTLS}, func(o *Options) {
		o.Lifetime = LifetimeOptions{Mode: LifetimeToken}
	})
	token := it.idp.MintToken(t, "alice@example.test", testenv.TokenOptions{Lifetime: 5 * time.Second})
	exp := jwtExpiry(t, token)
	c := it.tp.dialSubmissions(t)
	c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", token), "235 ")
	subject := uniqueSubject("lifetime")
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<alice@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	c.SMTPCmd("Subject: "+subject+"\r\n\r\nbefore the token expired\r\n.", "250 2.0.0")
	if time.Now().After(exp) {
		t.Fatal("the token expired before the first message was sent; the test is too slow")
	}
	time.Sleep(time.Until(exp) + 200*time.Millisecond) // let the token expire
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "421 4.7.0 Access token expired")
	c.ExpectClosed()
	it.dc.WaitMessage(t, "alice@example.test", "Subject: "+subject, 15*time.Second)
	if strings.Contains(it.tp.logs.String(), token) {
		t.Fatal("the token appears in mailgate's log")
	}
}
