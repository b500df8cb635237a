package imap

import (
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// Password passthrough over IMAP against the fake backend (fakebackend_test.go).

// newIMAPPasswordTest starts the fake backend and a proxy with IMAP
// password passthrough on (mod may change the options), and fails the test
// if a password or a PLAIN message appears in the proxy's log.
func newIMAPPasswordTest(t *testing.T, mod func(*proxy.Options, *Options)) (*testProxy, *proxytest.FakeIMAPBackend) {
	t.Helper()
	var tp *testProxy
	t.Cleanup(func() { // runs after the proxy has stopped
		if tp != nil {
			proxytest.CheckNoPasswords(t, tp.logs.String())
		}
	})
	fb := proxytest.StartFakeIMAPBackend(t)
	opts := proxy.Options{
		Authenticator: fakeAuthenticator,
		Passwords:     proxy.PasswordOptions{IMAP: true},
	}
	fo := Options{Backend: proxy.Backend{Address: fb.Addr, TLS: proxy.TLSNone, ClientIP: "id"}}
	if mod != nil {
		mod(&opts, &fo)
	}
	tp = newTestProxy(t, opts, fo)
	return tp, fb
}

// TestIMAPPasswordCapabilities: AUTH=PLAIN and AUTH=LOGIN (and no
// LOGINDISABLED) are advertised after TLS only, and only with passthrough on.
func TestIMAPPasswordCapabilities(t *testing.T) {
	for _, tt := range []struct {
		name     string
		on, tls  bool
		wantCaps string
	}{
		{"off before TLS", false, false, capsPlain},
		{"on before TLS", true, false, capsPlain},
		{"off after TLS", false, true, "IMAP4rev1 SASL-IR ID LITERAL+ AUTH=OAUTHBEARER AUTH=XOAUTH2"},
		{"on after TLS", true, true, "IMAP4rev1 SASL-IR ID LITERAL+ AUTH=OAUTHBEARER AUTH=XOAUTH2 AUTH=PLAIN AUTH=LOGIN"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tp, _ := newIMAPPasswordTest(t, func(o *proxy.Options, fo *Options) { o.Passwords.IMAP = tt.on })
			c := proxytest.DialPlain(t, tp.plainAddr)
			g := c.Expect("* OK [CAPABILITY ")
			if tt.tls {
				c.StartTLS(tp.clientTLS)
			} else if g != "* OK [CAPABILITY "+capsPlain+"] "+greetingText {
				t.Fatalf("greeting = %q", g)
			}
			c.Send("a1 CAPABILITY")
			if got := c.Expect("* CAPABILITY "); got != "* CAPABILITY "+tt.wantCaps {
				t.Fatalf("CAPABILITY = %q, want %q", got, "* CAPABILITY "+tt.wantCaps)
			}
			c.Expect("a1 OK")
			// The implicit-TLS greeting says the same.
			if tt.tls {
				c2 := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
				if got := c2.Expect("* OK [CAPABILITY "); got != "* OK [CAPABILITY "+tt.wantCaps+"] "+greetingText {
					t.Fatalf("implicit TLS greeting = %q", got)
				}
			}
		})
	}
}

// TestIMAPPasswordRefusedWhenOffOrBeforeTLS: without passthrough a password
// never reaches the backend; with it, not before TLS either.
func TestIMAPPasswordRefusedWhenOffOrBeforeTLS(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		tp, fb := newIMAPPasswordTest(t, func(o *proxy.Options, fo *Options) { o.Passwords.IMAP = false })
		c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
		c.Expect("* OK")
		c.Send(fmt.Sprintf(`a1 LOGIN %s "%s"`, proxytest.FakeUser, proxytest.FakeUserPassword))
		c.Expect("a1 NO [CANNOT]")
		c.Send("a2 AUTHENTICATE PLAIN " + proxytest.PlainIR(proxytest.FakeUser, proxytest.FakeUserPassword))
		c.Expect("a2 NO Unsupported authentication mechanism.")
		c.Send("a3 AUTHENTICATE LOGIN")
		c.Expect("a3 NO Unsupported authentication mechanism.")
		if n := fb.ConnCount(); n != 0 {
			t.Fatalf("backend contacted %d times", n)
		}
	})
	t.Run("on, before TLS", func(t *testing.T) {
		tp, fb := newIMAPPasswordTest(t, nil)
		c := proxytest.DialPlain(t, tp.plainAddr)
		c.Expect("* OK")
		c.Send(fmt.Sprintf(`a1 LOGIN %s "%s"`, proxytest.FakeUser, proxytest.FakeUserPassword))
		c.Expect("a1 NO [PRIVACYREQUIRED]")
		c.Send("a2 AUTHENTICATE PLAIN " + proxytest.PlainIR(proxytest.FakeUser, proxytest.FakeUserPassword))
		c.Expect("a2 NO [PRIVACYREQUIRED]")
		if n := fb.ConnCount(); n != 0 {
			t.Fatalf("backend contacted %d times", n)
		}
	})
}

