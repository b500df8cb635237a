package testenv_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

// POP3 and ManageSieve replies that differ between the generations.
const (
	pop3NeedsTLS24  = "-ERR [AUTH] Authentication disallowed on non-secure (SSL/TLS) connections."
	sieveNeedsTLS24 = `NO (ENCRYPT-NEEDED) "Authentication disallowed on non-secure (SSL/TLS) connections."`
)

// multi reads a POP3 multi-line reply after its +OK line, up to ".".
func (c *conn) multi() []string {
	c.t.Helper()
	var lines []string
	for l := c.line(); l != "."; l = c.line() {
		lines = append(lines, l)
	}
	return lines
}

// pop3 sends a POP3 command and checks that the reply line starts with want.
func (c *conn) pop3(cmd, want string) string {
	c.t.Helper()
	c.send(cmd)
	r := c.line()
	if !strings.HasPrefix(r, want) {
		c.t.Fatalf("%q: got %q, want %q", redact(cmd), r, want)
	}
	return r
}

// capa sends CAPA and returns the capability lines.
func (c *conn) capa() []string {
	c.t.Helper()
	c.pop3("CAPA", "+OK")
	return c.multi()
}

var sieveLiteral = regexp.MustCompile(`\{(\d+)\+?\}$`)

// sieveResp reads ManageSieve lines up to the OK/NO/BYE one and returns the
// lines before it and that line (a literal in a NO reply is read along).
func (c *conn) sieveResp() (data []string, final string) {
	c.t.Helper()
	for {
		l := c.line()
		if m := sieveLiteral.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			buf := make([]byte, n+2) // the literal and the CRLF after it
			if _, err := io.ReadFull(c.r, buf); err != nil {
				c.t.Fatalf("read literal: %v", err)
			}
			l += " " + strings.TrimRight(string(buf), "\r\n")
		}
		if strings.HasPrefix(l, "OK") || strings.HasPrefix(l, "NO") || strings.HasPrefix(l, "BYE") {
			return data, l
		}
		data = append(data, l)
	}
}

// sieve sends a ManageSieve command and checks that the final reply starts
// with want; it returns the lines before it.
func (c *conn) sieve(cmd, want string) []string {
	c.t.Helper()
	if cmd != "" {
		c.send(cmd)
	}
	data, final := c.sieveResp()
	if !strings.HasPrefix(final, want) {
		c.t.Fatalf("%q: got %q, want %q", redact(cmd), final, want)
	}
	return data
}

// sieveStartTLS runs STARTTLS and returns the capabilities sent after it.
func (c *conn) sieveStartTLS(dc *testenv.Dovecot) []string {
	c.t.Helper()
	c.sieve("STARTTLS", `OK "Begin TLS negotiation now."`)
	c.startTLS(dc.TLSConfig())
	return c.sieve("", `OK "TLS negotiation successful."`)
}

// session returns a session id for XCLIENT SESSION= that finds the login
// line in the log.
func session(prefix string) string { return fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()) }

// checkLoginLine waits for the login with session id sess and checks that it
// carries the forwarded address, e.g. (2.3, plaintext from a trusted network)
//
//	pop3-login: Info: Login: user=<alice@example.test>, method=PLAIN, rip=203.0.113.21, lip=127.0.0.1, mpid=4711, secured, session=<mgpop3...>
//
// or (2.4, after STARTTLS) "managesieve-login: Info: Logged in: user=<...>,
// method=PLAIN, rip=203.0.113.24, lip=127.0.24.1, mpid=4712, TLS, session=<...>".
func checkLoginLine(t *testing.T, dc *testenv.Dovecot, mark int64, service, user, rip, sess string) {
	t.Helper()
	line := dc.Log.WaitSince(t, mark, "session=<"+sess+">", logTimeout)
	secured := "secured"
	if testenv.Generation() == "2.4" {
		secured = "TLS"
	}
	prefix := service + ": Info: " + dc.LoginLogPrefix() + user + ">, method=PLAIN, rip=" + rip + ", lip=" + testenv.BackendHost() + ", mpid="
	suffix := ", " + secured + ", session=<" + sess + ">"
	if !strings.Contains(line, prefix) || !strings.HasSuffix(line, suffix) {
		t.Errorf("login line %q\nwant it to contain %q and end in %q", line, prefix, suffix)
	}
}

