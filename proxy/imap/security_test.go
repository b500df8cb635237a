package imap

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// Security regressions of the IMAP front. Each test names the attack it
// keeps out; proxy/smtp has the same tests for submission.

// TestSecurityAuthBeforeTLS: no credential is taken, and nothing is
// verified, before TLS: IMAP answers NO [PRIVACYREQUIRED] without a
// continuation.
func TestSecurityAuthBeforeTLS(t *testing.T) {
	var calls int
	var mu sync.Mutex
	fb := proxytest.StartFakeIMAPBackend(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: proxy.AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
			mu.Lock()
			calls++
			mu.Unlock()
			return fakeAuthenticator(ctx, c)
		}),
	}, Options{Backend: proxy.Backend{Address: fb.Addr, TLS: proxy.TLSNone}})
	c := proxytest.DialPlain(t, tp.plainAddr)
	if g := c.Expect("* OK [CAPABILITY "); !strings.Contains(g, "LOGINDISABLED") || strings.Contains(g, "AUTH=") {
		t.Fatalf("greeting %q offers authentication before TLS", g)
	}
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	c.Expect("a1 NO [PRIVACYREQUIRED]")
	c.Send("a2 AUTHENTICATE OAUTHBEARER")
	c.Expect("a2 NO [PRIVACYREQUIRED]") // no "+" continuation either
	c.Send("a3 LOGIN alice@example.test password")
	c.Expect("a3 NO [PRIVACYREQUIRED]")
	c.Send("a4 SELECT INBOX")
	c.Expect("a4 BAD")
	mu.Lock()
	defer mu.Unlock()
	if calls != 0 || fb.ConnCount() != 0 {
		t.Fatalf("before TLS: %d authenticator calls, %d backend connections; want none", calls, fb.ConnCount())
	}
}

