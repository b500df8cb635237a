package pop3

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

func TestLoginAndRelay(t *testing.T) {
	fb := &fakeBackend{}
	tf := newFakeFront(t, fb, proxy.Options{})
	c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Send("AUTH XOAUTH2 " + xoauth2("alice@example.test", goodToken))
	c.expect("+OK Logged in.")
	c.Send("STAT")
	c.expect("+OK 1 42")
	c.Send("QUIT")
	c.expect("+OK Logging out.")
	c.expectClosed()
	ev := fb.seen()
	if len(ev) != 2 || !strings.HasPrefix(ev[0], "XCLIENT ADDR=127.0.0.1 PORT=") || !strings.Contains(ev[0], " SESSION=") ||
		ev[1] != "AUTH alice@example.test mailgate" {
		t.Fatalf("backend saw %q, want XCLIENT ADDR= PORT= SESSION= then the master AUTH PLAIN", ev)
	}
}

// TestLoginPipelined: commands in the same packet as AUTH reach the backend.
func TestLoginPipelined(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{})
	c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Write("AUTH XOAUTH2 " + xoauth2("alice@example.test", goodToken) + "\r\nSTAT\r\nQUIT\r\n")
	c.expect("+OK Logged in.")
	c.expect("+OK 1 42")
	c.expect("+OK Logging out.")
	c.expectClosed()
}

// TestLoginContinuation: AUTH without an initial response gets "+ ".
func TestLoginContinuation(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{})
	c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Send("AUTH OAUTHBEARER")
	c.expect("+ ")
	c.Send(oauthbearer("", goodToken))
	c.expect("+OK Logged in.")
}

// TestRefusedToken: the RFC 7628 error exchange: the challenge, the
// client's dummy response, then -ERR [AUTH].
func TestRefusedToken(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{
		Challenge: auth.ChallengeOptions{OpenIDConfiguration: "https://idp.example.test/.well-known/openid-configuration"},
	})
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		t.Run(mech, func(t *testing.T) {
			c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
			c.expect("+OK mailgate ready.")
			ir := xoauth2("alice@example.test", badToken)
			if mech == "OAUTHBEARER" {
				ir = oauthbearer("alice@example.test", badToken)
			}
			c.Send("AUTH " + mech + " " + ir)
			ch := challenge(t, c.expect("+ *"))
			if mech == "XOAUTH2" && ch["status"] != "400" || mech == "OAUTHBEARER" && ch["status"] != "invalid_token" {
				t.Errorf("challenge %v", ch)
			}
			c.Send("AQ==")
			c.expect("-ERR [AUTH] Authentication failed.")
		})
	}
}

// challenge decodes "+ <base64 JSON>".
func challenge(t *testing.T, line string) map[string]any {
	t.Helper()
	js, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, "+ "))
	var m map[string]any
	if err == nil {
		err = json.Unmarshal(js, &m)
	}
	if err != nil {
		t.Fatalf("challenge %q: %v", line, err)
	}
	return m
}

// TestNoDummyReply: a client that never answers the error challenge gets
// the refusal after the dummy wait (5 s), not the command timeout (30 s).
func TestNoDummyReply(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{})
	c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Send("AUTH XOAUTH2 " + xoauth2("alice@example.test", badToken))
	c.expect("+ *")
	start := time.Now()
	c.expect("-ERR [AUTH] Authentication failed.") // blocks until the refusal comes
	if d := time.Since(start); d < 4*time.Second || d > 8*time.Second {
		t.Fatalf("refusal after %v, want about 5 s", d)
	}
	c.Send("NOOP") // the connection goes on
	c.expect("-ERR Not logged in.")
}

func TestProviderDown(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{})
	c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Send("AUTH XOAUTH2 " + xoauth2("alice@example.test", downToken))
	c.expect("-ERR [SYS/TEMP] Temporary authentication failure, try again later.")
}

func TestAuthErrors(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{})
	c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	for _, step := range [][2]string{
		{"AUTH CRAM-MD5", "-ERR Unsupported authentication mechanism."},
		{"AUTH PLAIN " + b64("\x00alice\x00pw"), "-ERR Unsupported authentication mechanism."}, // no passthrough
		{"AUTH XOAUTH2", "+ "},
		{"*", "-ERR AUTH canceled."},
		{"AUTH XOAUTH2 a b", "-ERR Invalid arguments."},
		{"USER alice@example.test", "-ERR [SYS/PERM] Password login is not offered here; use OAuth (AUTH XOAUTH2 or OAUTHBEARER)."},
		{"AUTH XOAUTH2 !!!", "-ERR Invalid SASL message."},
		{"XCLIENT ADDR=192.0.2.1", "-ERR Unknown command."},
	} {
		c.Send(step[0])
		c.expect(step[1])
	}
	c.expectClosed() // the third protocol error
}

func TestMaxAuthFailures(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{})
	c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	for i := 0; i < 3; i++ {
		c.Send("AUTH OAUTHBEARER " + oauthbearer("", badToken))
		c.expect("+ *")
		c.Send("AQ==")
		c.expect("-ERR [AUTH] Authentication failed.")
	}
	c.expectClosed()
}

