package proxy

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
)

func newIMAPTest(t *testing.T) (*testProxy, *fakeIMAPBackend) {
	t.Helper()
	fb := startFakeIMAPBackend(t)
	tp := newTestProxy(t, Options{
		Authenticator: fakeAuthenticator,
		IMAPBackend:   Backend{Address: fb.addr, TLS: TLSNone, ClientIP: "id"},
		Challenge:     auth.ChallengeOptions{OpenIDConfiguration: "https://idp.example.test/.well-known/openid-configuration", Scope: "openid email"},
	})
	return tp, fb
}

func TestIMAPGreetingBeforeTLS(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := dialPlain(t, tp.plainAddr)
	g := c.expect("* OK [CAPABILITY ")
	if !strings.Contains(g, "STARTTLS LOGINDISABLED") || strings.Contains(g, "AUTH=") {
		t.Fatalf("greeting before TLS = %q, want STARTTLS LOGINDISABLED and no AUTH=", g)
	}
	c.send("a1 CAPABILITY")
	caps := c.expect("* CAPABILITY ")
	if caps != "* CAPABILITY "+imapCapsPlain {
		t.Fatalf("CAPABILITY = %q", caps)
	}
	c.expect("a1 OK")
	c.send("a2 AUTHENTICATE XOAUTH2 " + xoauth2("alice@example.test", testToken))
	c.expect("a2 NO [PRIVACYREQUIRED]")
	c.send(`a3 LOGIN alice "secret"`)
	c.expect("a3 NO [PRIVACYREQUIRED]")
	c.send("a4 NOOP")
	c.expect("a4 OK")
	c.send("a5 LOGOUT")
	c.expect("* BYE")
	c.expect("a5 OK")
	c.expectClosed()
}

func TestIMAPStartTLSThenLogin(t *testing.T) {
	tp, fb := newIMAPTest(t)
	c := dialPlain(t, tp.plainAddr)
	c.expect("* OK")
	c.starttls(tp.clientTLS)
	c.send("a1 CAPABILITY")
	if got := c.expect("* CAPABILITY "); got != "* CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ AUTH=OAUTHBEARER AUTH=XOAUTH2" {
		t.Fatalf("CAPABILITY after TLS = %q", got)
	}
	c.expect("a1 OK")
	c.send("a2 AUTHENTICATE OAUTHBEARER " + oauthbearer("alice@example.test", testToken))
	if got := c.readLine(); got != "a2 OK [CAPABILITY "+fakePostLoginCaps+"] Logged in" {
		t.Fatalf("login reply = %q, want the backend's verbatim", got)
	}
	c.send("a3 SELECT INBOX")
	c.expect("* ECHO SELECT INBOX")
	c.expect("a3 OK")
	// The backend saw a master login on behalf of alice.
	var sawAuth bool
	for _, l := range fb.received() {
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
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK [CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ AUTH=OAUTHBEARER AUTH=XOAUTH2]")
	// One write: AUTHENTICATE, SELECT, NOOP and LOGOUT. Nothing may be lost.
	c.c.Write([]byte("a1 AUTHENTICATE XOAUTH2 " + xoauth2("alice@example.test", testToken) + "\r\na2 SELECT INBOX\r\na3 NOOP\r\na4 LOGOUT\r\n"))
	c.expect("a1 OK [CAPABILITY")
	c.expect("* ECHO SELECT INBOX")
	c.expect("a2 OK")
	c.expect("* ECHO NOOP")
	c.expect("a3 OK")
	c.expect("* BYE")
	c.expect("a4 OK")
	c.expectClosed()
}

func TestIMAPAuthenticateWithoutInitialResponse(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK")
	c.send("a1 AUTHENTICATE xoauth2")
	if got := c.readLine(); got != "+ " {
		t.Fatalf("continuation = %q, want %q", got, "+ ")
	}
	c.send(xoauth2("alice@example.test", testToken))
	c.expect("a1 OK [CAPABILITY")
}

func TestIMAPBadTokenChallenge(t *testing.T) {
	for _, tt := range []struct {
		name, mech, ir, dummy string
		wantJSON              map[string]string
	}{
		{"xoauth2 empty dummy", "XOAUTH2", xoauth2("alice@example.test", badToken), "",
			map[string]string{"status": "401", "schemes": "bearer", "scope": "openid email"}},
		{"oauthbearer AQ== dummy", "OAUTHBEARER", oauthbearer("alice@example.test", badToken), "AQ==",
			map[string]string{"status": "invalid_token", "scope": "openid email", "openid-configuration": "https://idp.example.test/.well-known/openid-configuration"}},
		{"oauthbearer = dummy", "OAUTHBEARER", oauthbearer("", badToken), "=",
			map[string]string{"status": "invalid_token"}},
		{"wrong user", "XOAUTH2", xoauth2("bob@example.test", testToken), "",
			map[string]string{"status": "401"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tp, fb := newIMAPTest(t)
			c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
			c.expect("* OK")
			c.send("a1 AUTHENTICATE " + tt.mech + " " + tt.ir)
			line := c.expect("+ ")
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
			c.send(tt.dummy)
			c.expect("a1 NO [AUTHENTICATIONFAILED]")
			c.send("a2 NOOP")
			c.expect("a2 OK")
			if n := fb.connCount(); n != 0 {
				t.Fatalf("backend was contacted %d times for a refused token", n)
			}
		})
	}
}

func TestIMAPProviderDown(t *testing.T) {
	tp, fb := newIMAPTest(t)
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK")
	c.send("a1 AUTHENTICATE XOAUTH2 " + xoauth2("alice@example.test", downToken))
	c.expect("a1 NO [UNAVAILABLE]")
	if n := fb.connCount(); n != 0 {
		t.Fatalf("backend contacted %d times while the provider is down", n)
	}
}

func TestIMAPBackendRefusesMailbox(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK")
	c.send("a1 AUTHENTICATE XOAUTH2 " + xoauth2("nobody@example.test", "nobody-token"))
	c.expect("a1 NO [AUTHENTICATIONFAILED]")
}

func TestIMAPBackendDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	tp := newTestProxy(t, Options{Authenticator: fakeAuthenticator, IMAPBackend: Backend{Address: addr}})
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK")
	c.send("a1 AUTHENTICATE XOAUTH2 " + xoauth2("alice@example.test", testToken))
	c.expect("a1 NO [UNAVAILABLE]")
}

