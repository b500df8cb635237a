package imap

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// Integration tests: mailgate in front of a real Dovecot 2.3 (DMS-like
// config, master user) with tokens from a real OpenID provider (Ory Hydra),
// validated by the production userinfo validator.

type imapIntegration struct {
	dc  *testenv.Dovecot
	idp *testenv.Hydra
	tp  *testProxy
	// certFile is the proxy's certificate, for curl.
	certFile string
	tokens   []string // minted for this test
}

func newIMAPIntegration(t *testing.T, mode proxy.TLSMode) *imapIntegration {
	t.Helper()
	dc := testenv.SharedDovecot(t)
	idp := testenv.SharedHydra(t)
	addr := map[proxy.TLSMode]string{proxy.TLSNone: dc.IMAPAddr, proxy.TLSStartTLS: dc.IMAPAddr, proxy.TLSImplicit: dc.IMAPSAddr}[mode]
	authn := auth.TokenAuthenticator{
		Validator: auth.UserinfoValidator{URL: idp.UserinfoURL, Timeout: 2 * time.Second},
		Policy:    auth.Policy{UsernameClaim: "email"},
		Source:    "userinfo",
	}
	tp := newTestProxy(t, proxy.Options{
		Authenticator: authn,
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
		Challenge:     auth.ChallengeOptions{OpenIDConfiguration: idp.DiscoveryURL, Scope: "openid email"},
	}, Options{Backend: proxy.Backend{Address: addr, TLS: mode, TLSConfig: dc.TLSConfig(), ClientIP: "id"}})
	it := &imapIntegration{dc: dc, idp: idp, tp: tp, certFile: writeProxyCert(t, tp)}
	t.Cleanup(func() {
		// No token minted for this test may appear in the proxy's logs.
		logs := tp.logs.String()
		for _, tok := range it.tokens {
			if strings.Contains(logs, tok) {
				t.Errorf("a token appears in the proxy logs")
			}
		}
		if strings.Contains(logs, dc.MasterPassword) {
			t.Errorf("the master password appears in the proxy logs")
		}
	})
	return it
}

// mint mints a token and remembers it for the log check.
func (it *imapIntegration) mint(t *testing.T, email string, opts testenv.TokenOptions) string {
	t.Helper()
	tok := it.idp.MintToken(t, email, opts)
	it.tokens = append(it.tokens, tok)
	return tok
}