func TestDovecotPOP3(t *testing.T) {
	dc := testenv.SharedDovecot(t)

	t.Run("master AUTH PLAIN after XCLIENT from trusted 127.0.0.1", func(t *testing.T) {
		mark := dc.Log.Mark()
		c := dial(t, "", dc.POP3Addr, nil)
		if g := c.line(); g != "+OK [XCLIENT] Dovecot (Debian) ready." && g != "+OK [XCLIENT] Dovecot ready." {
			t.Fatalf("greeting %q", g)
		}
		caps := c.capa()
		if !slices.Contains(caps, "STLS") {
			t.Errorf("CAPA without STLS: %q", caps)
		}
		if testenv.Generation() == "2.4" {
			// ssl = required: trusted is not secured, SASL lists nothing.
			if !slices.Contains(caps, "SASL") || slices.Contains(caps, "USER") {
				t.Errorf("CAPA before TLS on 2.4: %q, want a bare SASL and no USER", caps)
			}
			c.pop3("AUTH PLAIN "+plain(alice, dc.MasterUser, dc.MasterPassword), pop3NeedsTLS24)
			dc.Log.WaitSince(t, mark, "pop3-login: Info: Login failed: SSL required for authentication", logTimeout)
			// A new connection: 2.4.1 fails the next AUTH on this one
			// (see TestDovecotPOP3SieveBadMaster).
			c = dial(t, "", dc.POP3Addr, nil)
			c.line()
			c.pop3("STLS", "+OK Begin TLS negotiation now.")
			c.startTLS(dc.TLSConfig())
			caps = c.capa()
		}
		if !slices.Contains(caps, "SASL PLAIN LOGIN") || !slices.Contains(caps, "USER") {
			t.Errorf("CAPA where AUTH is allowed: %q", caps)
		}
		sess := session("mgpop3")
		c.pop3("XCLIENT ADDR=203.0.113.21 PORT=40021 SESSION="+sess, "+OK Updated")
		c.pop3("AUTH PLAIN "+plain(alice, dc.MasterUser, dc.MasterPassword), "+OK Logged in.")
		c.pop3("STAT", "+OK ")
		c.pop3("QUIT", "+OK Logging out.")
		checkLoginLine(t, dc, mark, "pop3-login", alice, "203.0.113.21", sess)
	})

	t.Run("POP3 over implicit TLS", func(t *testing.T) {
		c := dial(t, "", dc.POP3TLSAddr, dc.TLSConfig())
		if g := c.line(); !strings.HasPrefix(g, "+OK [XCLIENT] Dovecot") {
			t.Fatalf("greeting %q", g)
		}
		if caps := c.capa(); !slices.Contains(caps, "SASL PLAIN LOGIN") || slices.Contains(caps, "STLS") {
			t.Fatalf("CAPA over TLS: %q", caps)
		}
		c.pop3("AUTH PLAIN "+plain(bob, dc.MasterUser, dc.MasterPassword), "+OK Logged in.")
		c.pop3("QUIT", "+OK")
	})

	t.Run("PROXY protocol listener", func(t *testing.T) {
		mark := dc.Log.Mark()
		c := dial(t, "", dc.POP3HAProxyAddr, nil)
		c.send("PROXY TCP4 198.51.100.21 127.0.0.1 40022 110")
		if g := c.line(); !strings.HasPrefix(g, "+OK Dovecot") {
			t.Fatalf("greeting %q (no [XCLIENT]: 198.51.100.21 is not trusted)", g)
		}
		c.pop3("QUIT", "+OK")
		dc.Log.WaitSince(t, mark, "rip=198.51.100.21", logTimeout)
	})

	t.Run("XCLIENT ignored from untrusted 127.0.0.2", func(t *testing.T) {
		c := dial(t, "127.0.0.2", dc.POP3Addr, nil)
		if g := c.line(); strings.Contains(g, "[XCLIENT]") {
			t.Fatalf("greeting %q", g)
		}
		if caps := c.capa(); !slices.Contains(caps, "SASL") || slices.Contains(caps, "USER") {
			t.Errorf("CAPA before TLS from untrusted: %q, want a bare SASL and no USER", caps)
		}
		c.pop3("XCLIENT ADDR=203.0.113.23", "+OK You are not from trusted IP - ignoring")
		c.pop3("QUIT", "+OK")
	})
}

