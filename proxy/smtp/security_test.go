package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// Security regressions. Each test names the attack it keeps out.

// TestSecuritySMTPStartTLSInjection: commands pipelined in plaintext behind
// STARTTLS (CVE-2011-0411 class) must never run inside the TLS session:
// mailgate drops what it had buffered before the handshake, so after TLS the
// client is neither authenticated nor in a transaction, and the injected
// AUTH never reached the authenticator or the backend.
func TestSecuritySMTPStartTLSInjection(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	probes := fb.ConnCount()
	for name, injected := range map[string]string{
		"auth":      "AUTH XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken) + "\r\n",
		"mail":      "MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n",
		"auth+mail": "AUTH XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken) + "\r\nMAIL FROM:<alice@example.test>\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := proxytest.DialPlain(t, tp.plainAddr)
			c.SMTPExpect("220 ")
			c.SMTPEHLO()
			c.C.Write([]byte("STARTTLS\r\n" + injected))
			c.SMTPExpect("220 2.0.0 Ready to start TLS")
			tc := tls.Client(c.C, tp.clientTLS)
			if err := tc.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			c.C, c.BR = tc, bufio.NewReader(tc)
			// The first reply inside TLS is the one to our EHLO.
			exts := c.SMTPEHLO()
			if !proxytest.HasExt(exts, "AUTH") {
				t.Fatalf("EHLO after TLS = %q, want AUTH offered (not authenticated)", exts)
			}
			c.SMTPCmd("RCPT TO:<bob@example.test>", "530 5.7.0 Authentication required") // no transaction open
			c.SMTPCmd("MAIL FROM:<alice@example.test>", "530 5.7.0 Authentication required")
			c.SMTPCmd("QUIT", "221 ")
		})
	}
	if n := tp.authCalls(); n != 0 {
		t.Fatalf("the injected AUTH reached the authenticator (%d calls)", n)
	}
	if n := fb.ConnCount(); n != probes {
		t.Fatalf("the backend was contacted %d times, want %d (capability probes only)", n, probes)
	}
}

// smugglingSeparators are the end-of-data look-alikes of SMTP smuggling
// (SEC Consult, 2023): each must stay message content, never end the
// message, neither in mailgate nor at Postfix.
var smugglingSeparators = map[string]string{
	"LF.LF":     "\n.\n",
	"CRLF.LF":   "\r\n.\n",
	"LF.CRLF":   "\n.\r\n",
	"CR.CR":     "\r.\r",
	"CR.CRLF":   "\r.\r\n",
	"CRLF.CR":   "\r\n.\r",
	"CR.LF":     "\r.\n",
	"LF.CR":     "\n.\r",
	"CRLF.NUL":  "\r\n.\x00\r\n",
	"CRLF.SPCR": "\r\n. \r\n",
}

// TestSecuritySMTPSmuggling: a body holding an end-of-data look-alike
// followed by a second transaction is relayed as one message: the client
// hears one 250 for it, Postfix's session counts one MAIL, one RCPT and one
// DATA, and the Maildir holds one message (the smuggled one only as content
// of the first, never on its own).
func TestSecuritySMTPSmuggling(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	dc := pf.Dovecot
	tp := newSMTPTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
	}, Options{Backend: proxy.Backend{Address: pf.SubmissionAddr, TLS: proxy.TLSStartTLS, TLSConfig: pf.TLSConfig()}, Hostname: "mailgate.test", EnforceSender: true})
	for name, sep := range smugglingSeparators {
		t.Run(name, func(t *testing.T) {
			outer := proxytest.UniqueSubject("smuggle-outer-" + name)
			inner := proxytest.UniqueSubject("smuggle-inner-" + name)
			mark := pf.Log.Mark()
			c := tp.dialSubmissions(t)
			c.SMTPLogin()
			c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
			c.SMTPCmd("RCPT TO:<alice@example.test>", "250 ")
			c.SMTPCmd("DATA", "354 ")
			c.C.Write([]byte("From: alice@example.test\r\nTo: alice@example.test\r\nSubject: " + outer + "\r\n\r\n" +
				"before the separator" + sep +
				"MAIL FROM:<alice@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n" +
				"From: alice@example.test\r\nTo: alice@example.test\r\nSubject: " + inner + "\r\n\r\nsmuggled body\r\n"))
			c.SMTPCmd(".", "250 2.0.0 Ok: queued as ")
			// Nothing else was answered: the next reply is the NOOP's.
			c.SMTPCmd("NOOP", "250 2.0.0 Ok") // Postfix's own reply
			c.SMTPCmd("QUIT", "221 ")
			c.ExpectClosed()

			summary := pf.Log.WaitSince(t, mark, " auth=1 ", 15*time.Second)
			if !strings.Contains(summary, " mail=1 rcpt=1 data=1 ") {
				t.Fatalf("Postfix's session summary %q, want exactly one MAIL, RCPT and DATA", summary)
			}
			dc.WaitMessage(t, "alice@example.test", outer, 15*time.Second)
			files := maildirFilesWith(t, dc, "alice@example.test", inner)
			if len(files) != 1 || !bytes.Contains(files[0], []byte("Subject: "+outer)) {
				t.Fatalf("%d messages hold the smuggled subject; want only the outer message", len(files))
			}
		})
	}
}

