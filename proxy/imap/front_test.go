package imap

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

func newIMAPTest(t *testing.T) (*testProxy, *proxytest.FakeIMAPBackend) {
	t.Helper()
	fb := proxytest.StartFakeIMAPBackend(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Challenge:     auth.ChallengeOptions{OpenIDConfiguration: "https://idp.example.test/.well-known/openid-configuration", Scope: "openid email"},
	}, Options{Backend: proxy.Backend{Address: fb.Addr, TLS: proxy.TLSNone, ClientIP: "id"}})
	return tp, fb
}

func TestIMAPGreetingBeforeTLS(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := proxytest.DialPlain(t, tp.plainAddr)
	g := c.Expect("* OK [CAPABILITY ")
	if !strings.Contains(g, "STARTTLS LOGINDISABLED") || strings.Contains(g, "AUTH=") {
		t.Fatalf("greeting before TLS = %q, want STARTTLS LOGINDISABLED and no AUTH=", g)
	}
	c.Send("a1 CAPABILITY")
	caps := c.Expect("* CAPABILITY ")
	if caps != "* CAPABILITY "+capsPlain {
		t.Fatalf("CAPABILITY = %q", caps)
	}
	c.Expect("a1 OK")
	c.Send("a2 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	c.Expect("a2 NO [PRIVACYREQUIRED]")
	c.Send(`a3 LOGIN alice "secret"`)
	c.Expect("a3 NO [PRIVACYREQUIRED]")
	c.Send("a4 NOOP")
	c.Expect("a4 OK")
	c.Send("a5 LOGOUT")
	c.Expect("* BYE")
	c.Expect("a5 OK")
	c.ExpectClosed()
}

func TestIMAPStartTLSThenLogin(t *testing.T) {
	tp, fb := newIMAPTest(t)
	c := proxytest.DialPlain(t, tp.plainAddr)
	c.Expect("* OK")
	c.StartTLS(tp.clientTLS)
	c.Send("a1 CAPABILITY")
	if got := c.Expect("* CAPABILITY "); got != "* CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ AUTH=OAUTHBEARER AUTH=XOAUTH2" {
		t.Fatalf("CAPABILITY after TLS = %q", got)
	}
	c.Expect("a1 OK")
	c.Send("a2 AUTHENTICATE OAUTHBEARER " + proxytest.OAuthBearer("alice@example.test", proxytest.TestToken))
	if got := c.ReadLine(); got != "a2 OK [CAPABILITY "+proxytest.FakePostLoginCaps+"] Logged in" {
		t.Fatalf("login reply = %q, want the backend's verbatim", got)
	}
	c.Send("a3 SELECT INBOX")
	c.Expect("* ECHO SELECT INBOX")
	c.Expect("a3 OK")
	// The backend saw a master login on behalf of alice.
	var sawAuth bool
	for _, l := range fb.Received() {
		if strings.Contains(l, "AUTHENTICATE PLAIN ") {
			raw, _ := base64.StdEncoding.DecodeString(strings.Fields(l)[3])
			if string(raw) != "alice@example.test\x00mailgate\x00master-secret" {
				t.Fatalf("backend PLAIN = %q", raw)
			}
			sawAuth = true
		}
	}
	if !sawAuth {
		t.Fatal("backend never saw AUTHENTICATE PLAIN")
	}
}

func TestIMAPPipelinedAfterAuthenticate(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK [CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ AUTH=OAUTHBEARER AUTH=XOAUTH2]")
	// One write: AUTHENTICATE, SELECT, NOOP and LOGOUT. Nothing may be lost.
	c.C.Write([]byte("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken) + "\r\na2 SELECT INBOX\r\na3 NOOP\r\na4 LOGOUT\r\n"))
	c.Expect("a1 OK [CAPABILITY")
	c.Expect("* ECHO SELECT INBOX")
	c.Expect("a2 OK")
	c.Expect("* ECHO NOOP")
	c.Expect("a3 OK")
	c.Expect("* BYE")
	c.Expect("a4 OK")
	c.ExpectClosed()
}

func TestIMAPAuthenticateWithoutInitialResponse(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE xoauth2")
	if got := c.ReadLine(); got != "+ " {
		t.Fatalf("continuation = %q, want %q", got, "+ ")
	}
	c.Send(proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	c.Expect("a1 OK [CAPABILITY")
}

func TestIMAPBadTokenChallenge(t *testing.T) {
	for _, tt := range []struct {
		name, mech, ir, dummy string
		wantJSON              map[string]string
	}{
		{"xoauth2 empty dummy", "XOAUTH2", proxytest.XOAUTH2("alice@example.test", proxytest.BadToken), "",
			map[string]string{"status": "400", "schemes": "bearer", "scope": "openid email"}},
		{"oauthbearer AQ== dummy", "OAUTHBEARER", proxytest.OAuthBearer("alice@example.test", proxytest.BadToken), "AQ==",
			map[string]string{"status": "invalid_token", "scope": "openid email", "openid-configuration": "https://idp.example.test/.well-known/openid-configuration"}},
		{"oauthbearer = dummy", "OAUTHBEARER", proxytest.OAuthBearer("", proxytest.BadToken), "=",
			map[string]string{"status": "invalid_token"}},
		{"wrong user", "XOAUTH2", proxytest.XOAUTH2("bob@example.test", proxytest.TestToken), "",
			map[string]string{"status": "400"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tp, fb := newIMAPTest(t)
			c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
			c.Expect("* OK")
			c.Send("a1 AUTHENTICATE " + tt.mech + " " + tt.ir)
			line := c.Expect("+ ")
			raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, "+ "))
			if err != nil {
				t.Fatalf("challenge %q: %v", line, err)
			}
			var got map[string]string
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("challenge JSON %q: %v", raw, err)
			}
			for k, v := range tt.wantJSON {
				if got[k] != v {
					t.Errorf("challenge[%q] = %q, want %q (%s)", k, got[k], v, raw)
				}
			}
			c.Send(tt.dummy)
			c.Expect("a1 NO [AUTHENTICATIONFAILED]")
			c.Send("a2 NOOP")
			c.Expect("a2 OK")
			if n := fb.ConnCount(); n != 0 {
				t.Fatalf("backend was contacted %d times for a refused token", n)
			}
		})
	}
}

// TestIMAPNoDummyReply: a client that never answers the error challenge
// (some never send the dummy reply) gets the refusal after the login
// sequence's bounded wait, not the autologout, and may go on.
func TestIMAPNoDummyReply(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.BadToken))
	c.Expect("+ ")
	start := time.Now()
	c.Expect("a1 NO [AUTHENTICATIONFAILED] Authentication failed.")
	if d := time.Since(start); d < 4*time.Second || d > 8*time.Second {
		t.Errorf("refusal after %v, want after the dummy-reply wait (5 s)", d)
	}
	c.Send("a2 NOOP")
	c.Expect("a2 OK")
}

