package sieve

import (
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// Integration tests: mailgate in front of a real Dovecot with Pigeonhole
// ManageSieve (both generations, MAILGATE_BACKEND), with tokens from a
// real OpenID provider (Ory Hydra) checked by the production userinfo
// validator. They skip without the daemons, or fail with
// MAILGATE_INTEGRATION=1.

// logTimeout bounds waiting for Dovecot's log and deliveries.
const logTimeout = 15 * time.Second

type sieveIntegration struct {
	dc       *testenv.Dovecot
	idp      *testenv.Hydra
	tf       *testFront
	authLogs *proxytest.SyncBuffer // the token authenticator's log
	tokens   []string              // minted for this test
}

// Backend modes that work on both generations.
func starttlsXCLIENT(dc *testenv.Dovecot) proxy.Backend {
	return proxy.Backend{Address: dc.SieveAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "xclient"}
}

func proxyNoTLS(dc *testenv.Dovecot) proxy.Backend {
	return proxy.Backend{Address: dc.SieveHAProxyAddr, TLS: proxy.TLSNone, ClientIP: "proxy"}
}

// newSieveIntegration starts a front for the shared Dovecot's ManageSieve
// (backend(dc)); popts may set Passwords and Authenticator.
func newSieveIntegration(t *testing.T, backend func(*testenv.Dovecot) proxy.Backend, popts proxy.Options) *sieveIntegration {
	t.Helper()
	dc := testenv.SharedDovecot(t)
	idp := testenv.SharedHydra(t)
	si := &sieveIntegration{dc: dc, idp: idp, authLogs: &proxytest.SyncBuffer{}}
	if popts.Authenticator == nil {
		popts.Authenticator = auth.TokenAuthenticator{
			Validator: auth.UserinfoValidator{URL: idp.UserinfoURL, Timeout: 2 * time.Second},
			Policy:    auth.Policy{UsernameClaim: "email"},
			Source:    "userinfo",
			Logger:    slog.New(slog.NewTextHandler(si.authLogs, nil)),
		}
	}
	popts.Master = proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword}
	popts.Challenge = auth.ChallengeOptions{OpenIDConfiguration: idp.DiscoveryURL, Scope: "openid email"}
	si.tf = newTestFront(t, popts, Options{Backend: backend(dc)})
	t.Cleanup(func() {
		// No token minted for this test, nor the master password, may
		// appear in mailgate's logs.
		logs := si.tf.logs.String() + si.authLogs.String()
		for _, tok := range si.tokens {
			if strings.Contains(logs, tok) {
				t.Errorf("a token appears in the logs")
			}
		}
		if strings.Contains(logs, dc.MasterPassword) {
			t.Errorf("the master password appears in the logs")
		}
	})
	return si
}

// mint mints a token and remembers it for the log check.
func (si *sieveIntegration) mint(t *testing.T, email string, opts testenv.TokenOptions) string {
	t.Helper()
	tok := si.idp.MintToken(t, email, opts)
	si.tokens = append(si.tokens, tok)
	return tok
}

// connect dials the front from local, runs STARTTLS and returns the
// connection and the capabilities over TLS.
func (si *sieveIntegration) connect(t *testing.T, local string) (*tconn, []string) {
	t.Helper()
	c := dial(t, local, si.tf.addr)
	c.greeted()
	return c, c.starttls(si.tf.clientTLS)
}

func xoauth2IR(user, token string) string { return `"` + b64(auth.EncodeXOAUTH2(user, token)) + `"` }