// maildirFilesWith returns every message of user's INBOX holding substr.
func maildirFilesWith(t *testing.T, dc *testenv.Dovecot, user, substr string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, sub := range []string{"new", "cur"} {
		files, _ := filepath.Glob(filepath.Join(dc.MaildirFor(user), sub, "*"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(substr)) {
				out = append(out, b)
			}
		}
	}
	return out
}

// TestSecurityAuthBeforeTLS: no credential is accepted, or even looked at,
// before TLS: SMTP does not offer AUTH and answers 523.
func TestSecurityAuthBeforeTLS(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	probes := fb.ConnCount()
	c := proxytest.DialPlain(t, tp.plainAddr)
	c.SMTPExpect("220 ")
	if exts := c.SMTPEHLO(); proxytest.HasExt(exts, "AUTH") || !proxytest.HasExt(exts, "STARTTLS") {
		t.Fatalf("EHLO before TLS = %q, want STARTTLS and no AUTH", exts)
	}
	c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", proxytest.TestToken), "523 5.7.10 TLS is required")
	c.SMTPCmd("AUTH OAUTHBEARER", "523 5.7.10 TLS is required")
	c.SMTPCmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice@example.test\x00password")), "523 5.7.10 TLS is required")
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "530 5.7.0 Must issue a STARTTLS command first")
	if n := tp.authCalls(); n != 0 || fb.ConnCount() != probes {
		t.Fatalf("before TLS: %d authenticator calls, %d backend connections beyond the probes; want none", n, fb.ConnCount()-probes)
	}
}

// TestSecuritySMTPMailBeforeAuth: no transaction without a login, on either
// listener, after a refused AUTH, after a cancelled one, and after STARTTLS
// (which forgets everything); the backend is never contacted.
func TestSecuritySMTPMailBeforeAuth(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	probes := fb.ConnCount()
	for name, setup := range map[string]func(t *testing.T) *proxytest.Conn{
		"587 after STARTTLS": tp.dialSubmission,
		"465":                tp.dialSubmissions,
		"after a refused AUTH": func(t *testing.T) *proxytest.Conn {
			c := tp.dialSubmissions(t)
			c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", proxytest.BadToken), "334 ")
			c.SMTPCmd("", "535 5.7.8")
			return c
		},
		"after a cancelled AUTH": func(t *testing.T) *proxytest.Conn {
			c := tp.dialSubmissions(t)
			c.SMTPCmd("AUTH XOAUTH2", "334 ")
			c.SMTPCmd("*", "501 5.7.0")
			return c
		},
		"after a malformed AUTH": func(t *testing.T) *proxytest.Conn {
			c := tp.dialSubmissions(t)
			c.SMTPCmd("AUTH XOAUTH2 "+base64.StdEncoding.EncodeToString([]byte("user=alice@example.test\x01auth=Basic x\x01\x01")), "501 5.5.2")
			return c
		},
		"after a MAIL before STARTTLS": func(t *testing.T) *proxytest.Conn {
			c := proxytest.DialPlain(t, tp.plainAddr)
			c.SMTPExpect("220 ")
			c.SMTPEHLO()
			c.SMTPCmd("MAIL FROM:<alice@example.test>", "530 5.7.0")
			c.SMTPStartTLS(tp.clientTLS)
			c.SMTPEHLO()
			return c
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := setup(t)
			c.SMTPCmd("MAIL FROM:<alice@example.test>", "530 5.7.0 Authentication required")
			c.SMTPCmd("RCPT TO:<bob@example.test>", "530 5.7.0 Authentication required")
			c.SMTPCmd("DATA", "530 5.7.0 Authentication required")
			c.C.Write([]byte("BDAT 5 LAST\r\nhello"))
			c.SMTPExpect("530 5.7.0 Authentication required") // the chunk was read and dropped
			c.SMTPCmd("QUIT", "221 ")
		})
	}
	if n := fb.ConnCount(); n != probes {
		t.Fatalf("the backend was contacted %d times, want %d (capability probes only)", n, probes)
	}
	if fb.SawCommand("MAIL") {
		t.Fatal("a MAIL reached the backend")
	}
}