// TestIMAPPasswordLogin: every way of giving a password logs in to the
// backend with the user's own credentials (no master user), the backend's
// tagged OK reaches the client verbatim, and the relay works.
func TestIMAPPasswordLogin(t *testing.T) {
	for _, tt := range []struct {
		name   string
		script func(c *proxytest.Conn)
	}{
		{"LOGIN quoted", func(c *proxytest.Conn) {
			c.Send(fmt.Sprintf(`a1 LOGIN "%s" "%s"`, proxytest.FakeUser, proxytest.FakeUserPassword))
		}},
		{"LOGIN atom and literal", func(c *proxytest.Conn) {
			c.Send(fmt.Sprintf("a1 LOGIN %s {%d}", proxytest.FakeUser, len(proxytest.FakeUserPassword)))
			c.Expect("+ ")
			c.Send(proxytest.FakeUserPassword)
		}},
		{"LOGIN non-synchronizing literals", func(c *proxytest.Conn) {
			c.Send(fmt.Sprintf("a1 LOGIN {%d+}\r\n%s {%d+}\r\n%s", len(proxytest.FakeUser), proxytest.FakeUser, len(proxytest.FakeUserPassword), proxytest.FakeUserPassword))
		}},
		{"AUTHENTICATE PLAIN with initial response", func(c *proxytest.Conn) {
			c.Send("a1 AUTHENTICATE PLAIN " + proxytest.PlainIR(proxytest.FakeUser, proxytest.FakeUserPassword))
		}},
		{"AUTHENTICATE PLAIN, authzid = user", func(c *proxytest.Conn) {
			c.Send("a1 AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString(auth.EncodePLAIN(proxytest.FakeUser, proxytest.FakeUser, proxytest.FakeUserPassword)))
		}},
		{"AUTHENTICATE plain without initial response", func(c *proxytest.Conn) {
			c.Send("a1 AUTHENTICATE plain")
			if got := c.ReadLine(); got != "+ " {
				c.T.Fatalf("continuation = %q, want %q", got, "+ ")
			}
			c.Send(proxytest.PlainIR(proxytest.FakeUser, proxytest.FakeUserPassword))
		}},
		{"AUTHENTICATE LOGIN", func(c *proxytest.Conn) {
			c.Send("a1 AUTHENTICATE LOGIN")
			if got := c.ReadLine(); got != "+ "+proxytest.B64("Username:") {
				c.T.Fatalf("challenge = %q, want Username:", got)
			}
			c.Send(proxytest.B64(proxytest.FakeUser))
			if got := c.ReadLine(); got != "+ "+proxytest.B64("Password:") {
				c.T.Fatalf("challenge = %q, want Password:", got)
			}
			c.Send(proxytest.B64(proxytest.FakeUserPassword))
		}},
		{"AUTHENTICATE LOGIN with initial response", func(c *proxytest.Conn) {
			c.Send("a1 AUTHENTICATE LOGIN " + proxytest.B64(proxytest.FakeUser))
			c.Expect("+ " + proxytest.B64("Password:"))
			c.Send(proxytest.B64(proxytest.FakeUserPassword))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			th := &proxytest.RecordingThrottle{}
			tp, fb := newIMAPPasswordTest(t, func(o *proxy.Options, fo *Options) { o.Passwords.Throttle = th })
			c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
			c.Expect("* OK")
			tt.script(c)
			if got := c.ReadLine(); got != "a1 OK [CAPABILITY "+proxytest.FakePostLoginCaps+"] Logged in" {
				t.Fatalf("login reply = %q, want the backend's verbatim", got)
			}
			c.Send("a2 SELECT INBOX")
			c.Expect("* ECHO SELECT INBOX")
			c.Expect("a2 OK")
			if got, want := fb.BackendLogins(), []string{"\x00" + proxytest.FakeUser + "\x00" + proxytest.FakeUserPassword}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("backend logins = %q, want the user's own PLAIN %q", got, want)
			}
			// ID with the client's address came first, as for token logins.
			if r := fb.Received(); len(r) < 2 || !strings.Contains(r[0], " ID (\"x-originating-ip\" \"127.0.0.1\"") {
				t.Fatalf("backend lines = %q, want ID first", r)
			}
			if got, want := th.Got(), []string{"check " + proxytest.FakeUser, "success " + proxytest.FakeUser}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("throttle saw %q, want %q", got, want)
			}
		})
	}
}