// writeProxyCert writes the proxy's certificate as PEM for curl --cacert.
func writeProxyCert(t *testing.T, tp *testProxy) string {
	t.Helper()
	der := tp.serverTLS.Certificates[0].Certificate[0]
	f := filepath.Join(t.TempDir(), "proxy.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// xoauth2Client is a go-sasl client for XOAUTH2 (go-sasl has none).
type xoauth2Client struct{ user, token string }

func (c xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", auth.EncodeXOAUTH2(c.user, c.token), nil
}
func (c xoauth2Client) Next([]byte) ([]byte, error) { return []byte{}, nil }

func uniqueMessage(subject string) []byte {
	return []byte(fmt.Sprintf("From: sender@example.test\r\nTo: alice@example.test\r\nSubject: %s\r\nMessage-ID: <%d@test>\r\n\r\nbody of %s\r\n",
		subject, time.Now().UnixNano(), subject))
}

func TestIntegrationIMAPSession(t *testing.T) {
	for _, mode := range []proxy.TLSMode{proxy.TLSStartTLS, proxy.TLSImplicit, proxy.TLSNone} {
		t.Run(string(mode), func(t *testing.T) {
			if mode == proxy.TLSNone && testenv.Generation() == "2.4" {
				testPlaintextMasterLoginRefused(t)
				return
			}
			it := newIMAPIntegration(t, mode)
			token := it.mint(t, "alice@example.test", testenv.TokenOptions{})
			subject := fmt.Sprintf("session-%s-%d", mode, time.Now().UnixNano())
			it.dc.AppendDirect(t, "alice@example.test", uniqueMessage(subject))

			exists := make(chan uint32, 16)
			c, err := imapclient.DialTLS(it.tp.tlsAddr, &imapclient.Options{
				TLSConfig: it.tp.clientTLS,
				UnilateralDataHandler: &imapclient.UnilateralDataHandler{
					Mailbox: func(d *imapclient.UnilateralDataMailbox) {
						if d.NumMessages != nil {
							exists <- *d.NumMessages
						}
					},
				},
			})
			if err != nil {
				t.Fatalf("DialTLS() = %v", err)
			}
			defer c.Close()
			if err := c.Authenticate(xoauth2Client{"alice@example.test", token}); err != nil {
				t.Fatalf("Authenticate(XOAUTH2) = %v", err)
			}
			// The post-login capabilities are Dovecot's, not mailgate's.
			if caps := c.Caps(); !caps.Has(imap.CapIdle) || caps.Has(imap.Cap("AUTH=XOAUTH2")) {
				t.Fatalf("post-login caps = %v, want Dovecot's (IDLE, no AUTH=)", caps)
			}
			mboxes, err := c.List("", "*", nil).Collect()
			if err != nil || len(mboxes) == 0 {
				t.Fatalf("LIST = %v, %v", mboxes, err)
			}
			sel, err := c.Select("INBOX", nil).Wait()
			if err != nil {
				t.Fatalf("SELECT = %v", err)
			}
			// FETCH the message appended directly to Dovecot. It is found
			// by its subject, not taken to be the last one: other test
			// processes (go test runs packages in parallel) deliver to
			// alice@example.test through daemons of their own, and one of
			// their messages has been seen to arrive in this INBOX.
			found, err := c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
			if err != nil || len(found.AllSeqNums()) == 0 {
				t.Fatalf("SEARCH subject %q = %v, %v", subject, found, err)
			}
			seq := found.AllSeqNums()[0]
			msgs, err := c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{
				BodySection: []*imap.FetchItemBodySection{{}},
			}).Collect()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("FETCH = %v, %v", msgs, err)
			}
			if body := msgs[0].FindBodySection(&imap.FetchItemBodySection{}); !bytes.Contains(body, []byte(subject)) {
				t.Fatalf("fetched body lacks the subject %q:\n%s", subject, body)
			}
			// APPEND through mailgate.
			appended := uniqueMessage(subject + "-appended")
			ac := c.Append("INBOX", int64(len(appended)), nil)
			ac.Write(appended)
			ac.Close()
			if _, err := ac.Wait(); err != nil {
				t.Fatalf("APPEND = %v", err)
			}
			drain(exists)
			// IDLE: a message delivered meanwhile shows up as EXISTS.
			idle, err := c.Idle()
			if err != nil {
				t.Fatalf("IDLE = %v", err)
			}
			it.dc.AppendDirect(t, "alice@example.test", uniqueMessage(subject+"-during-idle"))
			select {
			case n := <-exists:
				if n < sel.NumMessages+2 {
					t.Fatalf("EXISTS %d during IDLE, want >= %d", n, sel.NumMessages+2)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("no EXISTS during IDLE")
			}
			if err := idle.Close(); err != nil {
				t.Fatalf("IDLE close = %v", err)
			}
			if err := idle.Wait(); err != nil {
				t.Fatalf("IDLE = %v", err)
			}
			if err := c.Logout().Wait(); err != nil {
				t.Fatalf("LOGOUT = %v", err)
			}
		})
	}
}

func drain(ch chan uint32) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func TestIntegrationIMAPOAuthBearerStartTLS(t *testing.T) {
	it := newIMAPIntegration(t, proxy.TLSStartTLS)
	token := it.mint(t, "alice@example.test", testenv.TokenOptions{Opaque: true})
	c := proxytest.DialPlain(t, it.tp.plainAddr)
	c.Expect("* OK [CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ STARTTLS LOGINDISABLED]")
	c.Send("a0 AUTHENTICATE OAUTHBEARER " + proxytest.OAuthBearer("alice@example.test", token))
	c.Expect("a0 NO [PRIVACYREQUIRED]")
	c.StartTLS(it.tp.clientTLS)
	c.Send("a1 AUTHENTICATE OAUTHBEARER " + proxytest.OAuthBearer("", token))
	c.Expect("a1 OK [CAPABILITY IMAP4rev1")
	c.Send("a2 LOGOUT")
	c.Expect("* BYE")
	c.Expect("a2 OK")
}

// TestIntegrationIMAPPipelined: commands in the same packet as AUTHENTICATE
// are answered by Dovecot, none lost.
func TestIntegrationIMAPPipelined(t *testing.T) {
	it := newIMAPIntegration(t, proxy.TLSStartTLS)
	token := it.mint(t, "alice@example.test", testenv.TokenOptions{})
	c := proxytest.DialTLS(t, it.tp.tlsAddr, it.tp.clientTLS)
	c.Expect("* OK")
	c.C.Write([]byte("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", token) +
		"\r\na2 SELECT INBOX\r\na3 NOOP\r\na4 LOGOUT\r\n"))
	c.Expect("a1 OK [CAPABILITY")
	for _, want := range []string{"a2 OK", "a3 OK", "a4 OK"} {
		for {
			line := c.ReadLine()
			if strings.HasPrefix(line, want) {
				break
			}
			if !strings.HasPrefix(line, "* ") {
				t.Fatalf("got %q while waiting for %q", line, want)
			}
		}
	}
	c.ExpectClosed()
}

