package sieve

import (
	"slices"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// setupFake starts a fake backend (plaintext, XCLIENT) and a front for it.
func setupFake(t *testing.T, popts proxy.Options) (*testFront, *fakeBackend) {
	t.Helper()
	fb := newFakeBackend(t, nil)
	popts.Master = proxy.Master{User: "master", Password: "master-secret"}
	tf := newTestFront(t, popts, Options{
		Backend: proxy.Backend{Address: fb.addr, ClientIP: "xclient"},
	})
	return tf, fb
}

var defaultSieveLine = defaultSieveCaps[0]

func TestGreetingAndCapabilities(t *testing.T) {
	tf := newTestFront(t, proxy.Options{}, Options{Backend: proxy.Backend{Address: proxytest.ClosedAddr(t)}})
	plain := []string{`"IMPLEMENTATION" "mailgate"`, defaultSieveLine, `"SASL" ""`, `"STARTTLS"`, `"VERSION" "1.0"`}
	onTLS := []string{`"IMPLEMENTATION" "mailgate"`, defaultSieveLine, `"SASL" "OAUTHBEARER XOAUTH2"`, `"VERSION" "1.0"`}
	check := func(t *testing.T, what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: capabilities\n%q\nwant\n%q", what, got, want)
		}
	}

	c := dial(t, "", tf.addr)
	check(t, "greeting", c.greeted(), plain)
	check(t, "CAPABILITY", c.cmd("CAPABILITY", `OK "Capability completed."`), plain)
	check(t, "after STARTTLS", c.starttls(tf.clientTLS), onTLS)
	check(t, "CAPABILITY over TLS", c.cmd("capability", `OK "Capability completed."`), onTLS)
	c.cmd("STARTTLS", `NO "TLS is already active."`)
	c.cmd("LOGOUT", `OK "Logout completed."`)
	c.expectClosed()

	c = dialTLS(t, tf.tlsAddr, tf.clientTLS)
	check(t, "implicit TLS greeting", c.greeted(), onTLS)
}

func TestCapabilitiesWithPasswords(t *testing.T) {
	tf := newTestFront(t, proxy.Options{Passwords: proxy.PasswordOptions{Sieve: true}},
		Options{Backend: proxy.Backend{Address: proxytest.ClosedAddr(t)}})
	c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
	if caps := c.greeted(); !slices.Contains(caps, `"SASL" "OAUTHBEARER XOAUTH2 PLAIN LOGIN"`) {
		t.Fatalf("capabilities with password passthrough: %q", caps)
	}
}

// TestCapabilitiesLearned: the first connection makes the front read the
// backend's Sieve capabilities; later greetings list them.
func TestCapabilitiesLearned(t *testing.T) {
	tf, _ := setupFake(t, proxy.Options{})
	proxytest.WaitFor(t, "the backend's SIEVE capability in the greeting", func() bool {
		c := dial(t, "", tf.addr)
		defer c.C.Close()
		caps := c.greeted()
		return slices.Contains(caps, `"SIEVE" "fileinto vacation fake-ext"`) && slices.Contains(caps, `"NOTIFY" "mailto"`) &&
			!slices.Contains(caps, defaultSieveLine) && !slices.ContainsFunc(caps, func(l string) bool {
			return strings.Contains(l, "XCLIENT") || strings.Contains(l, "Fake")
		})
	})
}

func TestPreauthCommands(t *testing.T) {
	tf := newTestFront(t, proxy.Options{}, Options{Backend: proxy.Backend{Address: proxytest.ClosedAddr(t)}})
	c := dial(t, "", tf.addr)
	c.greeted()
	c.cmd("NOOP", `OK "NOOP completed."`)
	c.cmd(`NOOP "STARTTLS-SYNC-42"`, `OK (TAG "STARTTLS-SYNC-42") "Done"`)
	c.cmd("NOOP {4+}\r\na\"b\\", `OK (TAG "a\"b\\") "Done"`)
	c.cmd(`LISTSCRIPTS`, `NO "Authenticate first."`)
	c.cmd(`XCLIENT ADDR=192.0.2.1`, `NO "Unknown command."`)
	c.Send(`PUTSCRIPT "x" {9+}`)
	c.Write("keep;\r\n\r\n\r\n")
	c.expect(`NO "Authenticate first."`)
	c.expect(`BYE "Too many invalid commands."`)
	c.expectClosed()
	if tf.auth.calls.Load() != 0 {
		t.Errorf("authenticator called")
	}
}

func TestSyntaxErrors(t *testing.T) {
	tf := newTestFront(t, proxy.Options{Limits: proxy.Limits{MaxErrors: 100}},
		Options{Backend: proxy.Backend{Address: proxytest.ClosedAddr(t)}})
	c := dial(t, "", tf.addr)
	c.greeted()
	for _, tt := range []struct{ in, want string }{
		{"", `NO "Empty command."`},
		{"NO*OP", `NO "Invalid command name."`},
		{`NOOP "unterminated`, `NO "Unterminated quoted string."`},
		{`NOOP "bad \e escape"`, `NO "Invalid escape in a quoted string."`},
		{`NOOP  "two spaces"`, `NO "Unexpected character in arguments."`},
		{`NOOP "a" "b"`, `NO "NOOP takes one optional string."`},
		{`NOOP ("list")`, `NO "Unexpected character in arguments."`},
		{"NOOP {3} x", `NO "Invalid literal: it must be {n} or {n+} at the end of the line."`},
		{"NOOP {3+}\r\na\x00b", `NO "NUL in a literal."`},
		{"AUTHENTICATE", `NO "AUTHENTICATE takes a mechanism and an optional initial response."`},
		{"CAPABILITY x", `NO "CAPABILITY takes no arguments."`},
		// The literal announced by a refused command is skipped, not run.
		{"FOO {6+}\r\nLOGOUT", `NO "Unknown command."`},
		{"FOO x{6+}\r\nLOGOUT", `NO "Expected a space between arguments."`},
	} {
		c.cmd(tt.in, tt.want)
	}
	c.cmd("NOOP", `OK "NOOP completed."`)
}