// TestSecurityTokenOfAnotherUser: a real token of one user presented under
// another user's name is refused (the user name claimed
// is checked against the token's email), and the backend never hears of
// either user; the same token under its own name (or none) works.
func TestSecurityTokenOfAnotherUser(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	dc := pf.Dovecot
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

	smtpTP := newSMTPTestProxy(t, proxy.Options{
		Authenticator: authn,
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
	}, Options{Backend: proxy.Backend{Address: pf.SubmissionAddr, TLS: proxy.TLSStartTLS, TLSConfig: pf.TLSConfig()}, Hostname: "mailgate.test", EnforceSender: true})
	type attempt struct{ claimed, token string }
	var attempts []attempt
	for _, tok := range alices {
		attempts = append(attempts, attempt{"bob@example.test", tok}, attempt{"BOB@example.test", tok}, attempt{"carol@example.test", tok})
	}
	attempts = append(attempts, attempt{"alice@example.test", bobs}, attempt{"alice@example.test ", bobs})

	for i, a := range attempts {
		for _, mech := range []string{auth.MechXOAUTH2, auth.MechOAUTHBEARER} {
			ir := proxytest.XOAUTH2(a.claimed, a.token)
			if mech == auth.MechOAUTHBEARER {
				ir = proxytest.OAuthBearer(a.claimed, a.token)
			}
			t.Run(fmt.Sprintf("%d %s smtp", i, mech), func(t *testing.T) {
				mark := pf.Log.Mark()
				c := smtpTP.dialSubmissions(t)
				c.SMTPCmd("AUTH "+mech+" "+ir, "334 ")
				c.SMTPCmd("", "535 5.7.8 Authentication credentials invalid")
				c.SMTPCmd("MAIL FROM:<"+strings.TrimSpace(a.claimed)+">", "530 5.7.0")
				if log := pf.Log.Since(mark); postfixLogin.MatchString(log) {
					t.Fatalf("Postfix was asked to log someone in:\n%s", log)
				}
			})
		}
	}
	t.Run("own name works", func(t *testing.T) {
		for _, claimed := range []string{"alice@example.test", "", "Alice@Example.Test"} {
			s := smtpTP.dialSubmissions(t)
			s.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2(claimed, alices["opaque"]), "235 2.7.0")
		}
	})
}