// TestIntegrationIMAPClientAddress: Dovecot logs the client's address and
// mailgate's connection id, passed with ID from a trusted network.
func TestIntegrationIMAPClientAddress(t *testing.T) {
	it := newIMAPIntegration(t, proxy.TLSStartTLS)
	token := it.mint(t, "alice@example.test", testenv.TokenOptions{})
	mark := it.dc.Log.Mark()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 7)}}
	raw, err := d.Dial("tcp", it.tp.tlsAddr)
	if err != nil {
		t.Fatalf("Dial from 127.0.0.7: %v", err)
	}
	tc := tls.Client(raw, it.tp.clientTLS)
	c := &proxytest.Conn{T: t, C: tc, BR: bufio.NewReader(tc)}
	t.Cleanup(func() { tc.Close() })
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", token))
	c.Expect("a1 OK")
	line := it.dc.Log.WaitSince(t, mark, "rip=127.0.0.7", 10*time.Second)
	if !strings.Contains(line, "user=<alice@example.test>") || !strings.Contains(line, "method=PLAIN") {
		t.Fatalf("Dovecot login line = %q", line)
	}
	if !strings.Contains(line, "session=<") {
		t.Fatalf("no session id in %q", line)
	}
}

// TestIntegrationIMAPRefusedTokens: each refused token gets the RFC 7628
// challenge, then NO [AUTHENTICATIONFAILED].
func TestIntegrationIMAPRefusedTokens(t *testing.T) {
	it := newIMAPIntegration(t, proxy.TLSStartTLS)
	for _, tt := range []struct {
		name, user string
		opts       testenv.TokenOptions
		tokenFor   string
	}{
		{"wrong user", "alice@example.test", testenv.TokenOptions{}, "bob@example.test"},
		{"expired", "alice@example.test", testenv.TokenOptions{Expired: true}, "alice@example.test"},
		{"revoked", "alice@example.test", testenv.TokenOptions{Revoked: true}, "alice@example.test"},
		{"revoked opaque", "alice@example.test", testenv.TokenOptions{Revoked: true, Opaque: true}, "alice@example.test"},
		{"garbage", "alice@example.test", testenv.TokenOptions{}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			token := "not-a-token"
			if tt.tokenFor != "" {
				token = it.mint(t, tt.tokenFor, tt.opts)
			}
			for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
				c := proxytest.DialTLS(t, it.tp.tlsAddr, it.tp.clientTLS)
				c.Expect("* OK")
				ir := proxytest.XOAUTH2(tt.user, token)
				if mech == "OAUTHBEARER" {
					ir = proxytest.OAuthBearer(tt.user, token)
				}
				c.Send("a1 AUTHENTICATE " + mech + " " + ir)
				ch := c.Expect("+ ")
				js, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(ch, "+ "))
				if mech == "OAUTHBEARER" && !bytes.Contains(js, []byte(`"openid-configuration":"`+it.idp.DiscoveryURL)) {
					t.Errorf("challenge %s lacks openid-configuration", js)
				}
				c.Send("AQ==")
				c.Expect("a1 NO [AUTHENTICATIONFAILED]")
			}
		})
	}
}

