package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
)

// Security regressions. Each test names the attack it keeps out.

// TestSecuritySMTPStartTLSInjection: commands pipelined in plaintext behind
// STARTTLS (CVE-2011-0411 class) must never run inside the TLS session:
// go-smtp drops what it had buffered before the handshake, so after TLS the
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
			c.SMTPCmd("RCPT TO:<bob@example.test>", "502 5.5.1") // no transaction open
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
	tp := newSMTPTestProxy(t, Options{
		Authenticator: fakeAuthenticator,
		Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
		SMTPBackend:   Backend{Address: pf.SubmissionAddr, TLS: TLSStartTLS, TLSConfig: pf.TLSConfig()},
		SMTP:          SMTPOptions{Hostname: "mailgate.test", EnforceSender: true},
	})
	for name, sep := range smugglingSeparators {
		t.Run(name, func(t *testing.T) {
			outer := uniqueSubject("smuggle-outer-" + name)
			inner := uniqueSubject("smuggle-inner-" + name)
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
			c.SMTPCmd("NOOP", "250 2.0.0 I have successfully done nothing")
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
// before TLS: IMAP answers NO [PRIVACYREQUIRED] without a continuation,
// SMTP does not offer AUTH and answers 523.
func TestSecurityAuthBeforeTLS(t *testing.T) {
	t.Run("imap", func(t *testing.T) {
		var calls int
		var mu sync.Mutex
		fb := proxytest.StartFakeIMAPBackend(t)
		tp := newTestProxy(t, Options{
			Authenticator: AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
				mu.Lock()
				calls++
				mu.Unlock()
				return fakeAuthenticator(ctx, c)
			}),
			IMAPBackend: Backend{Address: fb.Addr, TLS: TLSNone},
		})
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
	})
	t.Run("smtp", func(t *testing.T) {
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
	})
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
			c.SMTPCmd("*", "501 5.0.0")
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
			c.SMTPCmd("RCPT TO:<bob@example.test>", "502 5.5.1")
			c.SMTPCmd("DATA", "502 5.5.1")
			c.C.Write([]byte("BDAT 5 LAST\r\nhello"))
			c.SMTPExpect("502 5.5.1")
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
// another user's name is refused on both protocols (the user name claimed
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

	imapTP := newTestProxy(t, Options{
		Authenticator: authn,
		Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
		IMAPBackend:   Backend{Address: dc.IMAPAddr, TLS: TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"},
	})
	smtpTP := newSMTPTestProxy(t, Options{
		Authenticator: authn,
		Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
		SMTPBackend:   Backend{Address: pf.SubmissionAddr, TLS: TLSStartTLS, TLSConfig: pf.TLSConfig()},
		SMTP:          SMTPOptions{Hostname: "mailgate.test", EnforceSender: true},
	})
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
			c := proxytest.DialTLS(t, imapTP.tlsAddr, imapTP.clientTLS)
			c.Expect("* OK")
			c.Send("a1 AUTHENTICATE OAUTHBEARER " + proxytest.OAuthBearer(claimed, alices["jwt"]))
			c.Expect("a1 OK [CAPABILITY")
			s := smtpTP.dialSubmissions(t)
			s.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2(claimed, alices["opaque"]), "235 2.0.0")
		}
	})
}

// unsafeClaims are email claims (or user names) that would inject
// something if they reached a protocol line as they are.
var unsafeClaims = map[string]string{
	"CRLF":         "alice@example.test\r\nINJECTED DELETE INBOX",
	"LF":           "alice@example.test\nINJECTED DELETE INBOX",
	"CR":           "alice@example.test\rINJECTED DELETE INBOX",
	"NUL":          "alice@example.test\x00INJECTED\x00master",
	"quote":        `alice@example.test" "x-originating-ip" "INJECTED`,
	"backslash":    `alice@example.test\INJECTED`,
	"space":        "alice@example.test INJECTED",
	"literal":      "alice@example.test{8}INJECTED",
	"tab":          "alice@example.test\tINJECTED",
	"DEL":          "alice@example.test\x7fINJECTED",
	"NEL":          "alice@example.test\u0085INJECTED",
	"LINE SEP":     "alice@example.test\u2028INJECTED",
	"paren":        "alice@example.test)INJECTED",
	"percent star": "alice@example.test%*INJECTED",
}

