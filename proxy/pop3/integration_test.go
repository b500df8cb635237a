package pop3

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// Integration tests: the POP3 front before a real Dovecot (DMS-like, both
// generations, the master user) with tokens from a real OpenID provider
// (Ory Hydra), checked by the production userinfo validator.

const (
	alice = "alice@example.test"
	bob   = "bob@example.test"
)

// logTimeout bounds waiting for Dovecot's log and mailbox.
const logTimeout = 10 * time.Second

type integration struct {
	dc  *testenv.Dovecot
	idp *testenv.Hydra
	tf  *testFront
}

// backendMode is one way to reach Dovecot's POP3 that works on both
// generations.
type backendMode struct {
	name     string
	tls      proxy.TLSMode
	clientIP string
}

var backendModes = []backendMode{
	{"starttls xclient", proxy.TLSStartTLS, "xclient"},
	{"implicit xclient", proxy.TLSImplicit, "xclient"},
	{"proxy v2 plaintext", proxy.TLSNone, "proxy"},
}

// backendFor is the Backend for m on dc.
func backendFor(dc *testenv.Dovecot, m backendMode) proxy.Backend {
	addr := dc.POP3Addr
	switch {
	case m.clientIP == "proxy":
		addr = dc.POP3HAProxyAddr
	case m.tls == proxy.TLSImplicit:
		addr = dc.POP3TLSAddr
	}
	return proxy.Backend{Address: addr, TLS: m.tls, TLSConfig: dc.TLSConfig(), ClientIP: m.clientIP}
}

func newIntegration(t *testing.T, m backendMode) *integration {
	t.Helper()
	dc := testenv.SharedDovecot(t)
	idp := testenv.SharedHydra(t)
	return newIntegrationWith(t, dc, idp, backendFor(dc, m), auth.TokenAuthenticator{
		Validator: auth.UserinfoValidator{URL: idp.UserinfoURL, Timeout: 2 * time.Second},
		Policy:    auth.Policy{UsernameClaim: "email"},
	})
}

func newIntegrationWith(t *testing.T, dc *testenv.Dovecot, idp *testenv.Hydra, b proxy.Backend, authn proxy.Authenticator) *integration {
	t.Helper()
	tf := newTestFront(t, proxy.Options{
		Authenticator: authn,
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
		Challenge:     auth.ChallengeOptions{OpenIDConfiguration: idp.DiscoveryURL, Scope: "openid email"},
		Passwords:     proxy.PasswordOptions{POP3: true},
	}, Options{Backend: b})
	return &integration{dc: dc, idp: idp, tf: tf}
}

// mint mints a token; the proxy's log is checked for it at cleanup.
func (it *integration) mint(t *testing.T, email string, opts testenv.TokenOptions) string {
	t.Helper()
	tok := it.idp.MintToken(t, email, opts)
	it.tf.secrets = append(it.tf.secrets, tok)
	return tok
}

func uniqueMessage(subject string) []byte {
	return []byte(fmt.Sprintf("From: sender@example.test\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%d@test>\r\n\r\nbody of %s\r\n",
		alice, subject, time.Now().UnixNano(), subject))
}