// TestIntegrationSieveScript: PUTSCRIPT and SETACTIVE through mailgate; a
// message delivered by LMTP is then filed by the script; LISTSCRIPTS and
// GETSCRIPT read it back; Dovecot logs the client's own address.
func TestIntegrationSieveScript(t *testing.T) {
	for _, tt := range []struct {
		name    string
		backend func(*testenv.Dovecot) proxy.Backend
		user    string
		local   string
	}{
		{"starttls+xclient", starttlsXCLIENT, "alice@example.test", "127.0.0.9"},
		{"proxy+none", proxyNoTLS, "bob@example.test", "127.0.0.10"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			si := newSieveIntegration(t, tt.backend, proxy.Options{})
			token := si.mint(t, tt.user, testenv.TokenOptions{})
			id := fmt.Sprintf("sieve-%d", time.Now().UnixNano())
			name := "mailgate-" + id
			script := "require [\"fileinto\"];\r\nif header :contains \"subject\" \"" + id + "\" { fileinto \"Filed\"; }\r\n"

			mark := si.dc.Log.Mark()
			c, _ := si.connect(t, tt.local)
			c.cmd(`AUTHENTICATE "XOAUTH2" `+xoauth2IR(tt.user, token), `OK "Logged in."`)
			if caps := c.cmd("CAPABILITY", `OK "Capability completed."`); !slices.ContainsFunc(caps, func(l string) bool {
				return strings.HasPrefix(l, `"IMPLEMENTATION" "Dovecot`)
			}) {
				t.Errorf("CAPABILITY after login is not Dovecot's: %q", caps)
			}
			c.cmd(`PUTSCRIPT "`+name+`" `+lit(script), `OK "PUTSCRIPT completed."`)
			c.cmd(`SETACTIVE "`+name+`"`, `OK "Setactive completed."`)
			if l := c.cmd("LISTSCRIPTS", `OK "Listscripts completed."`); !slices.Contains(l, `"`+name+`" ACTIVE`) {
				t.Errorf("LISTSCRIPTS: %q", l)
			}
			got := c.cmd(`GETSCRIPT "`+name+`"`, `OK "Getscript completed."`)
			if want := fmt.Sprintf("{%d}\r\n%s", len(script), script); len(got) != 1 || got[0] != want {
				t.Errorf("GETSCRIPT = %q, want %q", got, want)
			}
			c.cmd("LOGOUT", `OK "Logout completed."`)
			line := si.dc.Log.WaitSince(t, mark, "rip="+tt.local, logTimeout)
			if !strings.Contains(line, "user=<"+tt.user+">") {
				t.Errorf("Dovecot's login line %q", line)
			}

			si.dc.DeliverLMTP(t, tt.user, []byte("Subject: filed "+id+"\n\nto be filed\n"))
			si.dc.WaitMessageIn(t, tt.user, "Filed", "filed "+id, logTimeout)
		})
	}
}

// TestIntegrationSieveRawSASL: OAUTHBEARER with a literal initial
// response, a challenge answered with a literal, and a cancel.
func TestIntegrationSieveRawSASL(t *testing.T) {
	si := newSieveIntegration(t, starttlsXCLIENT, proxy.Options{})
	token := si.mint(t, "alice@example.test", testenv.TokenOptions{})
	ob := b64(auth.EncodeOAUTHBEARER("alice@example.test", token))

	c, caps := si.connect(t, "")
	if !slices.Contains(caps, `"SASL" "OAUTHBEARER XOAUTH2"`) || !slices.ContainsFunc(caps, func(l string) bool {
		return strings.HasPrefix(l, `"SIEVE" "fileinto`) && strings.Contains(l, "vacation")
	}) {
		t.Errorf("capabilities over TLS: %q", caps)
	}
	c.cmd(`AUTHENTICATE "OAUTHBEARER" `+lit(ob), `OK "Logged in."`)
	c.cmd("LISTSCRIPTS", `OK "Listscripts completed."`)

	c, _ = si.connect(t, "")
	c.Send(`AUTHENTICATE "OAUTHBEARER"`)
	if l := c.ReadLine(); l != `""` {
		t.Fatalf("challenge %q", l)
	}
	c.cmd(`"*"`, `NO "Authentication canceled."`)
	c.Send(`AUTHENTICATE "OAUTHBEARER"`)
	c.ReadLine()
	c.cmd("{"+fmt.Sprint(len(ob))+"}\r\n"+ob, `OK "Logged in."`)
	c.cmd(`NOOP "tag"`, `OK (TAG "tag") "Done"`)
}

// TestIntegrationSieveRefusedTokens: each refused token gets the RFC 7628
// challenge, then NO; a good token for a mailbox Dovecot does not have
// gets NO at once.
func TestIntegrationSieveRefusedTokens(t *testing.T) {
	si := newSieveIntegration(t, starttlsXCLIENT, proxy.Options{})
	for _, tt := range []struct {
		name, user, tokenFor string
		opts                 testenv.TokenOptions
	}{
		{"wrong user", "alice@example.test", "bob@example.test", testenv.TokenOptions{}},
		{"expired", "alice@example.test", "alice@example.test", testenv.TokenOptions{Expired: true}},
		{"revoked", "alice@example.test", "alice@example.test", testenv.TokenOptions{Revoked: true}},
		{"garbage", "alice@example.test", "", testenv.TokenOptions{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			token := "not-a-token"
			if tt.tokenFor != "" {
				token = si.mint(t, tt.tokenFor, tt.opts)
			}
			c, _ := si.connect(t, "")
			c.Send(`AUTHENTICATE "XOAUTH2" ` + xoauth2IR(tt.user, token))
			challengeJSON(t, c)
			c.cmd(`""`, `NO "Authentication failed."`)
			c.Send(`AUTHENTICATE "OAUTHBEARER" "` + b64(auth.EncodeOAUTHBEARER(tt.user, token)) + `"`)
			if v := challengeJSON(t, c); v["openid-configuration"] != si.idp.DiscoveryURL {
				t.Errorf("OAUTHBEARER challenge %v", v)
			}
			c.cmd(`"AQ=="`, `NO "Authentication failed."`)
		})
	}
	t.Run("unknown mailbox", func(t *testing.T) {
		token := si.mint(t, "carol@example.test", testenv.TokenOptions{})
		c, _ := si.connect(t, "127.0.0.11") // Dovecot delays failures per address
		c.cmd(`AUTHENTICATE "XOAUTH2" `+xoauth2IR("carol@example.test", token), `NO "Authentication failed."`)
	})
}