// TestIMAPPasswordRefused: the backend's refusal reaches the client verbatim,
// counts for the throttle and the per-connection limit; what cannot be a
// valid login never reaches the backend.
func TestIMAPPasswordRefused(t *testing.T) {
	th := &proxytest.RecordingThrottle{}
	tp, fb := newIMAPPasswordTest(t, func(o *proxy.Options, fo *Options) { o.Passwords.Throttle = th; o.Limits.MaxAuthFailures = 4 })
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send(fmt.Sprintf(`a1 LOGIN %s wrong-password`, proxytest.FakeUser))
	if got := c.ReadLine(); got != "a1 NO [AUTHENTICATIONFAILED] Authentication failed." {
		t.Fatalf("reply = %q, want the backend's verbatim", got)
	}
	if n := len(fb.BackendLogins()); n != 1 {
		t.Fatalf("backend saw %d logins, want 1", n)
	}
	// Never sent to the backend: a master-user login in disguise, another
	// user's authorization identity, an empty password.
	c.Send(`a2 LOGIN "alice@example.test*mailgate" master-secret`)
	c.Expect("a2 NO [AUTHENTICATIONFAILED]")
	c.Send("a3 AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString(auth.EncodePLAIN("bob@example.test", proxytest.FakeUser, proxytest.FakeUserPassword)))
	c.Expect("a3 NO [AUTHENTICATIONFAILED]")
	c.Send(`a4 LOGIN alice@example.test ""`)
	c.Expect("a4 NO [AUTHENTICATIONFAILED]")
	c.Expect("* BYE Too many authentication failures.")
	c.ExpectClosed()
	if n := len(fb.BackendLogins()); n != 1 {
		t.Fatalf("backend saw %d logins, want still 1", n)
	}
	// Only a password the backend judged charges the user; what never
	// reached it charges the address.
	want := []string{"check " + proxytest.FakeUser, "failure " + proxytest.FakeUser, "failure address", "failure address"}
	if got := th.Got(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("throttle saw %q, want %q", got, want)
	}
	// Malformed PLAIN is a protocol error, not a failed password.
	c = proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("b1 AUTHENTICATE PLAIN " + proxytest.B64("no-nul-here"))
	c.Expect("b1 BAD")
	c.Send("b2 AUTHENTICATE PLAIN")
	c.Expect("+ ")
	c.Send("*")
	c.Expect("b2 BAD AUTHENTICATE canceled.")
	c.Send("b3 NOOP")
	c.Expect("b3 OK")
}

// TestIMAPPasswordThrottleFirst: the throttle is asked before the backend
// sees anything, and a refusal there never reaches the backend.
func TestIMAPPasswordThrottleFirst(t *testing.T) {
	th := &proxytest.RecordingThrottle{}
	tp, fb := newIMAPPasswordTest(t, func(o *proxy.Options, fo *Options) { o.Passwords.Throttle = th })
	th.OnCheck = func() {
		if n := fb.ConnCount(); n != 0 {
			t.Errorf("backend contacted %d times before the throttle's check", n)
		}
	}
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	th.Refuse = true
	c.Send(fmt.Sprintf(`a1 LOGIN %s %s`, proxytest.FakeUser, proxytest.FakeUserPassword))
	c.Expect("a1 NO [AUTHENTICATIONFAILED] Authentication failed.")
	if n := fb.ConnCount(); n != 0 {
		t.Fatalf("a throttled attempt reached the backend (%d connections)", n)
	}
}

// TestIMAPPasswordThrottled: with a real auth.Throttle (two failures, then
// the address is blocked), the backend sees two wrong passwords and nothing
// more, not even the right one; the block comes from mailgate at once.
func TestIMAPPasswordThrottled(t *testing.T) {
	th := proxytest.NewTestThrottle(2)
	tp, fb := newIMAPPasswordTest(t, func(o *proxy.Options, fo *Options) { o.Passwords.Throttle = th; o.Limits.MaxAuthFailures = 10 })
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	for i := 0; i < 2; i++ {
		c.Send(fmt.Sprintf(`a%d LOGIN %s wrong-password`, i, proxytest.FakeUser))
		c.Expect(fmt.Sprintf("a%d NO [AUTHENTICATIONFAILED]", i))
	}
	for i, pw := range []string{"wrong-password", proxytest.FakeUserPassword} {
		start := time.Now()
		c.Send(fmt.Sprintf(`b%d LOGIN %s %s`, i, proxytest.FakeUser, pw))
		c.Expect(fmt.Sprintf("b%d NO [LIMIT] Too many failed logins from your network", i))
		if d := time.Since(start); d > time.Second {
			t.Errorf("blocked attempt answered after %v, want at once", d)
		}
	}
	if n := len(fb.BackendLogins()); n != 2 {
		t.Fatalf("backend saw %d logins, want 2", n)
	}
}

// TestIMAPPasswordThrottleDelay: above the allowance an attempt is delayed
// by mailgate before it goes to the backend; a success resets the score.
func TestIMAPPasswordThrottleDelay(t *testing.T) {
	const delay = 400 * time.Millisecond
	th := auth.NewThrottle(auth.ThrottleOptions{Failures: 1, BaseDelay: delay, MaxDelay: delay, BlockAfter: 100})
	tp, fb := newIMAPPasswordTest(t, func(o *proxy.Options, fo *Options) { o.Passwords.Throttle = th; o.Limits.MaxAuthFailures = 10 })
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	for i := 0; i < 2; i++ {
		c.Send(fmt.Sprintf(`a%d LOGIN %s wrong-password`, i, proxytest.FakeUser))
		c.Expect(fmt.Sprintf("a%d NO [AUTHENTICATIONFAILED]", i))
	}
	start := time.Now()
	c.Send(fmt.Sprintf(`a2 LOGIN %s %s`, proxytest.FakeUser, proxytest.FakeUserPassword))
	c.Expect("a2 OK")
	if d := time.Since(start); d < delay {
		t.Fatalf("third attempt answered after %v, want a delay of at least %v", d, delay)
	}
	if n := len(fb.BackendLogins()); n != 3 {
		t.Fatalf("backend saw %d logins, want 3", n)
	}
	// Success is recorded right after the backend's OK went to the client.
	proxytest.WaitFor(t, "the throttle to forget the failures", func() bool {
		d, _ := th.Delay("127.0.0.1", proxytest.FakeUser)
		return d == 0
	})
}

// TestIMAPPasswordBackendDown: an unreachable backend is a temporary
// failure, not a wrong password.
func TestIMAPPasswordBackendDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	th := &proxytest.RecordingThrottle{}
	tp, _ := newIMAPPasswordTest(t, func(o *proxy.Options, fo *Options) { fo.Backend.Address = addr; o.Passwords.Throttle = th })
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send(fmt.Sprintf(`a1 LOGIN %s %s`, proxytest.FakeUser, proxytest.FakeUserPassword))
	c.Expect("a1 NO [UNAVAILABLE]")
	if got := th.Got(); fmt.Sprint(got) != fmt.Sprint([]string{"check " + proxytest.FakeUser, "undecided " + proxytest.FakeUser}) {
		t.Fatalf("throttle saw %q, want the check and no verdict", got)
	}
}

