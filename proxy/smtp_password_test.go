package proxy

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// Password passthrough over SMTP submission against the fake backend
// (smtp_fakebackend_test.go).

// newSMTPPasswordTest is newSMTPTest with SMTP password passthrough on (mod
// may change that) and a check that no password appears in the log.
func newSMTPPasswordTest(t *testing.T, fbOpts fakeSMTPOptions, mod func(*Options)) (*smtpTestProxy, *fakeSMTPBackend) {
	t.Helper()
	var tp *smtpTestProxy
	t.Cleanup(func() { // runs after the proxy has stopped
		if tp != nil {
			checkNoPasswords(t, tp.logs.String())
		}
	})
	tp, fb := newSMTPTest(t, fbOpts, func(o *Options) {
		o.Passwords.SMTP = true
		if mod != nil {
			mod(o)
		}
	})
	return tp, fb
}

// authLines returns the decoded PLAIN messages of the AUTH commands the fake
// backend received.
func (fb *fakeSMTPBackend) authLines() []string {
	var out []string
	for _, l := range fb.received() {
		f := strings.Fields(l)
		if len(f) == 3 && strings.EqualFold(f[0], "AUTH") {
			raw, _ := base64.StdEncoding.DecodeString(f[2])
			out = append(out, string(raw))
		}
	}
	return out
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
			tp, _ := newSMTPPasswordTest(t, fakeSMTPOptions{}, func(o *Options) { o.Passwords.SMTP = tt.on })
			c := dialPlain(t, tp.plainAddr)
			c.smtpExpect("220 ")
			if exts := c.smtpEHLO(); hasExt(exts, "AUTH") {
				t.Fatalf("EHLO before TLS = %q, want no AUTH", exts)
			}
			c.smtpCmd("AUTH PLAIN "+plainIR(fakeUser, fakeUserPassword), "523 5.7.10")
			c.smtpStartTLS(tp.clientTLS)
			if got := extParam(c.smtpEHLO(), "AUTH"); got != tt.want {
				t.Fatalf("AUTH after TLS = %q, want %q", got, tt.want)
			}
			if got := extParam(tp.dialSubmissions(t).smtpEHLO(), "AUTH"); got != tt.want {
				t.Fatalf("AUTH on implicit TLS = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSMTPPasswordOff: without passthrough PLAIN and LOGIN are unknown
// mechanisms and nothing reaches the backend.
func TestSMTPPasswordOff(t *testing.T) {
	tp, fb := newSMTPPasswordTest(t, fakeSMTPOptions{}, func(o *Options) { o.Passwords.SMTP = false })
	c := tp.dialSubmissions(t)
	c.smtpCmd("AUTH PLAIN "+plainIR(fakeUser, fakeUserPassword), "504 5.7.4")
	c.smtpCmd("AUTH LOGIN", "504 5.7.4")
	if fb.sawCommand("AUTH") {
		t.Fatal("the backend saw an AUTH")
	}
}

// TestSMTPPasswordLogin: PLAIN (with and without initial response) and
// LOGIN log in to the backend with the user's own credentials, never as the
// master user and never with XCLIENT LOGIN; the message goes through.
func TestSMTPPasswordLogin(t *testing.T) {
	for _, tt := range []struct {
		name    string
		backend Backend
		fb      fakeSMTPOptions
		script  func(c *tconn)
	}{
		{"PLAIN", Backend{}, fakeSMTPOptions{}, func(c *tconn) {
			c.smtpCmd("AUTH PLAIN "+plainIR(fakeUser, fakeUserPassword), "235 2.0.0")
		}},
		{"PLAIN without initial response", Backend{}, fakeSMTPOptions{}, func(c *tconn) {
			c.smtpCmd("AUTH PLAIN", "334 ")
			c.smtpCmd(plainIR(fakeUser, fakeUserPassword), "235 2.0.0")
		}},
		{"LOGIN", Backend{}, fakeSMTPOptions{}, func(c *tconn) {
			c.smtpCmd("AUTH LOGIN", "334 "+b64("Username:"))
			c.smtpCmd(b64(fakeUser), "334 "+b64("Password:"))
			c.smtpCmd(b64(fakeUserPassword), "235 2.0.0")
		}},
		{"LOGIN with initial response", Backend{}, fakeSMTPOptions{}, func(c *tconn) {
			c.smtpCmd("AUTH LOGIN "+b64(fakeUser), "334 "+b64("Password:"))
			c.smtpCmd(b64(fakeUserPassword), "235 2.0.0")
		}},
		{"backend login xclient with addr", Backend{Login: "xclient", ClientIP: "xclient"}, fakeSMTPOptions{xclient: true}, func(c *tconn) {
			c.smtpCmd("AUTH PLAIN "+plainIR(fakeUser, fakeUserPassword), "235 2.0.0")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			th := &recordingThrottle{}
			tp, fb := newSMTPPasswordTest(t, tt.fb, func(o *Options) {
				o.Passwords.Throttle = th
				o.SMTPBackend.Login, o.SMTPBackend.ClientIP = tt.backend.Login, tt.backend.ClientIP
			})
			c := tp.dialSubmissions(t)
			tt.script(c)
			c.smtpCmd("MAIL FROM:<alice@example.test>", "250 ")
			c.smtpCmd("RCPT TO:<bob@example.test>", "250 ")
			c.smtpCmd("DATA", "354 ")
			c.smtpCmd("Subject: x\r\n\r\nx\r\n.", "250 2.0.0 Ok: queued as FAKE1")
			if m := fb.messages()[0]; m.user != fakeUser {
				t.Fatalf("backend message user %q", m.user)
			}
			if got, want := fb.authLines(), []string{"\x00" + fakeUser + "\x00" + fakeUserPassword}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("backend AUTH = %q, want the user's own PLAIN %q", got, want)
			}
			for _, l := range fb.received() {
				if strings.HasPrefix(l, "XCLIENT") && strings.Contains(l, "LOGIN=") {
					t.Fatalf("XCLIENT LOGIN sent for a password login: %q", l)
				}
			}
			if got, want := th.got(), []string{"check " + fakeUser, "success " + fakeUser}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("throttle saw %q, want %q", got, want)
			}
		})
	}
}

// TestSMTPPasswordRefused: the backend's 535 becomes 535 5.7.8 and counts as
// a failure; what cannot be a valid login never reaches the backend.
func TestSMTPPasswordRefused(t *testing.T) {
	th := &recordingThrottle{}
	tp, fb := newSMTPPasswordTest(t, fakeSMTPOptions{}, func(o *Options) { o.Passwords.Throttle = th; o.Limits.MaxAuthFailures = 10 })
	c := tp.dialSubmissions(t)
	c.smtpCmd("AUTH PLAIN "+plainIR(fakeUser, "wrong-password"), "535 5.7.8 Authentication credentials invalid")
	c.smtpCmd("AUTH PLAIN "+plainIR("alice@example.test*mailgate", "master-secret"), "535 5.7.8")
	c.smtpCmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString(auth.EncodePLAIN("bob@example.test", fakeUser, fakeUserPassword)), "535 5.7.8")
	c.smtpCmd("AUTH PLAIN "+b64("garbage"), "501 5.5.2")
	c.smtpCmd("MAIL FROM:<alice@example.test>", "530 5.7.0")
	if n := len(fb.authLines()); n != 1 {
		t.Fatalf("backend saw %d AUTHs, want 1", n)
	}
	want := []string{"check " + fakeUser, "failure " + fakeUser, "failure address"}
	if got := th.got(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("throttle saw %q, want %q", got, want)
	}
}