func TestIntegrationSieveProviderDown(t *testing.T) {
	closed := httptest.NewServer(nil)
	closed.Close()
	si := newSieveIntegration(t, starttlsXCLIENT, proxy.Options{Authenticator: auth.TokenAuthenticator{
		Validator: auth.UserinfoValidator{URL: closed.URL, Timeout: 500 * time.Millisecond},
	}})
	c, _ := si.connect(t, "")
	start := time.Now()
	c.cmd(`AUTHENTICATE "XOAUTH2" `+xoauth2IR("alice@example.test", "some-token"),
		`NO (TRYLATER) "Temporary authentication failure, try again later."`)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("TRYLATER after %v", d)
	}
}

// TestIntegrationSievePasswords: password passthrough logs in with the
// user's own password; Dovecot's refusal reaches the client verbatim.
func TestIntegrationSievePasswords(t *testing.T) {
	si := newSieveIntegration(t, starttlsXCLIENT, proxy.Options{Passwords: proxy.PasswordOptions{Sieve: true}})
	c, caps := si.connect(t, "")
	if !slices.Contains(caps, `"SASL" "OAUTHBEARER XOAUTH2 PLAIN LOGIN"`) {
		t.Errorf("capabilities: %q", caps)
	}
	c.cmd(`AUTHENTICATE "PLAIN" "`+b64([]byte("\x00alice@example.test\x00password"))+`"`, `OK "Logged in."`)
	c.cmd("LISTSCRIPTS", `OK "Listscripts completed."`)

	c, _ = si.connect(t, "127.0.0.12")
	c.cmd(`AUTHENTICATE "PLAIN" "`+b64([]byte("\x00alice@example.test\x00wrong"))+`"`, `NO "Authentication failed."`)
	if strings.Contains(si.tf.logs.String(), "wrong") {
		t.Errorf("the password appears in the log")
	}
}

// TestIntegrationSieveProbe: the probe (and check-config's login) passes
// for the modes that work; a plaintext backend connection is refused by
// Dovecot 2.4 (ssl = required) and found as a problem before any login.
func TestIntegrationSieveProbe(t *testing.T) {
	for name, backend := range map[string]func(*testenv.Dovecot) proxy.Backend{
		"starttls+xclient": starttlsXCLIENT, "proxy+none": proxyNoTLS,
	} {
		t.Run(name, func(t *testing.T) {
			si := newSieveIntegration(t, backend, proxy.Options{})
			if err := si.tf.srv.CheckBackend(t.Context(), proto, "alice@example.test"); err != nil {
				t.Fatalf("CheckBackend() = %v", err)
			}
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		plain := func(dc *testenv.Dovecot) proxy.Backend {
			return proxy.Backend{Address: dc.SieveAddr, ClientIP: "xclient"}
		}
		si := newSieveIntegration(t, plain, proxy.Options{})
		err := si.tf.srv.CheckBackend(t.Context(), proto, "")
		if testenv.Generation() == "2.3" {
			if err != nil {
				t.Fatalf("CheckBackend() = %v (2.3 allows plaintext from login_trusted_networks)", err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), "offers no SASL mechanism") || si.tf.srv.BackendProblem(proto) == "" {
			t.Fatalf("CheckBackend() = %v, want the plaintext problem", err)
		}
		token := si.mint(t, "alice@example.test", testenv.TokenOptions{})
		c, _ := si.connect(t, "")
		c.cmd(`AUTHENTICATE "XOAUTH2" `+xoauth2IR("alice@example.test", token),
			`NO (TRYLATER) "Temporary authentication failure, try again later."`)
	})
}