// TestSecurityUnsafeClaimNeverReachesBackend: a provider vouching for an
// email claim with CR, LF, NUL, quotes and the like (auth.Policy's
// SafeMailbox path), or a client claiming such a user name, gets a plain
// authentication failure; nothing of it reaches a backend line (the fake
// backends record every line, and are not even dialled).
func TestSecurityUnsafeClaimNeverReachesBackend(t *testing.T) {
	names := make([]string, 0, len(unsafeClaims))
	byToken := map[string]string{"alice-claim-token": "alice@example.test"}
	for name, claim := range unsafeClaims {
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
	imapTP := newTestProxy(t, Options{Authenticator: authn, IMAPBackend: Backend{Address: imapFB.Addr, TLS: TLSNone, ClientIP: "id"}})
	smtpTP, smtpFB := newSMTPTest(t, proxytest.FakeSMTPOptions{XCLIENT: true}, func(o *Options) {
		o.Authenticator = authn
		o.SMTPBackend.Login = "xclient"
		o.SMTPBackend.ClientIP = "xclient"
	})
	smtpProbes := smtpFB.ConnCount()

	for _, name := range names {
		claim := unsafeClaims[name]
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
				s := smtpTP.dialSubmissions(t)
				s.SMTPCmd("AUTH "+mech+" "+ir, "334 ")
				s.SMTPCmd("", "535 5.7.8 Authentication credentials invalid")
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
			s := smtpTP.dialSubmissions(t)
			s.Send("AUTH OAUTHBEARER " + proxytest.OAuthBearer(claim, "alice-claim-token"))
			if code, _ := s.SMTPReply(); code == 334 {
				s.SMTPCmd("", "535 5.7.8")
			} else if code != 501 {
				t.Fatalf("AUTH with claimed user %q = %d, want 501 or the error challenge", claim, code)
			}
		})
	}
	checkBackendLines(t, "IMAP", imapFB.Received(), "INJECTED")
	checkBackendLines(t, "SMTP", smtpFB.Received(), "INJECTED")
	if n := imapFB.ConnCount(); n != 0 {
		t.Errorf("the IMAP backend was dialled %d times for refused claims", n)
	}
	if n := smtpFB.ConnCount(); n != smtpProbes {
		t.Errorf("the SMTP backend was dialled %d times beyond the capability probes", n-smtpProbes)
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
	for name, claim := range unsafeClaims {
		t.Run(name, func(t *testing.T) {
			bad := AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
				return auth.Identity{User: claim, Mechanism: c.Mechanism, Source: "broken"}, nil
			})
			fb := proxytest.StartFakeIMAPBackend(t)
			sfb := proxytest.StartFakeSMTPBackend(t, proxytest.FakeSMTPOptions{XCLIENT: true})
			tp := newTestProxy(t, Options{Authenticator: bad, IMAPBackend: Backend{Address: fb.Addr, TLS: TLSNone, ClientIP: "id"}})
			c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
			c.Expect("* OK")
			c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("", proxytest.TestToken))
			c.Expect("a1 NO")
			stp := newSMTPTestProxy(t, Options{Authenticator: bad, SMTPBackend: Backend{Address: sfb.Addr, TLS: TLSNone, Login: "xclient", ClientIP: "xclient"},
				SMTP: SMTPOptions{Hostname: "mailgate.test"}})
			probes := sfb.ConnCount()
			s := stp.dialSubmissions(t)
			s.Send("AUTH XOAUTH2 " + proxytest.XOAUTH2("", proxytest.TestToken))
			if code, lines := s.SMTPReply(); code/100 == 2 {
				t.Errorf("AUTH with an unsafe identity = %d %q, want a refusal", code, lines)
			}
			if fb.ConnCount() != 0 || sfb.ConnCount() != probes {
				t.Errorf("backends dialled for an unsafe identity: IMAP %d, SMTP %d", fb.ConnCount(), sfb.ConnCount()-probes)
			}
			checkBackendLines(t, "IMAP", fb.Received(), claim)
			checkBackendLines(t, "SMTP", sfb.Received(), claim)
		})
	}
}