// TestLineCaps: 512 bytes for a command line, Limits.MaxLine for AUTH
// lines and SASL responses, Limits.MaxPreloginBytes for one command.
func TestLineCaps(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{Limits: proxy.Limits{MaxLine: 8 << 10, MaxPreloginBytes: 10 << 10}})
	start := func() *client {
		c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
		c.expect("+OK mailgate ready.")
		return c
	}
	t.Run("command line over 255 but within the cap", func(t *testing.T) {
		c := start()
		c.Send("NOOP " + strings.Repeat("x", 400))
		c.expect("-ERR Not logged in.")
	})
	t.Run("command line over the cap", func(t *testing.T) {
		c := start()
		c.Send("USER " + strings.Repeat("x", 600))
		c.expect("-ERR Line too long.")
		c.expectClosed()
	})
	t.Run("long AUTH line", func(t *testing.T) {
		c := start()
		c.Send("auth XOAUTH2 " + xoauth2("alice@example.test", strings.Repeat("t", 5000)))
		c.expect("+ *") // read whole: the token was checked
	})
	t.Run("AUTH line over MaxLine", func(t *testing.T) {
		c := start()
		c.Send("AUTH XOAUTH2 " + strings.Repeat("A", 9<<10))
		c.expect("-ERR Line too long.")
		c.expectClosed()
	})
	t.Run("SASL response over MaxLine", func(t *testing.T) {
		c := start()
		c.Send("AUTH XOAUTH2")
		c.expect("+ ")
		c.Send(strings.Repeat("A", 9<<10))
		c.expect("-ERR Line too long.")
		c.expectClosed()
	})
	t.Run("command over the byte budget", func(t *testing.T) {
		c := start()
		c.Send("AUTH XOAUTH2 " + xoauth2("alice@example.test", strings.Repeat("t", 5000)))
		c.expect("+ *")
		c.Send(strings.Repeat("A", 4<<10))
		c.expect("-ERR Command too large.")
		c.expectClosed()
	})
}

// passBackend is a backend for password passthrough: alice's password is
// "pw"; a wrong one gets a distinctive reply, to see it passed verbatim.
func passBackend() *fakeBackend {
	return &fakeBackend{Login: func(authz, authc, pass string) string {
		if authz == "" && authc == "alice@example.test" && pass == "pw" {
			return "+OK Logged in."
		}
		return "-ERR [AUTH] Wrong password (fake backend)."
	}}
}

func TestPasswordPassthrough(t *testing.T) {
	fb := passBackend()
	tf := newFakeFront(t, fb, proxy.Options{Passwords: proxy.PasswordOptions{POP3: true}})
	start := func() *client {
		c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
		c.expect("+OK mailgate ready.")
		return c
	}
	c := start()
	c.Send("PASS pw")
	c.expect("-ERR No username given.")
	c.Send("USER alice@example.test")
	c.expect("+OK")
	c.Send("PASS wrong")
	c.expect("-ERR [AUTH] Wrong password (fake backend).")
	c.Send("USER alice@example.test")
	c.expect("+OK")
	c.Send("PASS pw")
	c.expect("+OK Logged in.")
	c.Send("STAT")
	c.expect("+OK 1 42")

	c = start()
	c.Send("AUTH PLAIN " + b64("\x00alice@example.test\x00pw"))
	c.expect("+OK Logged in.")

	c = start()
	c.Send("AUTH LOGIN")
	c.expect("+ " + b64("Username:"))
	c.Send(b64("alice@example.test"))
	c.expect("+ " + b64("Password:"))
	c.Send(b64("pw"))
	c.expect("+OK Logged in.")
	if ev := fb.seen(); !slices.Contains(ev, "AUTH  alice@example.test") || slices.ContainsFunc(ev, func(e string) bool {
		return strings.Contains(e, "mailgate")
	}) {
		t.Errorf("backend saw %q, want logins as alice herself", ev)
	}
	tf.secrets = append(tf.secrets, "PASS pw")
}

// TestProviderDownContinuation: an outage ends the exchange at once,
// with no challenge to answer (the client keeps its token).
func TestProviderDownContinuation(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{})
	c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Send("AUTH XOAUTH2")
	c.expect("+ ")
	c.Send(xoauth2("alice@example.test", downToken))
	c.expect("-ERR [SYS/TEMP] Temporary authentication failure, try again later.")
}

// TestPasswordAbandoned: a password exchange the client abandons ("*" at
// either prompt, or a hang-up) is not a failed password: the throttle
// hears nothing of it, and it is not an auth failure for the connection.
func TestPasswordAbandoned(t *testing.T) {
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
			tf := newFakeFront(t, passBackend(), proxy.Options{Passwords: proxy.PasswordOptions{POP3: true, Throttle: th}})
			c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
			c.expect("+OK mailgate ready.")
			c.Send("AUTH " + tt.mech)
			for _, p := range tt.prompt {
				c.expect("+ " + b64(p))
				c.Send(b64("alice@example.test"))
			}
			c.expect("+ *")
			if tt.hangup {
				c.C.Close()
			} else {
				c.Send("*")
				c.expect("-ERR AUTH canceled.")
				c.C.Close()
			}
			proxytest.WaitFor(t, "the connection's last log line", func() bool {
				return strings.Contains(tf.logs.String(), `msg="connection closed before login"`)
			})
			if logs := tf.logs.String(); !strings.Contains(logs, tt.result) || !strings.Contains(logs, "auth_failures=0") {
				t.Errorf("logs lack %s and auth_failures=0:\n%s", tt.result, logs)
			}
			if got := th.Got(); len(got) != 0 {
				t.Errorf("throttle saw %q, want nothing", got)
			}
		})
	}
}