// TestSecurityTokenOfAnotherUser: a real token of one user presented under
// another user's name is refused (the user name claimed is checked against
// the token's email), and the backend never hears of either user; the same
// token under its own name (or none) works.
func TestSecurityTokenOfAnotherUser(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	idp := testenv.SharedHydra(t)
	authn := auth.TokenAuthenticator{
		Validator: auth.UserinfoValidator{URL: idp.UserinfoURL, Timeout: 5 * time.Second},
		Policy:    auth.Policy{UsernameClaim: "email"},
		Source:    "userinfo",
	}
	mint := func(user string, opts testenv.TokenOptions) string {
		tok := idp.MintToken(t, user, opts)
		proxytest.RegisterSecret("a Hydra token", tok)
		return tok
	}
	alices := map[string]string{"jwt": mint("alice@example.test", testenv.TokenOptions{}), "opaque": mint("alice@example.test", testenv.TokenOptions{Opaque: true})}
	bobs := mint("bob@example.test", testenv.TokenOptions{})

	imapTP := newTestProxy(t, proxy.Options{
		Authenticator: authn,
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
	}, Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"}})
	type attempt struct{ claimed, token string }
	var attempts []attempt
	for _, tok := range alices {
		attempts = append(attempts, attempt{"bob@example.test", tok}, attempt{"BOB@example.test", tok}, attempt{"carol@example.test", tok})
	}
	attempts = append(attempts, attempt{"alice@example.test", bobs}, attempt{"alice@example.test ", bobs})

	src := 50 // each refusal from its own address: Dovecot's per-IP penalty stays out of later tests
	for i, a := range attempts {
		for _, mech := range []string{auth.MechXOAUTH2, auth.MechOAUTHBEARER} {
			ir := proxytest.XOAUTH2(a.claimed, a.token)
			if mech == auth.MechOAUTHBEARER {
				ir = proxytest.OAuthBearer(a.claimed, a.token)
			}
			t.Run(fmt.Sprintf("%d %s imap", i, mech), func(t *testing.T) {
				src++
				mark := dc.Log.Mark()
				c := proxytest.DialFrom(t, "127.0.0."+strconv.Itoa(src), imapTP.tlsAddr)
				c.UpgradeTLS(imapTP.clientTLS)
				c.Expect("* OK")
				c.Send("a1 AUTHENTICATE " + mech + " " + ir)
				c.Expect("+ ")
				c.Send("AQ==")
				if got, want := c.ReadLine(), "a1 NO [AUTHENTICATIONFAILED] Authentication failed."; got != want {
					t.Fatalf("reply %q, want %q", got, want)
				}
				if log := dc.Log.Since(mark); strings.Contains(log, "Master user logging in") {
					t.Fatalf("Dovecot was asked to log someone in:\n%s", log)
				}
			})
		}
	}
	t.Run("own name works", func(t *testing.T) {
		for _, claimed := range []string{"alice@example.test", "", "Alice@Example.Test"} {
			c := proxytest.DialTLS(t, imapTP.tlsAddr, imapTP.clientTLS)
			c.Expect("* OK")
			c.Send("a1 AUTHENTICATE OAUTHBEARER " + proxytest.OAuthBearer(claimed, alices["jwt"]))
			c.Expect("a1 OK [CAPABILITY")
		}
	})
}

// TestSecurityUnsafeClaimNeverReachesBackend: a provider vouching for an
// email claim with CR, LF, NUL, quotes and the like (auth.Policy's
// SafeMailbox path), or a client claiming such a user name, gets a plain
// authentication failure; nothing of it reaches a backend line (the fake
// backend records every line, and is not even dialled).
func TestSecurityUnsafeClaimNeverReachesBackend(t *testing.T) {
	names := make([]string, 0, len(proxytest.UnsafeClaims))
	byToken := map[string]string{"alice-claim-token": "alice@example.test"}
	for name, claim := range proxytest.UnsafeClaims {
		names = append(names, name)
		byToken["claim-token-"+strings.ReplaceAll(name, " ", "-")] = claim
	}
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claim, ok := byToken[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		if !ok {
			http.Error(w, "unknown token", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"sub": "u1", "email": claim, "email_verified": true})
	}))
	defer provider.Close()
	authn := auth.TokenAuthenticator{
		Validator: auth.UserinfoValidator{URL: provider.URL, Timeout: 5 * time.Second},
		Policy:    auth.Policy{UsernameClaim: "email", RequireEmailVerified: true},
	}
	imapFB := proxytest.StartFakeIMAPBackend(t)
	imapTP := newTestProxy(t, proxy.Options{Authenticator: authn}, Options{Backend: proxy.Backend{Address: imapFB.Addr, TLS: proxy.TLSNone, ClientIP: "id"}})

	for _, name := range names {
		claim := proxytest.UnsafeClaims[name]
		token := "claim-token-" + strings.ReplaceAll(name, " ", "-")
		t.Run("email claim "+name, func(t *testing.T) {
			for _, mech := range []string{auth.MechXOAUTH2, auth.MechOAUTHBEARER} {
				ir := proxytest.XOAUTH2("", token)
				if mech == auth.MechOAUTHBEARER {
					ir = proxytest.OAuthBearer("", token)
				}
				c := proxytest.DialTLS(t, imapTP.tlsAddr, imapTP.clientTLS)
				c.Expect("* OK")
				c.Send("a1 AUTHENTICATE " + mech + " " + ir)
				c.Expect("+ ")
				c.Send("AQ==")
				c.Expect("a1 NO [AUTHENTICATIONFAILED] Authentication failed.")
			}
		})
		t.Run("claimed user "+name, func(t *testing.T) {
			// A good token for alice under an unsafe claimed name: refused
			// as malformed (CR, LF, NUL) or as another user; either way
			// the name goes nowhere.
			c := proxytest.DialTLS(t, imapTP.tlsAddr, imapTP.clientTLS)
			c.Expect("* OK")
			c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2(claim, "alice-claim-token"))
			if l := c.ReadLine(); l != "a1 BAD Invalid SASL message." {
				if !strings.HasPrefix(l, "+ ") {
					t.Fatalf("reply %q, want BAD or the error challenge", l)
				}
				c.Send("AQ==")
				c.Expect("a1 NO [AUTHENTICATIONFAILED]")
			}
		})
	}
	proxytest.CheckBackendLines(t, "IMAP", imapFB.Received(), "INJECTED")
	if n := imapFB.ConnCount(); n != 0 {
		t.Errorf("the IMAP backend was dialled %d times for refused claims", n)
	}
}