// checkBackendLines fails t if a line a backend received, or the decoded
// SASL PLAIN message on it, holds bad (or its INJECTED part).
func checkBackendLines(t *testing.T, proto string, lines []string, bad string) {
	t.Helper()
	needle := "INJECTED"
	if !strings.Contains(bad, needle) {
		needle = bad
	}
	for _, l := range lines {
		if strings.Contains(l, needle) {
			t.Errorf("%s backend received %q", proto, l)
		}
		f := strings.Fields(l)
		for _, w := range f {
			if raw, err := base64.StdEncoding.DecodeString(w); err == nil && len(raw) > 2 && bytes.Contains(raw, []byte(needle)) {
				t.Errorf("%s backend received a SASL message holding %q: %q", proto, needle, raw)
			}
		}
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
	good := Master{User: dc.MasterUser, Password: dc.MasterPassword}
	wrong := Master{User: dc.MasterUser, Password: "wrong-" + dc.MasterPassword}
	registerMasterSecrets(good)
	registerMasterSecrets(wrong)
	// Dovecot delays repeated failures by seconds: mailgate gives up on the
	// backend (and answers) well before the test client's 10 s read deadline.
	lim := Limits{DialTimeout: 4 * time.Second}
	imapOpts := func(m Master) Options {
		return Options{Authenticator: fakeAuthenticator, Master: m, Limits: lim,
			IMAPBackend: Backend{Address: dc.IMAPAddr, TLS: TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"}}
	}
	smtpOpts := func(m Master) Options {
		return Options{Authenticator: fakeAuthenticator, Master: m, Limits: lim,
			SMTPBackend: Backend{Address: pf.SubmissionAddr, TLS: TLSStartTLS, TLSConfig: pf.TLSConfig()},
			SMTP:        SMTPOptions{Hostname: "mailgate.test", EnforceSender: true}}
	}
	imapGood, imapWrong := newTestProxy(t, imapOpts(good)), newTestProxy(t, imapOpts(wrong))
	smtpGood, smtpWrong := newSMTPTestProxy(t, smtpOpts(good)), newSMTPTestProxy(t, smtpOpts(wrong))

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
	imapSession(imapGood, proxytest.TestToken, "CAPABILITY", "SELECT INBOX", "NAMESPACE", "GETQUOTAROOT INBOX", "LOGOUT")
	smtpSession(smtpGood, proxytest.TestToken, "MAIL FROM:<alice@example.test>", "RCPT TO:<alice@example.test>", "DATA",
		"Subject: master password test\r\n\r\nbody\r\n.", "MAIL FROM:<bob@example.test>", "RSET", "VRFY alice", "QUIT")
	smtpSession(smtpGood, proxytest.TestToken, "MAIL FROM:<alice@example.test>", "RCPT TO:<nobody-at-all@example.test>", "QUIT")
	imapSession(imapGood, proxytest.BadToken)
	smtpSession(smtpGood, proxytest.BadToken, "", "MAIL FROM:<alice@example.test>")
	imapSession(imapGood, "nobody-token")
	smtpSession(smtpGood, "nobody-token")
	imapSession(imapWrong, proxytest.TestToken)
	smtpSession(smtpWrong, proxytest.TestToken, "MAIL FROM:<alice@example.test>")

	var all strings.Builder
	for _, rc := range received {
		all.WriteString(rc.String())
	}
	got := all.String()
	if !strings.Contains(got, "a1 OK") || !strings.Contains(got, "235 2.0.0") || !strings.Contains(got, "250 2.0.0 Ok: queued as") {
		t.Fatalf("the good flows did not log in or send; client received:\n%s", got)
	}
	for _, m := range []Master{good, wrong} {
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
	// Own daemons: the failed logins (carol has no mailbox) must not put
	// the shared Dovecot's per-IP penalty on 127.0.0.1.
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{})
	pf := testenv.StartPostfix(t, dc, testenv.PostfixOptions{})
	registerMasterSecrets(Master{User: dc.MasterUser, Password: dc.MasterPassword})
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
			imapTP := newTestProxy(t, Options{
				Authenticator: authn,
				Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
				IMAPBackend:   Backend{Address: dc.IMAPAddr, TLS: TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"},
			})
			smtpTP := newSMTPTestProxy(t, Options{
				Authenticator: authn,
				Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
				SMTPBackend:   Backend{Address: pf.SubmissionAddr, TLS: TLSStartTLS, TLSConfig: pf.TLSConfig()},
				SMTP:          SMTPOptions{Hostname: "mailgate.test", EnforceSender: true},
			})
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
					s := smtpTP.dialSubmissions(t)
					s.Send("AUTH " + mech + " " + ir)
					if code, _ := s.SMTPReply(); code == 334 {
						s.SMTPCmd("", "535")
					}
					s.SMTPCmd("QUIT", "221")
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