// TestSMTPPasswordThrottled: with a real auth.Throttle (two failures, then
// the address is blocked) the backend sees two attempts and no more.
func TestSMTPPasswordThrottled(t *testing.T) {
	th := newTestThrottle(2)
	tp, fb := newSMTPPasswordTest(t, fakeSMTPOptions{}, func(o *Options) { o.Passwords.Throttle = th; o.Limits.MaxAuthFailures = 10 })
	c := tp.dialSubmissions(t)
	for i := 0; i < 2; i++ {
		c.smtpCmd("AUTH PLAIN "+plainIR(fakeUser, "wrong-password"), "535 5.7.8")
	}
	start := time.Now()
	c.smtpCmd("AUTH PLAIN "+plainIR(fakeUser, fakeUserPassword), "454 4.7.0 Too many failed logins from your network")
	if d := time.Since(start); d > time.Second {
		t.Errorf("blocked attempt answered after %v, want at once", d)
	}
	if n := len(fb.authLines()); n != 2 {
		t.Fatalf("backend saw %d AUTHs, want 2", n)
	}
}

// TestSMTPPasswordBackendLost: a password session does not keep the password
// to reconnect: after the backend connection is lost the client is told to
// log in again (421) and the connection closes.
func TestSMTPPasswordBackendLost(t *testing.T) {
	tp, fb := newSMTPPasswordTest(t, fakeSMTPOptions{closeOnData: true}, nil)
	c := tp.dialSubmissions(t)
	c.smtpCmd("AUTH PLAIN "+plainIR(fakeUser, fakeUserPassword), "235 ")
	c.smtpCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.smtpCmd("RCPT TO:<bob@example.test>", "250 ")
	c.smtpCmd("DATA", "354 ")
	c.smtpCmd("Subject: x\r\n\r\nx\r\n.", "451 4.4.2")
	conns := fb.connCount()
	c.smtpCmd("MAIL FROM:<alice@example.test>", "421 4.4.2")
	c.expectClosed()
	if fb.connCount() != conns {
		t.Fatal("a password session reconnected to the backend")
	}
}