// waitGone polls alice's INBOX until no message holds subject.
func (it *integration) waitGone(t *testing.T, subject string) {
	t.Helper()
	deadline := time.Now().Add(logTimeout)
	for {
		if _, ok := it.dc.FindMessage(alice, subject); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %q still in the mailbox after DELE and QUIT", subject)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIntegrationPOP3Session: STAT, LIST, RETR, DELE and QUIT of a
// message appended beforehand, for each backend mode, with the client's
// address in Dovecot's login line.
func TestIntegrationPOP3Session(t *testing.T) {
	for _, m := range backendModes {
		t.Run(m.name, func(t *testing.T) {
			it := newIntegration(t, m)
			token := it.mint(t, alice, testenv.TokenOptions{})
			subject := fmt.Sprintf("pop3-%d", time.Now().UnixNano())
			it.dc.AppendDirect(t, alice, uniqueMessage(subject))
			mark := it.dc.Log.Mark()

			c := dialFrom(t, "127.0.0.9", it.tf.tlsAddr)
			c.UpgradeTLS(it.tf.clientTLS)
			c.expect("+OK mailgate ready.")
			c.Send("AUTH XOAUTH2 " + xoauth2(alice, token))
			c.expect("+OK Logged in.")
			n := it.retrLast(t, c, subject)
			c.Send(fmt.Sprintf("DELE %d", n))
			c.expect("+OK*")
			c.Send("QUIT")
			c.expect("+OK Logging out, messages deleted.")
			c.expectClosed()
			it.waitGone(t, subject)

			line := it.dc.Log.WaitSince(t, mark, "rip=127.0.0.9", logTimeout)
			if !strings.Contains(line, "user=<"+alice+">") || !strings.Contains(line, "method=PLAIN") {
				t.Errorf("Dovecot login line %q", line)
			}
		})
	}
}

// retrLast checks STAT and LIST, RETRs the last message, which must hold
// subject, and returns its number.
func (it *integration) retrLast(t *testing.T, c *client, subject string) int {
	t.Helper()
	c.Send("STAT")
	f := strings.Fields(c.expect("+OK *"))
	n, err := strconv.Atoi(f[1])
	if err != nil || n < 1 {
		t.Fatalf("STAT: %q", f)
	}
	c.Send("LIST")
	c.expect("+OK*")
	if list := c.multi(); len(list) != n || !strings.HasPrefix(list[n-1], f[1]+" ") {
		t.Fatalf("LIST %q, want %d messages", list, n)
	}
	c.Send(fmt.Sprintf("RETR %d", n))
	c.expect("+OK*")
	if msg := strings.Join(c.multi(), "\n"); !strings.Contains(msg, "Subject: "+subject) {
		t.Fatalf("RETR %d lacks the subject %q:\n%s", n, subject, msg)
	}
	return n
}

// TestIntegrationPOP3OAuthBearerContinuation: OAUTHBEARER without an
// initial response, as clients do whose AUTH line would pass 255 octets.
func TestIntegrationPOP3OAuthBearerContinuation(t *testing.T) {
	it := newIntegration(t, backendModes[0])
	token := it.mint(t, alice, testenv.TokenOptions{Opaque: true})
	c := dialPlain(t, it.tf.plainAddr)
	c.expect("+OK mailgate ready.")
	c.Send("AUTH OAUTHBEARER")
	c.expect("-ERR [SYS/PERM] Command not permitted before STLS.")
	c.Send("STLS")
	c.expect("+OK Begin TLS negotiation now.")
	c.UpgradeTLS(it.tf.clientTLS)
	c.Send("AUTH OAUTHBEARER")
	c.expect("+ ")
	c.Send(oauthbearer("", token))
	c.expect("+OK Logged in.")
	c.Send("QUIT")
	c.expect("+OK Logging out.")
}

// TestIntegrationPOP3RefusedTokens: each refused token gets the RFC 7628
// challenge, then -ERR [AUTH] after the client's dummy response.
func TestIntegrationPOP3RefusedTokens(t *testing.T) {
	it := newIntegration(t, backendModes[0])
	for _, tt := range []struct {
		name     string
		opts     testenv.TokenOptions
		tokenFor string
	}{
		{"wrong user", testenv.TokenOptions{}, bob},
		{"expired", testenv.TokenOptions{Expired: true}, alice},
		{"revoked", testenv.TokenOptions{Revoked: true}, alice},
		{"revoked opaque", testenv.TokenOptions{Revoked: true, Opaque: true}, alice},
		{"garbage", testenv.TokenOptions{}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			token := "not-a-token"
			if tt.tokenFor != "" {
				token = it.mint(t, tt.tokenFor, tt.opts)
			}
			for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
				c := dialTLS(t, it.tf.tlsAddr, it.tf.clientTLS)
				c.expect("+OK mailgate ready.")
				ir := xoauth2(alice, token)
				if mech == "OAUTHBEARER" {
					ir = oauthbearer(alice, token)
				}
				c.Send("AUTH " + mech + " " + ir)
				ch := challenge(t, c.expect("+ *"))
				if mech == "OAUTHBEARER" && ch["openid-configuration"] != it.idp.DiscoveryURL {
					t.Errorf("challenge %v lacks openid-configuration", ch)
				}
				c.Send("AQ==")
				c.expect("-ERR [AUTH] Authentication failed.")
			}
		})
	}
}