// TestSecurityUnsafeClaimNeverReachesBackend: a provider vouching for an
// email claim with CR, LF, NUL, quotes and the like (auth.Policy's
// SafeMailbox path), or a client claiming such a user name, gets a plain
// authentication failure; nothing of it reaches a backend line (the fake
// backend records every line, and is not even dialled beyond its probe).
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
	smtpTP, smtpFB := newSMTPTest(t, proxytest.FakeSMTPOptions{XCLIENT: true}, func(o *proxy.Options, so *Options) {
		o.Authenticator = authn
		so.Backend.Login = "xclient"
		so.Backend.ClientIP = "xclient"
	})
	smtpProbes := smtpFB.ConnCount()

	for _, name := range names {
		claim := proxytest.UnsafeClaims[name]
		token := "claim-token-" + strings.ReplaceAll(name, " ", "-")
		t.Run("email claim "+name, func(t *testing.T) {
			for _, mech := range []string{auth.MechXOAUTH2, auth.MechOAUTHBEARER} {
				ir := proxytest.XOAUTH2("", token)
				if mech == auth.MechOAUTHBEARER {
					ir = proxytest.OAuthBearer("", token)
				}
				s := smtpTP.dialSubmissions(t)
				s.SMTPCmd("AUTH "+mech+" "+ir, "334 ")
				s.SMTPCmd("", "535 5.7.8 Authentication credentials invalid")
			}
		})
		t.Run("claimed user "+name, func(t *testing.T) {
			// A good token for alice under an unsafe claimed name: refused
			// as malformed (CR, LF, NUL) or as another user; either way
			// the name goes nowhere.
			s := smtpTP.dialSubmissions(t)
			s.Send("AUTH OAUTHBEARER " + proxytest.OAuthBearer(claim, "alice-claim-token"))
			if code, _ := s.SMTPReply(); code == 334 {
				s.SMTPCmd("", "535 5.7.8")
			} else if code != 501 {
				t.Fatalf("AUTH with claimed user %q = %d, want 501 or the error challenge", claim, code)
			}
		})
	}
	proxytest.CheckBackendLines(t, "SMTP", smtpFB.Received(), "INJECTED")
	if n := smtpFB.ConnCount(); n != smtpProbes {
		t.Errorf("the SMTP backend was dialled %d times beyond the capability probes", n-smtpProbes)
	}
}

// TestSecurityUnsafeIdentityNeverReachesBackend: defence in depth. An
// proxy.Authenticator that breaks the auth.Identity contract (User safe to put on
// a protocol line, auth.SafeMailbox) must not get such a name to a backend:
// the login is refused and the backend is not asked. The production
// authenticators keep the contract (auth.Policy), but proxy.Options.Authenticator
// is pluggable and password passthrough builds identities from what a
// client typed.
func TestSecurityUnsafeIdentityNeverReachesBackend(t *testing.T) {
	for name, claim := range proxytest.UnsafeClaims {
		t.Run(name, func(t *testing.T) {
			bad := proxy.AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
				return auth.Identity{User: claim, Mechanism: c.Mechanism, Source: "broken"}, nil
			})
			sfb := proxytest.StartFakeSMTPBackend(t, proxytest.FakeSMTPOptions{XCLIENT: true})
			stp := newSMTPTestProxy(t, proxy.Options{Authenticator: bad}, Options{Backend: proxy.Backend{Address: sfb.Addr, TLS: proxy.TLSNone, Login: "xclient", ClientIP: "xclient"}, Hostname: "mailgate.test"})
			probes := sfb.ConnCount()
			s := stp.dialSubmissions(t)
			s.Send("AUTH XOAUTH2 " + proxytest.XOAUTH2("", proxytest.TestToken))
			if code, lines := s.SMTPReply(); code/100 == 2 {
				t.Errorf("AUTH with an unsafe identity = %d %q, want a refusal", code, lines)
			}
			if sfb.ConnCount() != probes {
				t.Errorf("backend dialled for an unsafe identity: SMTP %d", sfb.ConnCount()-probes)
			}
			proxytest.CheckBackendLines(t, "SMTP", sfb.Received(), claim)
		})
	}
}