// TestSecurityUnsafeIdentityNeverReachesBackend: defence in depth. An
// Authenticator that breaks the auth.Identity contract (User safe to put on
// a protocol line, auth.SafeMailbox) must not get such a name to a backend:
// the login is refused and the backend is not asked. The production
// authenticators keep the contract (auth.Policy), but Options.Authenticator
// is pluggable and password passthrough builds identities from what a
// client typed.
func TestSecurityUnsafeIdentityNeverReachesBackend(t *testing.T) {
	for name, claim := range proxytest.UnsafeClaims {
		t.Run(name, func(t *testing.T) {
			bad := proxy.AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
				return auth.Identity{User: claim, Mechanism: c.Mechanism, Source: "broken"}, nil
			})
			fb := proxytest.StartFakeIMAPBackend(t)
			tp := newTestProxy(t, proxy.Options{Authenticator: bad}, Options{Backend: proxy.Backend{Address: fb.Addr, TLS: proxy.TLSNone, ClientIP: "id"}})
			c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
			c.Expect("* OK")
			c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("", proxytest.TestToken))
			c.Expect("a1 NO")
			if fb.ConnCount() != 0 {
				t.Errorf("backend dialled for an unsafe identity: IMAP %d", fb.ConnCount())
			}
			proxytest.CheckBackendLines(t, "IMAP", fb.Received(), claim)
		})
	}
}

// TestSecurityMasterPasswordNeverInClientReply: whatever happens (a good
// login, an unknown mailbox, a wrong master password, a malformed or
// cancelled exchange, a backend reply passed on verbatim), the client never
// receives the master password or a PLAIN message carrying it.
func TestSecurityMasterPasswordNeverInClientReply(t *testing.T) {
	// Own daemon: the failed master logins here must not put the shared
	// Dovecot's per-IP penalty on 127.0.0.1.
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{})
	good := proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword}
	wrong := proxy.Master{User: dc.MasterUser, Password: "wrong-" + dc.MasterPassword}
	registerMasterSecrets(good)
	registerMasterSecrets(wrong)
	// Dovecot delays repeated failures by seconds: mailgate gives up on the
	// backend (and answers) well before the test client's 10 s read deadline.
	lim := proxy.Limits{DialTimeout: 4 * time.Second}
	imapOpts := func(m proxy.Master) proxy.Options {
		return proxy.Options{Authenticator: fakeAuthenticator, Master: m, Limits: lim}
	}
	fo := Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"}}
	imapGood, imapWrong := newTestProxy(t, imapOpts(good), fo), newTestProxy(t, imapOpts(wrong), fo)

	var received []*proxytest.RecordConn
	imapSession := func(tp *testProxy, token string, more ...string) {
		c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
		received = append(received, c.Recorded())
		c.Expect("* OK")
		c.Send(`a0 ID ("name" "test" "x-originating-ip" "6.6.6.6")`)
		c.Expect("* ID")
		c.Expect("a0 OK")
		c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("", token))
		for l := c.ReadLine(); !strings.HasPrefix(l, "a1 "); l = c.ReadLine() {
			if strings.HasPrefix(l, "+ ") {
				c.Send("AQ==") // the dummy response to the error challenge
			}
		}
		for i, cmd := range more {
			tag := "b" + strconv.Itoa(i)
			c.Send(tag + " " + cmd)
			c.ExpectTagged(tag, tag+" ")
		}
	}
	// Good logins first: failures later make Dovecot delay logins from 127.0.0.1.
	imapSession(imapGood, proxytest.TestToken, "CAPABILITY", "SELECT INBOX", "NAMESPACE", "GETQUOTAROOT INBOX", "LOGOUT")
	imapSession(imapGood, proxytest.BadToken)
	imapSession(imapGood, "nobody-token")
	imapSession(imapWrong, proxytest.TestToken)

	var all strings.Builder
	for _, rc := range received {
		all.WriteString(rc.String())
	}
	got := all.String()
	if !strings.Contains(got, "a1 OK") {
		t.Fatalf("the good flow did not log in; client received:\n%s", got)
	}
	for _, m := range []proxy.Master{good, wrong} {
		for _, secret := range []string{m.Password, base64.StdEncoding.EncodeToString([]byte(m.Password))} {
			if strings.Contains(got, secret) {
				t.Errorf("a master password reached a client")
			}
		}
		for _, u := range []string{"alice@example.test", "nobody@example.test"} {
			if strings.Contains(got, base64.StdEncoding.EncodeToString(auth.EncodePLAIN(u, m.User, m.Password))) {
				t.Errorf("a PLAIN message with a master password reached a client")
			}
		}
	}
}