// TestIntegrationPOP3UnknownMailbox: a valid token for an address Dovecot
// does not know ("Authorization failed" there) is a plain authentication
// failure, not a configuration problem.
func TestIntegrationPOP3UnknownMailbox(t *testing.T) {
	it := newIntegration(t, backendModes[0])
	token := it.mint(t, "carol@example.test", testenv.TokenOptions{})
	// From its own address: Dovecot delays logins after a failure, per
	// client address (XCLIENT passes it on).
	c := dialFrom(t, "127.0.0.11", it.tf.tlsAddr)
	c.UpgradeTLS(it.tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Send("AUTH XOAUTH2 " + xoauth2("carol@example.test", token))
	c.expect("-ERR [AUTH] Authentication failed.")
	if p := it.tf.srv.BackendProblem("pop3"); p != "" {
		t.Errorf("BackendProblem = %q", p)
	}
	if !strings.Contains(it.tf.logs.String(), "backend refused the mailbox") {
		t.Errorf("the log does not say the mailbox was refused")
	}
}

// TestIntegrationPOP3ProviderDown: an unreachable provider is [SYS/TEMP]
// within the validator's timeout, without a challenge.
func TestIntegrationPOP3ProviderDown(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	idp := testenv.SharedHydra(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	url := closed.URL
	closed.Close()
	it := newIntegrationWith(t, dc, idp, backendFor(dc, backendModes[0]), auth.TokenAuthenticator{
		Validator: auth.UserinfoValidator{URL: url, Timeout: 500 * time.Millisecond},
	})
	c := dialTLS(t, it.tf.tlsAddr, it.tf.clientTLS)
	c.expect("+OK mailgate ready.")
	start := time.Now()
	c.Send("AUTH XOAUTH2 " + xoauth2(alice, "some-token"))
	c.expect("-ERR [SYS/TEMP] Temporary authentication failure, try again later.")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("[SYS/TEMP] after %v", d)
	}
}

// TestIntegrationPOP3PlaintextBackend: mailgate's master login over
// plaintext from a trusted network: Dovecot 2.3 takes it, 2.4 (ssl =
// required) refuses it, and mailgate says which setting to change.
func TestIntegrationPOP3PlaintextBackend(t *testing.T) {
	it := newIntegration(t, backendMode{"plaintext xclient", proxy.TLSNone, "xclient"})
	token := it.mint(t, alice, testenv.TokenOptions{})
	c := dialTLS(t, it.tf.tlsAddr, it.tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Send("AUTH XOAUTH2 " + xoauth2(alice, token))
	if testenv.Generation() == "2.3" {
		c.expect("+OK Logged in.")
		return
	}
	c.expect("-ERR [SYS/TEMP] Temporary authentication failure, try again later.")
	if p := it.tf.srv.BackendProblem("pop3"); !strings.Contains(p, "pop3.backend.tls") {
		t.Fatalf("BackendProblem = %q, want the fix naming pop3.backend.tls", p)
	}
}

// TestIntegrationPOP3Probe: the probe passes for the working modes (with a
// master login for alice) and names the fix for plaintext on 2.4.
func TestIntegrationPOP3Probe(t *testing.T) {
	for _, m := range append(backendModes, backendMode{"plaintext xclient", proxy.TLSNone, "xclient"}) {
		t.Run(m.name, func(t *testing.T) {
			it := newIntegration(t, m)
			err := it.tf.srv.CheckBackend(t.Context(), "pop3", alice)
			if m.tls == proxy.TLSNone && m.clientIP == "xclient" && testenv.Generation() == "2.4" {
				if err == nil || !strings.Contains(err.Error(), "pop3.backend.tls") {
					t.Fatalf("CheckBackend() = %v, want the plaintext problem", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("CheckBackend() = %v", err)
			}
		})
	}
}

// TestIntegrationPOP3Passwords: USER/PASS passthrough with the user's own
// password; Dovecot's refusal of a wrong one reaches the client verbatim.
func TestIntegrationPOP3Passwords(t *testing.T) {
	it := newIntegration(t, backendModes[0])
	mark := it.dc.Log.Mark()
	c := dialTLS(t, it.tf.tlsAddr, it.tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Send("USER " + alice)
	c.expect("+OK")
	c.Send("PASS password")
	c.expect("+OK Logged in.")
	c.Send("QUIT")
	c.expect("+OK Logging out.")
	it.dc.Log.WaitSince(t, mark, "user=<"+alice+">", logTimeout)

	// From its own address: Dovecot delays failures per client address.
	c = dialFrom(t, "127.0.0.10", it.tf.tlsAddr)
	c.UpgradeTLS(it.tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Send("USER " + alice)
	c.expect("+OK")
	c.Send("PASS wrong-password")
	c.expect("-ERR [AUTH] Authentication failed.")
	it.tf.secrets = append(it.tf.secrets, "wrong-password")
}