// TestSecurityMasterPasswordNeverInClientReply: whatever happens (a good
// login, an unknown mailbox, a wrong master password, a refused sender, a
// malformed or cancelled exchange, a backend reply passed on verbatim), the
// client never receives the master password or a PLAIN message carrying it.
func TestSecurityMasterPasswordNeverInClientReply(t *testing.T) {
	// Own daemons: the failed master logins here must not put the shared
	// Dovecot's per-IP penalty on 127.0.0.1.
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{})
	pf := testenv.StartPostfix(t, dc, testenv.PostfixOptions{})
	good := proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword}
	wrong := proxy.Master{User: dc.MasterUser, Password: "wrong-" + dc.MasterPassword}
	registerMasterSecrets(good)
	registerMasterSecrets(wrong)
	// Dovecot delays repeated failures by seconds: mailgate gives up on the
	// backend (and answers) well before the test client's 10 s read deadline.
	lim := proxy.Limits{DialTimeout: 4 * time.Second}
	smtpOpts := func(m proxy.Master) proxy.Options {
		return proxy.Options{Authenticator: fakeAuthenticator, Master: m, Limits: lim}
	}
	fo := Options{Backend: proxy.Backend{Address: pf.SubmissionAddr, TLS: proxy.TLSStartTLS, TLSConfig: pf.TLSConfig()},
		Hostname: "mailgate.test", EnforceSender: true}
	smtpGood, smtpWrong := newSMTPTestProxy(t, smtpOpts(good), fo), newSMTPTestProxy(t, smtpOpts(wrong), fo)

	var received []*proxytest.RecordConn
	smtpSession := func(tp *smtpTestProxy, token string, more ...string) {
		c := tp.dialSubmissions(t)
		received = append(received, c.Recorded())
		c.Send("AUTH XOAUTH2 " + proxytest.XOAUTH2("", token))
		c.SMTPReply()
		for _, cmd := range more {
			c.Send(cmd)
			c.SMTPReply()
		}
	}
	// Good logins first: failures later make Dovecot delay logins from 127.0.0.1.
	smtpSession(smtpGood, proxytest.TestToken, "MAIL FROM:<alice@example.test>", "RCPT TO:<alice@example.test>", "DATA",
		"Subject: master password test\r\n\r\nbody\r\n.", "MAIL FROM:<bob@example.test>", "RSET", "VRFY alice", "QUIT")
	smtpSession(smtpGood, proxytest.TestToken, "MAIL FROM:<alice@example.test>", "RCPT TO:<nobody-at-all@example.test>", "QUIT")
	smtpSession(smtpGood, proxytest.BadToken, "", "MAIL FROM:<alice@example.test>")
	smtpSession(smtpGood, "nobody-token")
	smtpSession(smtpWrong, proxytest.TestToken, "MAIL FROM:<alice@example.test>")

	var all strings.Builder
	for _, rc := range received {
		all.WriteString(rc.String())
	}
	got := all.String()
	if !strings.Contains(got, "235 2.7.0") || !strings.Contains(got, "250 2.0.0 Ok: queued as") {
		t.Fatalf("the good flows did not log in or send; client received:\n%s", got)
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

// TestSecurityNoSecretInLogs: logins that succeed and fail in every way, on
// both protocols, with real tokens (JWT and opaque) and the production
// validator, all logged at debug level; no token, password or SASL message
// may be in any log line. Every test proxy's logs and slog.Default (package
// auth's logger here) go through the suite log, which this and every other
// test proxy's cleanup check (proxytest's logscan.go).
func TestSecurityNoSecretInLogs(t *testing.T) {
	idp := testenv.SharedHydra(t)
	// Own daemons: the failed logins (carol has no mailbox) must not put
	// the shared Dovecot's per-IP penalty on 127.0.0.1.
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{})
	pf := testenv.StartPostfix(t, dc, testenv.PostfixOptions{})
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
	for name, v := range validators {
		t.Run(name, func(t *testing.T) {
			authn := auth.TokenAuthenticator{Validator: v, Policy: auth.Policy{UsernameClaim: "email"}}
			smtpTP := newSMTPTestProxy(t, proxy.Options{
				Authenticator: authn,
				Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
			}, Options{Backend: proxy.Backend{Address: pf.SubmissionAddr, TLS: proxy.TLSStartTLS, TLSConfig: pf.TLSConfig()}, Hostname: "mailgate.test", EnforceSender: true})
			for _, f := range []struct{ claimed, token string }{
				{"alice@example.test", jwt}, {"", opaque}, {"alice@example.test", bobs}, {"", carols},
				{"alice@example.test", "garbage-token-" + name}, {"alice@example.test", jwt + "x"},
			} {
				for _, mech := range []string{auth.MechXOAUTH2, auth.MechOAUTHBEARER} {
					ir := proxytest.XOAUTH2(f.claimed, f.token)
					if mech == auth.MechOAUTHBEARER {
						ir = proxytest.OAuthBearer(f.claimed, f.token)
					}
					s := smtpTP.dialSubmissions(t)
					s.Send("AUTH " + mech + " " + ir)
					if code, _ := s.SMTPReply(); code == 334 {
						s.SMTPCmd("", "535")
					}
					s.SMTPCmd("QUIT", "221")
				}
			}
		})
	}
	if n := proxytest.SuiteLogLines(); n == 0 {
		t.Fatal("nothing was logged: the log scan would see nothing")
	}
	proxytest.CheckSuiteLog(t)
}
