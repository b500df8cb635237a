package smtp

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// Password passthrough over SMTP submission against the fake backend
// (proxytest.FakeSMTPBackend).

// newSMTPPasswordTest is newSMTPTest with SMTP password passthrough on (mod
// may change that) and a check that no password appears in the log.
func newSMTPPasswordTest(t *testing.T, fbOpts proxytest.FakeSMTPOptions, mod func(*proxy.Options, *Options)) (*smtpTestProxy, *proxytest.FakeSMTPBackend) {
	t.Helper()
	var tp *smtpTestProxy
	t.Cleanup(func() { // runs after the proxy has stopped
		if tp != nil {
			proxytest.CheckNoPasswords(t, tp.logs.String())
		}
	})
	tp, fb := newSMTPTest(t, fbOpts, func(o *proxy.Options, so *Options) {
		o.Passwords.SMTP = true
		if mod != nil {
			mod(o, so)
		}
	})
	return tp, fb
}

// TestSMTPPasswordAdvertised: PLAIN and LOGIN are offered after TLS only,
// and only with passthrough on.
func TestSMTPPasswordAdvertised(t *testing.T) {
	for _, tt := range []struct {
		on   bool
		want string
	}{
		{false, "OAUTHBEARER XOAUTH2"},
		{true, "OAUTHBEARER XOAUTH2 PLAIN LOGIN"},
	} {
		t.Run(fmt.Sprint("passthrough ", tt.on), func(t *testing.T) {
			tp, _ := newSMTPPasswordTest(t, proxytest.FakeSMTPOptions{}, func(o *proxy.Options, so *Options) { o.Passwords.SMTP = tt.on })
			c := proxytest.DialPlain(t, tp.plainAddr)
			c.SMTPExpect("220 ")
			if exts := c.SMTPEHLO(); proxytest.HasExt(exts, "AUTH") {
				t.Fatalf("EHLO before TLS = %q, want no AUTH", exts)
			}
			c.SMTPCmd("AUTH PLAIN "+proxytest.PlainIR(proxytest.FakeUser, proxytest.FakeUserPassword), "523 5.7.10")
			c.SMTPStartTLS(tp.clientTLS)
			if got := proxytest.ExtParam(c.SMTPEHLO(), "AUTH"); got != tt.want {
				t.Fatalf("AUTH after TLS = %q, want %q", got, tt.want)
			}
			if got := proxytest.ExtParam(tp.dialSubmissions(t).SMTPEHLO(), "AUTH"); got != tt.want {
				t.Fatalf("AUTH on implicit TLS = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSMTPPasswordOff: without passthrough PLAIN and LOGIN are unknown
// mechanisms and nothing reaches the backend.
func TestSMTPPasswordOff(t *testing.T) {
	tp, fb := newSMTPPasswordTest(t, proxytest.FakeSMTPOptions{}, func(o *proxy.Options, so *Options) { o.Passwords.SMTP = false })
	c := tp.dialSubmissions(t)
	c.SMTPCmd("AUTH PLAIN "+proxytest.PlainIR(proxytest.FakeUser, proxytest.FakeUserPassword), "504 5.5.4")
	c.SMTPCmd("AUTH LOGIN", "504 5.5.4")
	if fb.SawCommand("AUTH") {
		t.Fatal("the backend saw an AUTH")
	}
}

// TestSMTPPasswordLogin: PLAIN (with and without initial response) and
// LOGIN log in to the backend with the user's own credentials, never as the
// master user and never with XCLIENT LOGIN; the message goes through.
func TestSMTPPasswordLogin(t *testing.T) {
	for _, tt := range []struct {
		name    string
		backend proxy.Backend
		fb      proxytest.FakeSMTPOptions
		script  func(c *proxytest.Conn)
	}{
		{"PLAIN", proxy.Backend{}, proxytest.FakeSMTPOptions{}, func(c *proxytest.Conn) {
			c.SMTPCmd("AUTH PLAIN "+proxytest.PlainIR(proxytest.FakeUser, proxytest.FakeUserPassword), "235 2.7.0")
		}},
		{"PLAIN without initial response", proxy.Backend{}, proxytest.FakeSMTPOptions{}, func(c *proxytest.Conn) {
			c.SMTPCmd("AUTH PLAIN", "334 ")
			c.SMTPCmd(proxytest.PlainIR(proxytest.FakeUser, proxytest.FakeUserPassword), "235 2.7.0")
		}},
		{"LOGIN", proxy.Backend{}, proxytest.FakeSMTPOptions{}, func(c *proxytest.Conn) {
			c.SMTPCmd("AUTH LOGIN", "334 "+proxytest.B64("Username:"))
			c.SMTPCmd(proxytest.B64(proxytest.FakeUser), "334 "+proxytest.B64("Password:"))
			c.SMTPCmd(proxytest.B64(proxytest.FakeUserPassword), "235 2.7.0")
		}},
		{"LOGIN with initial response", proxy.Backend{}, proxytest.FakeSMTPOptions{}, func(c *proxytest.Conn) {
			c.SMTPCmd("AUTH LOGIN "+proxytest.B64(proxytest.FakeUser), "334 "+proxytest.B64("Password:"))
			c.SMTPCmd(proxytest.B64(proxytest.FakeUserPassword), "235 2.7.0")
		}},
		{"backend login xclient with addr", proxy.Backend{Login: "xclient", ClientIP: "xclient"}, proxytest.FakeSMTPOptions{XCLIENT: true}, func(c *proxytest.Conn) {
			c.SMTPCmd("AUTH PLAIN "+proxytest.PlainIR(proxytest.FakeUser, proxytest.FakeUserPassword), "235 2.7.0")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			th := &proxytest.RecordingThrottle{}
			tp, fb := newSMTPPasswordTest(t, tt.fb, func(o *proxy.Options, so *Options) {
				o.Passwords.Throttle = th
				so.Backend.Login, so.Backend.ClientIP = tt.backend.Login, tt.backend.ClientIP
			})
			c := tp.dialSubmissions(t)
			tt.script(c)
			c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
			c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
			c.SMTPCmd("DATA", "354 ")
			c.SMTPCmd("Subject: x\r\n\r\nx\r\n.", "250 2.0.0 Ok: queued as FAKE1")
			if m := fb.Messages()[0]; m.User != proxytest.FakeUser {
				t.Fatalf("backend message user %q", m.User)
			}
			if got, want := fb.AuthLines(), []string{"\x00" + proxytest.FakeUser + "\x00" + proxytest.FakeUserPassword}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("backend AUTH = %q, want the user's own PLAIN %q", got, want)
			}
			for _, l := range fb.Received() {
				if strings.HasPrefix(l, "XCLIENT") && strings.Contains(l, "LOGIN=") {
					t.Fatalf("XCLIENT LOGIN sent for a password login: %q", l)
				}
			}
			if got, want := th.Got(), []string{"check " + proxytest.FakeUser, "success " + proxytest.FakeUser}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("throttle saw %q, want %q", got, want)
			}
		})
	}
}

// TestSMTPPasswordRefused: the backend's 535 reaches the client verbatim
// and counts as a failure; what cannot be a valid login never reaches the
// backend.
func TestSMTPPasswordRefused(t *testing.T) {
	th := &proxytest.RecordingThrottle{}
	tp, fb := newSMTPPasswordTest(t, proxytest.FakeSMTPOptions{}, func(o *proxy.Options, so *Options) { o.Passwords.Throttle = th; o.Limits.MaxAuthFailures = 10 })
	c := tp.dialSubmissions(t)
	c.SMTPCmd("AUTH PLAIN "+proxytest.PlainIR(proxytest.FakeUser, "wrong-password"), "535 5.7.8 Error: authentication failed: (reason unavailable)")
	c.SMTPCmd("AUTH PLAIN "+proxytest.PlainIR("alice@example.test*mailgate", "master-secret"), "535 5.7.8")
	c.SMTPCmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString(auth.EncodePLAIN("bob@example.test", proxytest.FakeUser, proxytest.FakeUserPassword)), "535 5.7.8")
	c.SMTPCmd("AUTH PLAIN "+proxytest.B64("garbage"), "501 5.5.2")
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "530 5.7.0")
	if n := len(fb.AuthLines()); n != 1 {
		t.Fatalf("backend saw %d AUTHs, want 1", n)
	}
	want := []string{"check " + proxytest.FakeUser, "failure " + proxytest.FakeUser, "failure address"}
	if got := th.Got(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("throttle saw %q, want %q", got, want)
	}
}

// TestSMTPPasswordThrottled: with a real auth.Throttle (two failures, then
// the address is blocked) the backend sees two attempts and no more.
func TestSMTPPasswordThrottled(t *testing.T) {
	th := proxytest.NewTestThrottle(2)
	tp, fb := newSMTPPasswordTest(t, proxytest.FakeSMTPOptions{}, func(o *proxy.Options, so *Options) { o.Passwords.Throttle = th; o.Limits.MaxAuthFailures = 10 })
	c := tp.dialSubmissions(t)
	for i := 0; i < 2; i++ {
		c.SMTPCmd("AUTH PLAIN "+proxytest.PlainIR(proxytest.FakeUser, "wrong-password"), "535 5.7.8")
	}
	start := time.Now()
	c.SMTPCmd("AUTH PLAIN "+proxytest.PlainIR(proxytest.FakeUser, proxytest.FakeUserPassword), "454 4.7.0 Too many failed logins from your network")
	if d := time.Since(start); d > time.Second {
		t.Errorf("blocked attempt answered after %v, want at once", d)
	}
	if n := len(fb.AuthLines()); n != 2 {
		t.Fatalf("backend saw %d AUTHs, want 2", n)
	}
}

// TestSMTPPasswordBackendLost: a password session does not keep the password
// to reconnect: after the backend connection is lost the client is told to
// log in again (421) and the connection closes.
func TestSMTPPasswordBackendLost(t *testing.T) {
	tp, fb := newSMTPPasswordTest(t, proxytest.FakeSMTPOptions{CloseOnData: true}, nil)
	c := tp.dialSubmissions(t)
	c.SMTPCmd("AUTH PLAIN "+proxytest.PlainIR(proxytest.FakeUser, proxytest.FakeUserPassword), "235 ")
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.SMTPCmd("DATA", "451 4.4.2") // the backend closed instead of its 354
	conns := fb.ConnCount()
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "421 4.4.2")
	c.ExpectClosed()
	if fb.ConnCount() != conns {
		t.Fatal("a password session reconnected to the backend")
	}
}