func TestIMAPCancelAndMalformed(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK")
	c.send("a1 AUTHENTICATE OAUTHBEARER")
	c.expect("+ ")
	c.send("*")
	c.expect("a1 BAD")
	c.send("a2 AUTHENTICATE XOAUTH2 !!!notbase64")
	c.expect("a2 BAD")
	c.send("a3 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==")
	c.expect("a3 NO")
	c.send("a4 NOOP")
	c.expect("a4 OK")
}

func TestIMAPLoginRefusedAfterTLS(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK")
	c.send("a1 LOGIN {18+}\r\nalice@example.test {6+}\r\nsecret")
	c.expect("a1 NO [CANNOT]")
}

func TestIMAPTooManyErrors(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK")
	c.send("a1 FROB")
	c.expect("a1 BAD")
	c.send("a2 SELECT INBOX")
	c.expect("a2 BAD")
	c.send("GET / HTTP/1.1")
	c.expect("GET BAD")
	c.expect("* BYE")
	c.expectClosed()
}

func TestIMAPTooManyAuthFailures(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK")
	for i := 0; i < 3; i++ {
		c.send("a AUTHENTICATE XOAUTH2 " + xoauth2("alice@example.test", badToken))
		c.expect("+ ")
		c.send("")
		c.expect("a NO [AUTHENTICATIONFAILED]")
	}
	c.expect("* BYE")
	c.expectClosed()
}

func TestIMAPLineTooLong(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK")
	go c.c.Write([]byte("a1 NOOP " + strings.Repeat("x", 70<<10) + "\r\n"))
	c.expect("* BYE")
}

func TestIMAPSynchronizingLiteral(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK")
	c.send(`a1 ID ("name" {11}`)
	c.expect("+ ")
	c.send(`Thunderbird "x-originating-ip" "6.6.6.6")`)
	c.expect(`* ID ("name" "mailgate")`)
	c.expect("a1 OK")
	c.send("a2 LOGIN {999999}")
	c.expect("a2 BAD")
}

// TestSecurityIMAPStartTLSInjection: plaintext pipelined behind STARTTLS must
// never be executed after the handshake (CVE-2011-0411 class).
func TestSecurityIMAPStartTLSInjection(t *testing.T) {
	tp, _ := newIMAPTest(t)
	c := dialPlain(t, tp.plainAddr)
	c.expect("* OK")
	c.c.Write([]byte("s1 STARTTLS\r\na2 AUTHENTICATE XOAUTH2 " + xoauth2("alice@example.test", testToken) + "\r\n"))
	c.expect("s1 BAD")
	c.expect("* BYE")
	c.expectClosed()
}

func TestIMAPIDPassesClientAddress(t *testing.T) {
	tp, fb := newIMAPTest(t)
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK")
	c.send(`a0 ID ("name" "Thunderbird" "x-originating-ip" "6.6.6.6" "version" "128.0")`)
	c.expect("* ID")
	c.expect("a0 OK")
	c.send("a1 AUTHENTICATE XOAUTH2 " + xoauth2("alice@example.test", testToken))
	c.expect("a1 OK")
	var id string
	for _, l := range fb.received() {
		if strings.HasPrefix(l, "mg1 ID ") {
			id = l
		}
	}
	local := c.c.LocalAddr().(*net.TCPAddr)
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
	fb := startFakeIMAPBackend(t)
	tp := newTestProxy(t, Options{
		Authenticator: fakeAuthenticator,
		IMAPBackend:   Backend{Address: fb.addr},
		Limits:        Limits{PreauthTimeout: 300 * time.Millisecond},
	})
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.expect("* OK")
	c.expect("* BYE")
	c.expectClosed()
}
