package pop3

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// newFakeFront starts a front in front of fb (client_ip xclient).
func newFakeFront(t *testing.T, fb *fakeBackend, opts proxy.Options) *testFront {
	t.Helper()
	return newTestFront(t, opts, Options{Backend: fb.start(t, "xclient")})
}

var (
	capsPlain = []string{"STLS", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	capsTLS   = []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "SASL XOAUTH2 OAUTHBEARER"}
	capsPass  = []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "SASL XOAUTH2 OAUTHBEARER PLAIN LOGIN", "USER"}
)

func TestCapabilities(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{})
	c := dialPlain(t, tf.plainAddr)
	c.expect("+OK mailgate ready.")
	if got := c.capa(); !slices.Equal(got, capsPlain) {
		t.Errorf("CAPA before TLS = %q, want %q", got, capsPlain)
	}
	c.Send("STLS")
	c.expect("+OK Begin TLS negotiation now.")
	c.UpgradeTLS(tf.clientTLS)
	if got := c.capa(); !slices.Equal(got, capsTLS) {
		t.Errorf("CAPA after STLS = %q, want %q", got, capsTLS)
	}
	c.Send("STLS")
	c.expect("-ERR TLS is already active.")
	c.Send("AUTH")
	c.expect("+OK")
	if got := c.multi(); !slices.Equal(got, []string{"XOAUTH2", "OAUTHBEARER"}) {
		t.Errorf("AUTH list = %q", got)
	}

	c = dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	if got := c.capa(); !slices.Equal(got, capsTLS) {
		t.Errorf("CAPA over implicit TLS = %q, want %q", got, capsTLS)
	}
	c.Send("STLS")
	c.expect("-ERR TLS is already active.")
	c.Send("QUIT")
	c.expect("+OK Logging out.")
	c.expectClosed()
}

func TestCapabilitiesPasswords(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{Passwords: proxy.PasswordOptions{POP3: true}})
	c := dialPlain(t, tf.plainAddr)
	c.expect("+OK mailgate ready.")
	if got := c.capa(); !slices.Equal(got, capsPlain) {
		t.Errorf("CAPA before TLS = %q, want %q (no USER, no SASL)", got, capsPlain)
	}
	c = dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	if got := c.capa(); !slices.Equal(got, capsPass) {
		t.Errorf("CAPA over TLS = %q, want %q", got, capsPass)
	}
}

// TestAuthBeforeSTLSRefused: no authentication in plaintext, with or
// without passthrough; the refusals do not count, STLS then works.
func TestAuthBeforeSTLSRefused(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{Passwords: proxy.PasswordOptions{POP3: true}})
	c := dialPlain(t, tf.plainAddr)
	c.expect("+OK mailgate ready.")
	for _, cmd := range []string{"AUTH XOAUTH2 " + xoauth2("alice@example.test", goodToken), "AUTH", "AUTH PLAIN",
		"USER alice@example.test", "PASS password"} {
		c.Send(cmd)
		c.expect("-ERR [SYS/PERM] Command not permitted before STLS.")
	}
	c.Send("STLS")
	c.expect("+OK Begin TLS negotiation now.")
	c.UpgradeTLS(tf.clientTLS)
	c.Send("AUTH XOAUTH2 " + xoauth2("alice@example.test", goodToken))
	c.expect("+OK Logged in.")
}

// TestSTLSInjection: commands pipelined behind STLS in plaintext (where a
// man in the middle could have put them) are discarded, never run after
// the handshake (CVE-2011-0411 class).
func TestSTLSInjection(t *testing.T) {
	fb := &fakeBackend{}
	tf := newFakeFront(t, fb, proxy.Options{})
	c := dialPlain(t, tf.plainAddr)
	c.expect("+OK mailgate ready.")
	c.Write("STLS\r\nAUTH XOAUTH2 " + xoauth2("alice@example.test", goodToken) + "\r\nCAPA\r\n")
	c.expect("+OK Begin TLS negotiation now.")
	c.UpgradeTLS(tf.clientTLS)
	c.Send("NOOP")
	c.expect("-ERR Not logged in.") // the first reply after TLS is to NOOP
	if ev := fb.seen(); len(ev) != 0 {
		t.Errorf("the injected AUTH reached the backend: %q", ev)
	}
	if !strings.Contains(tf.logs.String(), "possible command injection") {
		t.Errorf("no warning about the discarded plaintext")
	}
}

func TestUnknownCommandsClose(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{})
	c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Send("STAT")
	c.expect("-ERR Not logged in.")
	c.Send("GET / HTTP/1.1")
	c.expect("-ERR Unknown command.")
	c.Send("")
	c.expect("-ERR Unknown command.")
	c.expectClosed() // Limits.MaxErrors (3)
}

func TestIdleAndPreauthTimeouts(t *testing.T) {
	for _, tt := range []struct {
		name   string
		limits proxy.Limits
		want   string
	}{
		{"command timeout", proxy.Limits{CommandTimeout: 300 * time.Millisecond}, "-ERR Disconnected for inactivity."},
		{"pre-auth deadline", proxy.Limits{PreauthTimeout: 300 * time.Millisecond}, "-ERR Pre-authentication time limit reached."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tf := newFakeFront(t, &fakeBackend{}, proxy.Options{Limits: tt.limits})
			c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
			c.expect("+OK mailgate ready.")
			c.expect(tt.want)
			c.expectClosed()
		})
	}
}

// TestShutdownWakesPreauth: a client waiting before login hears why it is
// closed as soon as Shutdown begins.
func TestShutdownWakesPreauth(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{})
	c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Send("CAPA")
	c.expect("+OK Capability list follows")
	c.multi()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- tf.srv.Shutdown(ctx)
	}()
	c.expect("-ERR [SYS/TEMP] Server shutting down.")
	c.expectClosed()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
}

// TestBusy: a client over the pre-login cap on the plaintext port hears
// the front's Busy line.
func TestBusy(t *testing.T) {
	tf := newFakeFront(t, &fakeBackend{}, proxy.Options{Limits: proxy.Limits{MaxPreloginPerIP: 1}})
	c := dialPlain(t, tf.plainAddr)
	c.expect("+OK mailgate ready.")
	c2 := dialPlain(t, tf.plainAddr)
	c2.expect("-ERR [SYS/TEMP] Too many connections, try again later.")
	c2.expectClosed()
}