func TestIMAPProviderDown(t *testing.T) {
	tp, fb := newIMAPTest(t)
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.DownToken))
	c.Expect("a1 NO [UNAVAILABLE]")
	if n := fb.ConnCount(); n != 0 {
		t.Fatalf("backend contacted %d times while the provider is down", n)
	}
}

func TestIMAPBackendRefusesMailbox(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("nobody@example.test", "nobody-token"))
	c.Expect("a1 NO [AUTHENTICATIONFAILED]")
}

func TestIMAPBackendDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	tp := newTestProxy(t, proxy.Options{Authenticator: fakeAuthenticator}, Options{Backend: proxy.Backend{Address: addr}})
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	c.Expect("a1 NO [UNAVAILABLE]")
}

func TestIMAPCancelAndMalformed(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE OAUTHBEARER")
	c.Expect("+ ")
	c.Send("*")
	c.Expect("a1 BAD")
	c.Send("a2 AUTHENTICATE XOAUTH2 !!!notbase64")
	c.Expect("a2 BAD")
	c.Send("a3 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==")
	c.Expect("a3 NO")
	c.Send("a4 NOOP")
	c.Expect("a4 OK")
}

func TestIMAPLoginRefusedAfterTLS(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 LOGIN {18+}\r\nalice@example.test {6+}\r\nsecret")
	c.Expect("a1 NO [CANNOT]")
}

func TestIMAPTooManyErrors(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 FROB")
	c.Expect("a1 BAD")
	c.Send("a2 SELECT INBOX")
	c.Expect("a2 BAD")
	c.Send("GET / HTTP/1.1")
	c.Expect("GET BAD")
	c.Expect("* BYE")
	c.ExpectClosed()
}

func TestIMAPTooManyAuthFailures(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	for i := 0; i < 3; i++ {
		c.Send("a AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.BadToken))
		c.Expect("+ ")
		c.Send("")
		c.Expect("a NO [AUTHENTICATIONFAILED]")
	}
	c.Expect("* BYE")
	c.ExpectClosed()
}

func TestIMAPLineTooLong(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	go c.C.Write([]byte("a1 NOOP " + strings.Repeat("x", 70<<10) + "\r\n"))
	c.Expect("* BYE")
}

func TestIMAPSynchronizingLiteral(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send(`a1 ID ("name" {11}`)
	c.Expect("+ ")
	c.Send(`Thunderbird "x-originating-ip" "6.6.6.6")`)
	c.Expect(`* ID ("name" "mailgate")`)
	c.Expect("a1 OK")
	c.Send("a2 LOGIN {999999}")
	c.Expect("a2 BAD")
}

// TestSecurityIMAPStartTLSInjection: plaintext pipelined behind STARTTLS must
// never be executed after the handshake (CVE-2011-0411 class).
func TestSecurityIMAPStartTLSInjection(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := proxytest.DialPlain(t, tp.plainAddr)
	c.Expect("* OK")
	c.C.Write([]byte("s1 STARTTLS\r\na2 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken) + "\r\n"))
	c.Expect("s1 BAD")
	c.Expect("* BYE")
	c.ExpectClosed()
}

func TestIMAPIDPassesClientAddress(t *testing.T) {
	tp, fb := newIMAPTest(t)
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send(`a0 ID ("name" "Thunderbird" "x-originating-ip" "6.6.6.6" "version" "128.0")`)
	c.Expect("* ID")
	c.Expect("a0 OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	c.Expect("a1 OK")
	var id string
	for _, l := range fb.Received() {
		if strings.HasPrefix(l, "mg1 ID ") {
			id = l
		}
	}
	local := c.C.LocalAddr().(*net.TCPAddr)
	for _, want := range []string{
		`"x-originating-ip" "127.0.0.1"`,
		`"x-originating-port" "` + strconv.Itoa(local.Port) + `"`,
		`"x-connected-ip" "127.0.0.1"`,
		`"x-session-ext-id" "`,
		`"name" "Thunderbird"`,
		`"version" "128.0"`,
	} {
		if !strings.Contains(id, want) {
			t.Errorf("backend ID %q lacks %s", id, want)
		}
	}
	if strings.Contains(id, "6.6.6.6") {
		t.Errorf("client-supplied x-originating-ip reached the backend: %q", id)
	}
}

func TestIMAPPreauthTimeout(t *testing.T) {
	fb := proxytest.StartFakeIMAPBackend(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Limits:        proxy.Limits{PreauthTimeout: 300 * time.Millisecond},
	}, Options{Backend: proxy.Backend{Address: fb.Addr}})
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Expect("* BYE")
	c.ExpectClosed()
}