func TestDovecotManageSieve(t *testing.T) {
	// Its own instance: the active script files mail of alice.
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{})
	const script = "require \"fileinto\";\r\nif header :contains \"subject\" \"sieve-test\" { fileinto \"Filed\"; }\r\n"

	t.Run("master AUTHENTICATE after XCLIENT, PUTSCRIPT, SETACTIVE, LMTP files into .Filed", func(t *testing.T) {
		mark := dc.Log.Mark()
		c := dial(t, "", dc.SieveAddr, nil)
		caps := c.sieve("", "OK \"Dovecot")
		if !slices.Contains(caps, `"XCLIENT"`) || !slices.Contains(caps, `"STARTTLS"`) {
			t.Errorf("greeting capabilities %q", caps)
		}
		if testenv.Generation() == "2.4" {
			if !slices.Contains(caps, `"SASL" ""`) {
				t.Errorf("2.4 greeting lists SASL mechanisms before TLS: %q", caps)
			}
			c.sieve(`AUTHENTICATE "PLAIN" "`+plain(alice, dc.MasterUser, dc.MasterPassword)+`"`, sieveNeedsTLS24)
			dc.Log.WaitSince(t, mark, "managesieve-login: Info: Login failed: SSL required for authentication", logTimeout)
			c = dial(t, "", dc.SieveAddr, nil) // as for POP3
			c.sieve("", "OK")
			caps = c.sieveStartTLS(dc)
		}
		if !slices.Contains(caps, `"SASL" "PLAIN LOGIN"`) {
			t.Errorf("capabilities where AUTHENTICATE is allowed: %q", caps)
		}
		sess := session("mgsieve")
		c.sieve("XCLIENT ADDR=203.0.113.24 PORT=40024 SESSION="+sess, `OK "Updated"`)
		c.sieve(`AUTHENTICATE "PLAIN" "`+plain(alice, dc.MasterUser, dc.MasterPassword)+`"`, `OK "Logged in."`)
		c.sieve(fmt.Sprintf("PUTSCRIPT \"mailgate\" {%d+}\r\n%s", len(script), script), `OK "PUTSCRIPT completed."`)
		c.sieve(`SETACTIVE "mailgate"`, `OK "Setactive completed."`)
		if l := c.sieve("LISTSCRIPTS", "OK"); !slices.Contains(l, `"mailgate" ACTIVE`) {
			t.Errorf("LISTSCRIPTS: %q", l)
		}
		c.sieve("LOGOUT", `OK "Logout completed."`)
		checkLoginLine(t, dc, mark, "managesieve-login", alice, "203.0.113.24", sess)
		if _, err := os.Stat(filepath.Join(dc.SieveDir(alice), "mailgate.sieve")); err != nil {
			t.Errorf("script not stored in the mail home: %v", err)
		}

		id := unique(t)
		dc.DeliverLMTP(t, alice, []byte("Subject: sieve-test "+id+"\n\nfiled\n"))
		dc.DeliverLMTP(t, alice, []byte("Subject: other "+id+"\n\nkept\n"))
		dc.WaitMessageIn(t, alice, "Filed", "sieve-test "+id, logTimeout)
		dc.WaitMessage(t, alice, "other "+id, logTimeout)
		if _, ok := dc.FindMessage(alice, "sieve-test "+id); ok {
			t.Errorf("filed message also in INBOX")
		}
		dc.Log.WaitSince(t, mark, "stored mail into mailbox 'Filed'", logTimeout)
	})

	t.Run("XCLIENT refused from untrusted 127.0.0.2", func(t *testing.T) {
		c := dial(t, "127.0.0.2", dc.SieveAddr, nil)
		caps := c.sieve("", "OK")
		if slices.Contains(caps, `"XCLIENT"`) || !slices.Contains(caps, `"SASL" ""`) {
			t.Errorf("greeting capabilities from untrusted: %q", caps)
		}
		c.sieve("XCLIENT ADDR=203.0.113.25", `NO "You are not from trusted IP"`)
		c.sieve("LOGOUT", "OK")
	})

	t.Run("PROXY protocol listener", func(t *testing.T) {
		mark := dc.Log.Mark()
		c := dial(t, "", dc.SieveHAProxyAddr, nil)
		c.send("PROXY TCP4 198.51.100.24 127.0.0.1 40025 4190")
		if caps := c.sieve("", "OK"); slices.Contains(caps, `"XCLIENT"`) {
			t.Errorf("XCLIENT offered to a PROXY client from an untrusted address: %q", caps)
		}
		c.sieve("LOGOUT", "OK")
		dc.Log.WaitSince(t, mark, "rip=198.51.100.24", logTimeout)
	})
}

// TestDovecotPOP3SieveBadMaster records the replies to failed master logins
// (own instance, one client address each: failures are penalized per IP).
func TestDovecotPOP3SieveBadMaster(t *testing.T) {
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{MasterAnyNet: true})
	if testenv.Generation() == "2.4" {
		t.Run("2.4.1: AUTH after an SSL-required refusal fails on the same connection", func(t *testing.T) {
			t.Parallel()
			mark := dc.Log.Mark()
			c := dial(t, "127.0.0.5", dc.POP3Addr, nil)
			c.line()
			c.pop3("AUTH PLAIN "+plain(alice, dc.MasterUser, dc.MasterPassword), pop3NeedsTLS24)
			c.pop3("STLS", "+OK")
			c.startTLS(dc.TLSConfig())
			c.pop3("AUTH PLAIN "+plain(alice, dc.MasterUser, dc.MasterPassword), "-ERR [AUTH] Authentication failed.")
			dc.Log.WaitSince(t, mark, "plain: invalid input", logTimeout)
		})
	}
	t.Run("POP3", func(t *testing.T) {
		t.Parallel()
		c := dial(t, "127.0.0.3", dc.POP3TLSAddr, dc.TLSConfig())
		c.line()
		c.pop3("AUTH PLAIN "+plain(alice, dc.MasterUser, "wrong"), "-ERR [AUTH] Authentication failed.")
	})
	t.Run("ManageSieve", func(t *testing.T) {
		t.Parallel()
		c := dial(t, "127.0.0.4", dc.SieveAddr, nil)
		c.sieve("", "OK")
		c.sieveStartTLS(dc)
		c.sieve(`AUTHENTICATE "PLAIN" "`+plain(alice, dc.MasterUser, "wrong")+`"`, `NO "Authentication failed."`)
	})
}