// TestIntegrationIMAPUnknownMailbox: a valid token for an address Dovecot
// does not know (AUTHORIZATIONFAILED there) is a plain authentication failure.
func TestIntegrationIMAPUnknownMailbox(t *testing.T) {
	it := newIMAPIntegration(t, proxy.TLSStartTLS)
	token := it.mint(t, "carol@example.test", testenv.TokenOptions{})
	c := proxytest.DialTLS(t, it.tp.tlsAddr, it.tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("carol@example.test", token))
	c.Expect("a1 NO [AUTHENTICATIONFAILED]")
}

// TestIntegrationIMAPProviderDown: unreachable or slow provider gives
// NO [UNAVAILABLE] within the validator's timeout, without a challenge.
func TestIntegrationIMAPProviderDown(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer slow.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	for name, url := range map[string]string{"slow": slow.URL, "refused": closedURL} {
		t.Run(name, func(t *testing.T) {
			tp := newTestProxy(t, proxy.Options{
				Authenticator: auth.TokenAuthenticator{
					Validator: auth.UserinfoValidator{URL: url, Timeout: 500 * time.Millisecond},
					Policy:    auth.Policy{},
				},
				Master: proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
			}, Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig()}})
			c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
			c.Expect("* OK")
			start := time.Now()
			c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", "some-token"))
			c.Expect("a1 NO [UNAVAILABLE]")
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("UNAVAILABLE after %v, want within the 500ms timeout (+slack)", d)
			}
		})
	}
}

// TestIntegrationIMAPCurl: curl --oauth2-bearer over imaps reads a message.
func TestIntegrationIMAPCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if testenv.Integration() {
			t.Fatal("curl not installed")
		}
		t.Skip("curl not installed")
	}
	it := newIMAPIntegration(t, proxy.TLSStartTLS)
	token := it.mint(t, "alice@example.test", testenv.TokenOptions{})
	subject := fmt.Sprintf("curl-%d", time.Now().UnixNano())
	it.dc.AppendDirect(t, "alice@example.test", uniqueMessage(subject))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Search for the message by subject, then fetch it by UID.
	out, err := exec.CommandContext(ctx, curl, "--silent", "--show-error", "--cacert", it.certFile,
		"--oauth2-bearer", token, "--user", "alice@example.test:",
		"imaps://"+it.tp.tlsAddr+"/INBOX", "-X", "UID SEARCH SUBJECT "+subject).CombinedOutput()
	if err != nil {
		t.Fatalf("curl search: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) < 3 || f[1] != "SEARCH" {
		t.Fatalf("curl search output %q", out)
	}
	uid := f[len(f)-1]
	out, err = exec.CommandContext(ctx, curl, "--silent", "--show-error", "--cacert", it.certFile,
		"--oauth2-bearer", token, "--user", "alice@example.test:",
		"imaps://"+it.tp.tlsAddr+"/INBOX;UID="+uid).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Subject: "+subject)) {
		t.Fatalf("curl fetch: %v\n%s", err, out)
	}
	if strings.Contains(it.tp.logs.String(), token) {
		t.Fatal("token in the proxy log")
	}
}

var _ sasl.Client = xoauth2Client{}