// TestSecurityNoSecretInLogs: logins that succeed and fail in every way,
// with real tokens (JWT and opaque) and the production validator, all
// logged at debug level; no token, password or SASL message may be in any
// log line. Every test proxy's logs and slog.Default (package auth's logger
// here) go through the suite log, which this and every other test proxy's
// cleanup check (proxytest's logscan.go).
func TestSecurityNoSecretInLogs(t *testing.T) {
	t.Run("the scanner finds a secret", func(t *testing.T) {
		canary := "canary-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		proxytest.RegisterSecret("canary", canary)
		found := proxytest.FindingsDuring(func() {
			slog.Debug("canary", "value", canary, "blob", base64.StdEncoding.EncodeToString(auth.EncodeXOAUTH2("a", "b")))
		})
		if len(found) != 2 {
			t.Fatalf("the scanner found %d secrets in a line with 2: %q", len(found), found)
		}
		for _, f := range found {
			if strings.Contains(f, canary) {
				t.Fatalf("the finding repeats the secret: %q", f)
			}
		}
	})

	idp := testenv.SharedHydra(t)
	// Own daemon: the failed logins (carol has no mailbox) must not put
	// the shared Dovecot's per-IP penalty on 127.0.0.1.
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{})
	registerMasterSecrets(proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword})
	proxytest.RegisterSecret("the provider client secret", idp.ClientSecret)
	mint := func(user string, opts testenv.TokenOptions) string {
		tok := idp.MintToken(t, user, opts)
		proxytest.RegisterSecret("a Hydra token", tok)
		return tok
	}
	jwt, opaque := mint("alice@example.test", testenv.TokenOptions{}), mint("alice@example.test", testenv.TokenOptions{Opaque: true})
	bobs := mint("bob@example.test", testenv.TokenOptions{})
	carols := mint("carol@example.test", testenv.TokenOptions{}) // no such mailbox
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	validators := map[string]auth.Validator{
		"userinfo":      auth.UserinfoValidator{URL: idp.UserinfoURL, Timeout: 5 * time.Second},
		"introspection": auth.IntrospectionValidator{URL: idp.IntrospectionURL, ClientID: idp.ClientID, ClientSecret: idp.ClientSecret, Timeout: 5 * time.Second},
		"down":          auth.UserinfoValidator{URL: down.URL, Timeout: 5 * time.Second},
	}
	src := 100
	for name, v := range validators {
		t.Run(name, func(t *testing.T) {
			authn := auth.TokenAuthenticator{Validator: v, Policy: auth.Policy{UsernameClaim: "email"}}
			imapTP := newTestProxy(t, proxy.Options{
				Authenticator: authn,
				Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
			}, Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"}})
			for _, f := range []struct{ claimed, token string }{
				{"alice@example.test", jwt}, {"", opaque}, {"alice@example.test", bobs}, {"", carols},
				{"alice@example.test", "garbage-token-" + name}, {"alice@example.test", jwt + "x"},
			} {
				for _, mech := range []string{auth.MechXOAUTH2, auth.MechOAUTHBEARER} {
					ir := proxytest.XOAUTH2(f.claimed, f.token)
					if mech == auth.MechOAUTHBEARER {
						ir = proxytest.OAuthBearer(f.claimed, f.token)
					}
					src++
					c := proxytest.DialFrom(t, "127.0.0."+strconv.Itoa(src%200+20), imapTP.tlsAddr)
					c.UpgradeTLS(imapTP.clientTLS)
					c.Expect("* OK")
					c.Send("a1 AUTHENTICATE " + mech)
					c.Expect("+ ")
					c.Send(ir)
					if l := c.ReadLine(); strings.HasPrefix(l, "+ ") {
						c.Send("AQ==")
						c.Expect("a1 NO")
					} else if !strings.HasPrefix(l, "a1 ") {
						t.Fatalf("reply %q", l)
					}
					c.Send("a2 LOGOUT")
				}
			}
			// Malformed and cancelled exchanges carrying a token.
			c := proxytest.DialTLS(t, imapTP.tlsAddr, imapTP.clientTLS)
			c.Expect("* OK")
			c.Send("a1 AUTHENTICATE XOAUTH2 " + base64.StdEncoding.EncodeToString([]byte("user=alice@example.test\x01auth=Bearer "+jwt+"\x01\r\n\x01")))
			c.Expect("a1 BAD")
			c.Send("a2 AUTHENTICATE XOAUTH2 " + base64.StdEncoding.EncodeToString([]byte("user=alice@example.test\x01auth=Basic "+jwt+"\x01\x01")))
			c.Expect("a2 BAD")
			c.Send("a3 AUTHENTICATE XOAUTH2 not!base64" + jwt)
			c.Expect("a3 BAD")
		})
	}
	if n := proxytest.SuiteLogLines(); n == 0 {
		t.Fatal("nothing was logged: the log scan would see nothing")
	}
	proxytest.CheckSuiteLog(t)
}