// TestIMAPPasswordAbandoned: a password exchange the client abandons ("*"
// at either prompt, or a hang-up) is not a failed password: the throttle
// hears nothing of it and the backend sees nothing.
func TestIMAPPasswordAbandoned(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mech   string
		prompt []string // challenges to answer before the last one
		hangup bool
		result string
	}{
		{"PLAIN canceled", "PLAIN", nil, false, "result=canceled"},
		{"PLAIN dropped", "PLAIN", nil, true, "result=aborted"},
		{"LOGIN canceled at the password", "LOGIN", []string{"Username:"}, false, "result=canceled"},
		{"LOGIN dropped at the password", "LOGIN", []string{"Username:"}, true, "result=aborted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			th := &proxytest.RecordingThrottle{}
			tp, fb := newIMAPPasswordTest(t, func(o *proxy.Options, fo *Options) { o.Passwords.Throttle = th })
			c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
			c.Expect("* OK")
			c.Send("a1 AUTHENTICATE " + tt.mech)
			for _, p := range tt.prompt {
				c.Expect("+ " + proxytest.B64(p))
				c.Send(proxytest.B64(proxytest.FakeUser))
			}
			c.Expect("+ ")
			if tt.hangup {
				c.C.Close()
			} else {
				c.Send("*")
				c.Expect("a1 BAD AUTHENTICATE canceled.")
			}
			proxytest.WaitFor(t, "the login's log line", func() bool { return strings.Contains(tp.logs.String(), tt.result) })
			if got := th.Got(); len(got) != 0 {
				t.Errorf("throttle saw %q, want nothing", got)
			}
			if n := len(fb.BackendLogins()); n != 0 {
				t.Errorf("backend saw %d logins, want none", n)
			}
		})
	}
}