// TestIntegrationIMAPCompress: COMPRESS=DEFLATE (RFC 4978) negotiated with
// Dovecot through the relay works, since the relay is byte-exact.
func TestIntegrationIMAPCompress(t *testing.T) {
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{IMAPCompress: true})
	idp := testenv.SharedHydra(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: auth.TokenAuthenticator{Validator: auth.UserinfoValidator{URL: idp.UserinfoURL}},
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
	}, Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"}})
	token := idp.MintToken(t, "alice@example.test", testenv.TokenOptions{})
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", token))
	if ok := c.Expect("a1 OK [CAPABILITY"); !strings.Contains(ok, "COMPRESS=DEFLATE") {
		t.Fatalf("Dovecot does not offer COMPRESS=DEFLATE: %q", ok)
	}
	c.Send("a2 COMPRESS DEFLATE")
	c.Expect("a2 OK")
	// From here on both directions are raw DEFLATE streams.
	fw, _ := flate.NewWriter(c.C, flate.BestSpeed)
	fr := bufio.NewReader(flate.NewReader(c.BR))
	for i, cmd := range []string{"a3 SELECT INBOX", "a4 NOOP", "a5 LOGOUT"} {
		fw.Write([]byte(cmd + "\r\n"))
		fw.Flush()
		tag := strings.Fields(cmd)[0]
		sawBye := false
		for {
			c.C.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := fr.ReadString('\n')
			if err != nil && sawBye && tag == "a5" {
				// Dovecot may close right after LOGOUT's BYE without
				// flushing its deflate stream; the relay passed on all it got.
				break
			}
			if err != nil {
				t.Fatalf("command %d: reading compressed reply: %v", i, err)
			}
			sawBye = sawBye || strings.HasPrefix(line, "* BYE")
			if strings.HasPrefix(line, tag+" ") {
				if !strings.HasPrefix(line, tag+" OK") {
					t.Fatalf("%s: %q", cmd, line)
				}
				break
			}
		}
	}
}

// TestIntegrationIMAPClientIPProxyProtocol: client_ip proxy sends a PROXY v2
// header to Dovecot's haproxy listener, which then logs the client's address.
func TestIntegrationIMAPClientIPProxyProtocol(t *testing.T) {
	for _, mode := range []proxy.TLSMode{proxy.TLSStartTLS, proxy.TLSNone} {
		t.Run(string(mode), func(t *testing.T) { testClientIPProxyProtocol(t, mode) })
	}
}

// testClientIPProxyProtocol: the PROXY v2 header gives Dovecot the client's
// address; without backend TLS it carries the SSL TLV, which Dovecot 2.4
// takes as a secured session (logged with TLS) and 2.3 accepts from a
// trusted network anyway.
func testClientIPProxyProtocol(t *testing.T, mode proxy.TLSMode) {
	dc := testenv.SharedDovecot(t)
	idp := testenv.SharedHydra(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: auth.TokenAuthenticator{Validator: auth.UserinfoValidator{URL: idp.UserinfoURL}},
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
	}, Options{Backend: proxy.Backend{Address: dc.HAProxyAddr, TLS: mode, TLSConfig: dc.TLSConfig(), ClientIP: "proxy"}})
	token := idp.MintToken(t, "alice@example.test", testenv.TokenOptions{})
	mark := dc.Log.Mark()
	c := proxytest.DialFrom(t, "127.0.0.9", tp.tlsAddr)
	tc := tls.Client(c.C, tp.clientTLS)
	c.C, c.BR = tc, bufio.NewReader(tc)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", token))
	c.Expect("a1 OK [CAPABILITY")
	line := dc.Log.WaitSince(t, mark, "rip=127.0.0.9", 10*time.Second)
	if !strings.Contains(line, "user=<alice@example.test>") {
		t.Fatalf("Dovecot login line = %q", line)
	}
	if mode == proxy.TLSNone && testenv.Generation() == "2.4" && !strings.Contains(line, "TLS") {
		t.Fatalf("Dovecot 2.4 login line = %q, want the session marked TLS (the SSL TLV)", line)
	}
}

// testPlaintextMasterLoginRefused: Dovecot 2.4 (ssl = required) refuses a
// master login over plaintext from a trusted network that is not its own
// address. The client gets a temporary failure; mailgate logs, once, what
// to change, and reports the problem for readiness.
func testPlaintextMasterLoginRefused(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
	}, Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSNone, ClientIP: "id"}})
	for i := 0; i < 2; i++ {
		c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
		c.Expect("* OK")
		c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
		c.Expect("a1 NO [UNAVAILABLE]")
	}
	logs := tp.logs.String()
	if n := strings.Count(logs, "backend configuration problem: every login will fail"); n != 1 {
		t.Fatalf("%d configuration error lines, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "imap.backend.tls") || !strings.Contains(tp.srv.BackendProblem("imap"), "imap.backend.client_ip: proxy") {
		t.Fatalf("the error does not name the settings to change: %q", tp.srv.BackendProblem("imap"))
	}
}
