package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

func TestSMTPEHLOAuthOnlyAfterTLS(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	c := proxytest.DialPlain(t, tp.plainAddr)
	c.SMTPExpect("220 mailgate.test ESMTP")
	exts := c.SMTPEHLO()
	if !proxytest.HasExt(exts, "STARTTLS") || proxytest.HasExt(exts, "AUTH") {
		t.Fatalf("EHLO before TLS = %q, want STARTTLS and no AUTH", exts)
	}
	c.SMTPStartTLS(tp.clientTLS)
	exts = c.SMTPEHLO()
	if proxytest.HasExt(exts, "STARTTLS") || proxytest.ExtParam(exts, "AUTH") != "OAUTHBEARER XOAUTH2" {
		t.Fatalf("EHLO after STARTTLS = %q, want AUTH OAUTHBEARER XOAUTH2 and no STARTTLS", exts)
	}
	s := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	s.SMTPExpect("220 ")
	exts = s.SMTPEHLO()
	if proxytest.HasExt(exts, "STARTTLS") || proxytest.ExtParam(exts, "AUTH") != "OAUTHBEARER XOAUTH2" {
		t.Fatalf("EHLO on implicit TLS = %q", exts)
	}
	if proxytest.HasExt(exts, "BINARYMIME") {
		t.Fatalf("EHLO advertises BINARYMIME: %q", exts)
	}
	// No client has authenticated: the backend saw only the capability probes.
	for _, l := range fb.Received() {
		if v, _, _ := strings.Cut(l, " "); v != "EHLO" && v != "QUIT" {
			t.Fatalf("backend received %q before any login", l)
		}
	}
}

func TestSMTPCapabilitiesFollowBackend(t *testing.T) {
	tests := []struct {
		name      string
		ext       []string
		maxBytes  int64
		wantSize  string
		utf8, dsn bool
	}{
		{"postfix defaults", nil, 0, "10240000", true, true},
		{"no smtputf8 no dsn", []string{"PIPELINING", "SIZE 12345", "8BITMIME"}, 0, "12345", false, false},
		{"configured smaller", nil, 5000, "5000", true, true},
		{"configured larger", []string{"SIZE 12345", "8BITMIME"}, 99999, "12345", false, false},
		{"backend unlimited", []string{"SIZE 0", "8BITMIME", "DSN"}, 0, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, _ := newSMTPTest(t, proxytest.FakeSMTPOptions{Ext: tt.ext}, func(o *proxy.Options, so *Options) { so.MaxMessageBytes = tt.maxBytes })
			exts := tp.dialSubmissions(t).SMTPEHLO()
			if tt.wantSize == "" {
				if !proxytest.HasExt(exts, "SIZE") || proxytest.ExtParam(exts, "SIZE") != "" {
					t.Errorf("EHLO %q, want SIZE without a limit", exts)
				}
			} else if got := proxytest.ExtParam(exts, "SIZE"); got != tt.wantSize {
				t.Errorf("SIZE = %q, want %q", got, tt.wantSize)
			}
			if proxytest.HasExt(exts, "SMTPUTF8") != tt.utf8 || proxytest.HasExt(exts, "DSN") != tt.dsn {
				t.Errorf("EHLO %q, want SMTPUTF8=%v DSN=%v", exts, tt.utf8, tt.dsn)
			}
			for _, kw := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"} {
				if !proxytest.HasExt(exts, kw) {
					t.Errorf("EHLO %q lacks %s", exts, kw)
				}
			}
			if chunking := tt.ext == nil; proxytest.HasExt(exts, "CHUNKING") != chunking { // only the defaults offer it
				t.Errorf("EHLO %q, want CHUNKING=%v as the backend", exts, chunking)
			}
		})
	}
}

// TestSMTPReprobeUnreachableBackend: a backend that does not answer at start
// gives conservative capabilities, replaced once it answers.
func TestSMTPReprobeUnreachableBackend(t *testing.T) {
	old := reprobeInterval
	reprobeInterval = 0
	t.Cleanup(func() { reprobeInterval = old })
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{Paused: true}, func(o *proxy.Options, so *Options) { o.Limits.DialTimeout = 200 * time.Millisecond })
	exts := tp.dialSubmissions(t).SMTPEHLO()
	if proxytest.HasExt(exts, "SMTPUTF8") || proxytest.HasExt(exts, "DSN") || proxytest.ExtParam(exts, "SIZE") != "" {
		t.Fatalf("EHLO with an unreachable backend = %q, want no SMTPUTF8, DSN or SIZE limit", exts)
	}
	fb.Resume()
	proxytest.WaitFor(t, "SMTPUTF8 after the backend answered", func() bool {
		return proxytest.HasExt(tp.dialSubmissions(t).SMTPEHLO(), "SMTPUTF8")
	})
}

func TestSMTPAuthBeforeTLSRefused(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	probes := fb.ConnCount()
	c := proxytest.DialPlain(t, tp.plainAddr)
	c.SMTPExpect("220 ")
	c.SMTPEHLO()
	c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", proxytest.TestToken), "5")
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "530 5.7.0")
	if n := tp.authCalls(); n != 0 {
		t.Fatalf("authenticator called %d times before TLS", n)
	}
	if n := fb.ConnCount(); n != probes {
		t.Fatalf("backend contacted %d times, want %d (probes only)", n, probes)
	}
}

func TestSMTPMailBeforeAuth(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	probes := fb.ConnCount()
	for name, c := range map[string]*proxytest.Conn{"starttls": tp.dialSubmission(t), "implicit": tp.dialSubmissions(t)} {
		t.Run(name, func(t *testing.T) {
			c.T = t
			c.SMTPCmd("MAIL FROM:<alice@example.test>", "530 5.7.0 Authentication required")
			c.SMTPCmd("RCPT TO:<bob@example.test>", "530 5.7.0 Authentication required")
			c.SMTPCmd("DATA", "530 5.7.0 Authentication required")
		})
	}
	if n := fb.ConnCount(); n != probes {
		t.Fatalf("backend contacted %d times, want %d (probes only)", n, probes)
	}
}

func TestSMTPAuthFailures(t *testing.T) {
	tests := []struct {
		name      string
		lines     []string // after EHLO
		challenge string   // the JSON status in the 334 challenge; "" for none
		want      string
	}{
		{"xoauth2 bad token", []string{"AUTH XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.BadToken), ""}, "400", "535 5.7.8"},
		{"oauthbearer bad token", []string{"AUTH OAUTHBEARER " + proxytest.OAuthBearer("alice@example.test", proxytest.BadToken), "AQ=="}, "invalid_token", "535 5.7.8"},
		{"oauthbearer no IR bad token", []string{"AUTH OAUTHBEARER", proxytest.OAuthBearer("", proxytest.BadToken), "="}, "invalid_token", "535 5.7.8"},
		{"token of another user", []string{"AUTH XOAUTH2 " + proxytest.XOAUTH2("bob@example.test", proxytest.TestToken), ""}, "400", "535 5.7.8"},
		{"provider down", []string{"AUTH XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.DownToken)}, "", "454 4.7.0"},
		{"malformed", []string{"AUTH XOAUTH2 " + base64.StdEncoding.EncodeToString([]byte("garbage"))}, "", "501 5.5.2"},
		{"backend refuses the user", []string{"AUTH XOAUTH2 " + proxytest.XOAUTH2("nobody@example.test", "nobody-token")}, "", "535 5.7.8"},
		{"unknown mechanism", []string{"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00pw"))}, "", "504 5.5.4"},
		{"canceled", []string{"AUTH OAUTHBEARER", "*"}, "", "501 5.7.0 Authentication aborted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
			probes := fb.ConnCount()
			c := tp.dialSubmissions(t)
			for i, l := range tt.lines {
				c.Send(l)
				if i == len(tt.lines)-1 {
					break
				}
				code, lines := c.SMTPReply()
				if code != 334 {
					t.Fatalf("after %q: %d %q, want 334", l, code, lines)
				}
				if lines[0] == "" {
					continue // empty challenge: waiting for the initial response
				}
				raw, err := base64.StdEncoding.DecodeString(lines[0])
				var ch struct{ Status string }
				if err != nil || json.Unmarshal(raw, &ch) != nil || ch.Status != tt.challenge {
					t.Fatalf("challenge %q (%s), want status %q", lines[0], raw, tt.challenge)
				}
			}
			c.SMTPExpect(tt.want)
			c.SMTPCmd("MAIL FROM:<alice@example.test>", "530 5.7.0")
			wantConns := probes
			if tt.name == "backend refuses the user" {
				wantConns++
			}
			if n := fb.ConnCount(); n != wantConns {
				t.Fatalf("backend connections = %d, want %d", n, wantConns)
			}
			if tt.name != "backend refuses the user" && fb.SawCommand("AUTH") {
				t.Fatal("the backend saw an AUTH")
			}
		})
	}
}

// TestSMTPAuthResponseRefused: a SASL response of "*" and one that is not
// base64 are answered 501 (RFC 4954: 5.7.0 for the cancel, 5.5.2 for the
// syntax error; never a 4xx, which would make a client retry the same
// bytes); the login is logged as canceled or malformed, the connection
// goes on, and a new AUTH works.
func TestSMTPAuthResponseRefused(t *testing.T) {
	for _, tt := range []struct{ name, response, reply, result string }{
		{"cancel", "*", "501 5.7.0 Authentication aborted", "result=canceled"},
		{"bad base64", "not base64!", "501 5.5.2", "result=malformed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tp, _ := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
			c := tp.dialSubmissions(t)
			c.SMTPCmd("AUTH XOAUTH2", "334 ")
			c.SMTPCmd(tt.response, tt.reply)
			proxytest.WaitFor(t, "the login's log line", func() bool {
				return strings.Contains(tp.logs.String(), "msg=login") && strings.Contains(tp.logs.String(), tt.result)
			})
			c.SMTPLogin()
			c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
		})
	}
}

// TestSMTPNoDummyReply: the login sequence bounds its wait for the dummy
// reply to an error challenge: after 5 s the refusal is decided, logged
// and sent, without waiting for the client's line any longer.
func TestSMTPNoDummyReply(t *testing.T) {
	tp, _ := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	c := tp.dialSubmissions(t)
	c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", proxytest.BadToken), "334 ")
	start := time.Now()
	proxytest.WaitFor(t, "the refusal to be logged", func() bool { return strings.Contains(tp.logs.String(), "result=invalid") })
	if d := time.Since(start); d < 4*time.Second {
		t.Fatalf("refused after %v, before the dummy-reply wait", d)
	}
	c.SMTPExpect("535 5.7.8")
	c.SMTPLogin()
}

func TestSMTPTooManyAuthFailures(t *testing.T) {
	tp, _ := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	c := tp.dialSubmissions(t)
	for i := 0; i < 3; i++ {
		c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", proxytest.BadToken), "334 ")
		c.SMTPCmd("", "535 5.7.8")
	}
	c.SMTPExpect("421 4.7.0 Too many authentication failures")
	c.ExpectClosed()
}

func TestSMTPPreauthTimeout(t *testing.T) {
	tp, _ := newSMTPTest(t, proxytest.FakeSMTPOptions{}, func(o *proxy.Options, so *Options) { o.Limits.PreauthTimeout = 300 * time.Millisecond })
	c := tp.dialSubmissions(t) // greeted, EHLO answered
	c.SMTPExpect("421 4.4.2 Pre-authentication time limit reached")
	c.ExpectClosed()
	// The same on the STARTTLS port, before TLS.
	c = proxytest.DialPlain(t, tp.plainAddr)
	c.SMTPExpect("220 ")
	c.SMTPExpect("421 4.4.2 ")
	c.ExpectClosed()
	// An authenticated session outlives the pre-auth deadline.
	c = tp.dialSubmissions(t)
	c.SMTPLogin()
	time.Sleep(500 * time.Millisecond) // longer than PreauthTimeout: the behaviour under test
	c.SMTPCmd("NOOP", "250 ")
}

func TestSMTPSenderEnforced(t *testing.T) {
	tests := []struct {
		name    string
		enforce bool
		from    string
		want    string
	}{
		{"own address", true, "alice@example.test", "250 "},
		{"own address other case", true, "Alice@Example.TEST", "250 "},
		{"alias", true, "postmaster@example.test", "250 "},
		{"domain alias", true, "anyone@alias.test", "250 "},
		{"forged", true, "bob@example.test", "553 5.7.1 <bob@example.test>: Sender address rejected"},
		{"subdomain of a domain alias", true, "x@sub.alias.test", "553 5.7.1"},
		{"null sender", true, "", "553 5.7.1"},
		{"not enforced", false, "bob@example.test", "250 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, func(o *proxy.Options, so *Options) {
				so.EnforceSender = tt.enforce
				so.SenderAliases = map[string][]string{"Alice@example.test": {"postmaster@example.test", "*@Alias.test"}}
			})
			c := tp.dialSubmissions(t)
			c.SMTPLogin()
			c.SMTPCmd("MAIL FROM:<"+tt.from+">", tt.want)
			if sent := fb.SawCommand("MAIL FROM:<" + tt.from + ">"); sent != (tt.want == "250 ") {
				t.Fatalf("backend saw MAIL FROM:<%s>: %v", tt.from, sent)
			}
		})
	}
}

func TestSenderAllowed(t *testing.T) {
	aliases := normalizeAliases(map[string][]string{"alice@example.test": {"*@example.org", "Team@Example.test"}})
	tests := []struct {
		from string
		want bool
	}{
		{"alice@example.test", true},
		{"ALICE@example.test", true},
		{"team@example.test", true},
		{"x@example.org", true},
		{"x@EXAMPLE.org", true},
		{"@example.org", false},
		{"x@sub.example.org", false},
		{"x@example.org.evil", false},
		{"bob@example.test", false},
		{"alice@example.test.evil", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := senderAllowed("alice@example.test", tt.from, aliases); got != tt.want {
			t.Errorf("senderAllowed(%q) = %v, want %v", tt.from, got, tt.want)
		}
	}
}

func TestSMTPBackendRepliesVerbatim(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{RcptReply: map[string]string{
		"nouser@example.test": "550 5.1.1 <nouser@example.test>: Recipient address rejected: User unknown in virtual mailbox table",
		"later@example.test":  "450 4.2.0 <later@example.test>: Recipient address rejected: Greylisted",
	}}, nil)
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<nouser@example.test>", "550 5.1.1 <nouser@example.test>: Recipient address rejected: User unknown in virtual mailbox table")
	c.SMTPCmd("RCPT TO:<later@example.test>", "450 4.2.0 <later@example.test>: Recipient address rejected: Greylisted")
	c.SMTPCmd("DATA", "554 5.5.1 Error: no valid recipients") // the backend's own
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	c.Send("Subject: hi\r\n\r\nhello\r\n.")
	c.SMTPExpect("250 2.0.0 Ok: queued as FAKE1")
	if m := fb.Messages(); len(m) != 1 || m[0].User != "alice@example.test" || m[0].From != "alice@example.test" ||
		len(m[0].Rcpts) != 1 || m[0].Rcpts[0] != "bob@example.test" {
		t.Fatalf("backend messages = %+v", m)
	}
}

// TestSMTPRelayStreaming sends a multi-MB message with dot-stuffed lines
// through go-smtp's client: the backend gets it byte for byte, from a master
// login on behalf of alice, and the client gets the backend's queue id.
func TestSMTPRelayStreaming(t *testing.T) {
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		t.Run(mech, func(t *testing.T) {
			tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
			c, err := smtp.DialTLS(tp.tlsAddr, tp.clientTLS)
			if err != nil {
				t.Fatalf("DialTLS() = %v", err)
			}
			defer c.Close()
			if err := c.Hello("client.test"); err != nil {
				t.Fatalf("Hello() = %v", err)
			}
			if err := c.Auth(proxytest.OAuthClient{Mech: mech, User: "alice@example.test", Token: proxytest.TestToken}); err != nil {
				t.Fatalf("Auth() = %v", err)
			}
			const size = 6 << 20
			if err := c.Mail("alice@example.test", &smtp.MailOptions{Size: size}); err != nil {
				t.Fatalf("Mail() = %v", err)
			}
			if err := c.Rcpt("bob@example.test", nil); err != nil {
				t.Fatalf("Rcpt() = %v", err)
			}
			w, err := c.Data()
			if err != nil {
				t.Fatalf("Data() = %v", err)
			}
			h := sha256.New()
			n, err := io.Copy(io.MultiWriter(w, h), proxytest.NewMessageReader(size))
			if err != nil {
				t.Fatalf("writing the body: %v", err)
			}
			resp, err := w.CloseWithResponse()
			if err != nil {
				t.Fatalf("DATA = %v", err)
			}
			if resp.StatusText != "2.0.0 Ok: queued as FAKE1" {
				t.Fatalf("DATA reply text = %q, want the backend's", resp.StatusText)
			}
			if err := c.Quit(); err != nil {
				t.Fatalf("Quit() = %v", err)
			}
			msgs := fb.Messages()
			if len(msgs) != 1 {
				t.Fatalf("backend got %d messages", len(msgs))
			}
			if m := msgs[0]; m.Size != n || !bytes.Equal(m.Sum[:], h.Sum(nil)) {
				t.Fatalf("backend got %d bytes sha256 %x, sent %d bytes sha256 %x", m.Size, m.Sum, n, h.Sum(nil))
			}
			if m := msgs[0]; m.User != "alice@example.test" || !strings.Contains(m.MailArgs, "SIZE="+strconv.Itoa(size)) ||
				!strings.Contains(m.MailArgs, "BODY=8BITMIME") {
				t.Fatalf("backend message = user %q, MAIL args %q", m.User, m.MailArgs)
			}
			var plain string
			for _, l := range fb.Received() {
				if ir, ok := strings.CutPrefix(l, "AUTH PLAIN "); ok {
					raw, _ := base64.StdEncoding.DecodeString(ir)
					plain = string(raw)
				}
			}
			if plain != "alice@example.test\x00mailgate\x00master-secret" {
				t.Fatalf("backend AUTH PLAIN = %q", plain)
			}
		})
	}
}

func TestSMTPTwoMessagesOneSession(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	c := tp.dialSubmission(t)
	c.SMTPLogin()
	for i := 1; i <= 2; i++ {
		c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
		c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
		c.SMTPCmd("DATA", "354 ")
		c.Send("Subject: " + strconv.Itoa(i) + "\r\n\r\nbody\r\n.")
		c.SMTPExpect("250 2.0.0 Ok: queued as FAKE" + strconv.Itoa(i))
	}
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RSET", "250 ")
	c.SMTPCmd("QUIT", "221 ")
	if n := len(fb.Messages()); n != 2 {
		t.Fatalf("backend got %d messages, want 2", n)
	}
	proxytest.WaitFor(t, "the backend QUIT", func() bool { return fb.SawCommand("QUIT") && fb.SawCommand("RSET") })
}

func TestSMTPClientGoneMidData(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	io.CopyN(c.C, proxytest.NewMessageReader(1<<20), 300<<10)
	c.C.Close()
	proxytest.WaitFor(t, "the backend to see the connection end inside DATA", func() bool { return fb.AbortedCount() == 1 })
	if m := fb.Messages(); len(m) != 0 {
		t.Fatalf("backend got a message: %+v", m)
	}
}

func TestSMTPDataIdleTimeout(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, func(o *proxy.Options, so *Options) { so.DataTimeout = 300 * time.Millisecond })
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	c.C.Write([]byte("Subject: stalled\r\n\r\nfirst line\r\n"))
	c.SMTPExpect("421 4.4.2")
	c.ExpectClosed()
	proxytest.WaitFor(t, "the backend to see the connection end inside DATA", func() bool { return fb.AbortedCount() == 1 })
	if m := fb.Messages(); len(m) != 0 {
		t.Fatalf("backend got a message: %+v", m)
	}
}

// TestSMTPSlowUpload: the data timeout is renewed for every part of the
// body; a body that arrives in pieces spaced beyond the command timeout
// still goes through.
func TestSMTPSlowUpload(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, func(o *proxy.Options, so *Options) {
		o.Limits.CommandTimeout = 300 * time.Millisecond
		so.DataTimeout = 5 * time.Second
	})
	for _, bdat := range []bool{false, true} {
		c := tp.dialSubmissions(t)
		c.SMTPLogin()
		c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
		c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
		var body bytes.Buffer
		io.Copy(&body, proxytest.NewMessageReader(500000))
		if bdat {
			c.C.Write([]byte("BDAT " + strconv.Itoa(body.Len()) + " LAST\r\n"))
		} else {
			c.SMTPCmd("DATA", "354 ")
		}
		data, wire := body.Bytes(), body.Bytes()
		if !bdat {
			wire = bytes.ReplaceAll(data, []byte("\r\n."), []byte("\r\n.."))
		}
		for i := 0; i < 4; i++ {
			c.C.Write(wire[i*len(wire)/4 : (i+1)*len(wire)/4])
			time.Sleep(500 * time.Millisecond) // a slow client: the behaviour under test
		}
		if !bdat {
			c.C.Write([]byte(".\r\n"))
		}
		c.SMTPExpect("250 2.0.0 Ok: queued")
		msgs := fb.Messages()
		if sum := sha256.Sum256(data); len(msgs) == 0 || msgs[len(msgs)-1].Sum != sum {
			t.Fatalf("bdat=%v: backend did not get the message intact", bdat)
		}
	}
}

func TestSMTPBDAT(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	chunks := []string{"Subject: bdat\r\n\r\n", ".a line with a leading dot\r\n.\r\n", "end\r\n"}
	for i, ch := range chunks {
		last := ""
		if i == len(chunks)-1 {
			last = " LAST"
		}
		c.C.Write([]byte("BDAT " + strconv.Itoa(len(ch)) + last + "\r\n" + ch))
		if last == "" {
			c.SMTPExpect("250 2.0.0")
		}
	}
	c.SMTPExpect("250 2.0.0 Ok: queued as FAKE1")
	msgs := fb.Messages()
	if sum := sha256.Sum256([]byte(strings.Join(chunks, ""))); len(msgs) != 1 || msgs[0].Sum != sum {
		t.Fatalf("backend messages = %+v, want the chunks joined", msgs)
	}
}

// TestSMTPBDATReset: RSET in the middle of BDAT goes to the backend, which
// drops the chunks it has; the session goes on, and the next message holds
// only its own chunks.
func TestSMTPBDATReset(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.C.Write([]byte("BDAT 10\r\n0123456789"))
	c.SMTPExpect("250 2.0.0 Ok: 10 bytes")
	c.SMTPCmd("RSET", "250 2.0.0 Ok")
	if !fb.SawCommand("RSET") {
		t.Fatal("RSET did not reach the backend")
	}
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.C.Write([]byte("BDAT 5 LAST\r\nhello"))
	c.SMTPExpect("250 2.0.0 Ok: queued as FAKE1")
	if msgs := fb.Messages(); len(msgs) != 1 || msgs[0].Sum != sha256.Sum256([]byte("hello")) {
		t.Fatalf("backend messages = %+v, want only the second message", msgs)
	}
}

func TestSMTPSizeExceeded(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, func(o *proxy.Options, so *Options) { so.MaxMessageBytes = 10000 })
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.SMTPCmd("MAIL FROM:<alice@example.test> SIZE=20000", "552 5.3.4")
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	io.Copy(c.C, proxytest.NewMessageReader(30000))
	c.SMTPCmd(".", "552 5.3.4")
	proxytest.WaitFor(t, "the backend DATA to be cut off", func() bool { return fb.AbortedCount() == 1 })
	// The session goes on with a new backend connection.
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	c.SMTPCmd("Subject: small\r\n\r\nsmall\r\n.", "250 2.0.0 Ok: queued as FAKE1")
	if n := len(fb.Messages()); n != 1 {
		t.Fatalf("backend got %d messages, want 1", n)
	}
}

func TestSMTPBackendFailures(t *testing.T) {
	t.Run("backend down at AUTH", func(t *testing.T) {
		tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
		fb.Stop()
		c := tp.dialSubmissions(t)
		c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", proxytest.TestToken), "454 4.7.0")
	})
	t.Run("connection lost at DATA", func(t *testing.T) {
		tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{CloseOnData: true}, nil)
		c := tp.dialSubmissions(t)
		c.SMTPLogin()
		c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
		c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
		c.SMTPCmd("DATA", "451 4.4.2") // the backend closed instead of its 354
		conns := fb.ConnCount()
		c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ") // reconnects
		if fb.ConnCount() != conns+1 {
			t.Fatal("no new backend connection after the failure")
		}
	})
	t.Run("backend gone before MAIL", func(t *testing.T) {
		tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
		c := tp.dialSubmissions(t)
		c.SMTPLogin()
		fb.Stop()
		c.SMTPCmd("MAIL FROM:<alice@example.test>", "451 4.4.")
		c.SMTPCmd("MAIL FROM:<alice@example.test>", "451 4.4.1")
	})
}

func TestSMTPBackendLoginModes(t *testing.T) {
	serverTLS, clientTLS := proxytest.TLSPair(t)
	tests := []struct {
		name     string
		fb       proxytest.FakeSMTPOptions
		backend  proxy.Backend
		wantTLS  bool
		xclient  string // prefix of the XCLIENT attributes the backend must see
		wantAuth bool
	}{
		{"master plain", proxytest.FakeSMTPOptions{}, proxy.Backend{}, false, "", true},
		{"master starttls", proxytest.FakeSMTPOptions{TLS: serverTLS}, proxy.Backend{TLS: proxy.TLSStartTLS}, true, "", true},
		{"master implicit", proxytest.FakeSMTPOptions{TLS: serverTLS, Implicit: true}, proxy.Backend{TLS: proxy.TLSImplicit}, true, "", true},
		{"master with xclient addr", proxytest.FakeSMTPOptions{TLS: serverTLS, XCLIENT: true}, proxy.Backend{TLS: proxy.TLSStartTLS, ClientIP: "xclient"}, true, "ADDR=127.0.0.1 PORT=", true},
		{"xclient login", proxytest.FakeSMTPOptions{XCLIENT: true}, proxy.Backend{Login: "xclient"}, false, "LOGIN=alice@example.test", false},
		{"xclient login starttls with addr", proxytest.FakeSMTPOptions{TLS: serverTLS, XCLIENT: true}, proxy.Backend{TLS: proxy.TLSStartTLS, Login: "xclient", ClientIP: "xclient"}, true, "LOGIN=alice@example.test ADDR=127.0.0.1 PORT=", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, fb := newSMTPTest(t, tt.fb, func(o *proxy.Options, so *Options) {
				b := tt.backend
				b.Address, b.TLSConfig = so.Backend.Address, clientTLS
				so.Backend = b
			})
			c := tp.dialSubmissions(t)
			c.SMTPLogin()
			c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
			c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
			c.SMTPCmd("DATA", "354 ")
			c.SMTPCmd("Subject: x\r\n\r\nx\r\n.", "250 2.0.0 Ok: queued as FAKE1")
			m := fb.Messages()[0]
			if m.User != "alice@example.test" || m.TLS != tt.wantTLS || !strings.HasPrefix(m.XCLIENT, tt.xclient) {
				t.Fatalf("backend message: user %q tls %v xclient %q", m.User, m.TLS, m.XCLIENT)
			}
			if fb.SawCommand("AUTH") != tt.wantAuth {
				t.Fatalf("backend AUTH seen = %v, want %v", !tt.wantAuth, tt.wantAuth)
			}
			// XCLIENT only ever before AUTH.
			auth := false
			for _, l := range fb.Received() {
				auth = auth || strings.HasPrefix(l, "AUTH ")
				if auth && strings.HasPrefix(l, "XCLIENT") {
					t.Fatalf("XCLIENT after AUTH: %q", fb.Received())
				}
			}
		})
	}
	t.Run("xclient not offered", func(t *testing.T) {
		tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, func(o *proxy.Options, so *Options) { so.Backend.Login = "xclient" })
		c := tp.dialSubmissions(t)
		c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", proxytest.TestToken), "454 4.7.0")
		if fb.SawCommand("XCLIENT") {
			t.Fatal("XCLIENT sent although not offered")
		}
	})
}

// TestSMTPProxyProtocolToBackend: client_ip proxy sends a PROXY v2 header
// with the client's address; the capability probe sends a LOCAL header.
func TestSMTPProxyProtocolToBackend(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{ProxyProtocol: true}, func(o *proxy.Options, so *Options) { so.Backend.ClientIP = "proxy" })
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 5)}}
	raw, err := d.Dial("tcp", tp.tlsAddr)
	if err != nil {
		t.Fatalf("dial from 127.0.0.5: %v", err)
	}
	tc := tls.Client(raw, tp.clientTLS)
	c := &proxytest.Conn{T: t, C: tc, BR: bufio.NewReader(tc)}
	t.Cleanup(func() { tc.Close() })
	c.SMTPExpect("220 ")
	if exts := c.SMTPEHLO(); proxytest.ExtParam(exts, "SIZE") != "10240000" {
		t.Fatalf("EHLO %q: the probe with a LOCAL header did not get the backend's SIZE", exts)
	}
	c.SMTPLogin()
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	c.SMTPCmd("Subject: x\r\n\r\nx\r\n.", "250 ")
	if m := fb.Messages(); len(m) != 1 || !strings.HasPrefix(m[0].Remote, "127.0.0.5:") {
		t.Fatalf("backend messages %+v, want one from 127.0.0.5", m)
	}
}

// TestSMTPServeErrors: New refuses backend settings this front cannot
// honour, at once; Serve closes its listener even when it cannot serve.
func TestSMTPServeErrors(t *testing.T) {
	srv, err := proxy.New(proxy.Options{Authenticator: fakeAuthenticator, TLSConfig: nil})
	if err == nil || srv != nil {
		t.Fatal("New without TLSConfig succeeded")
	}
	serverTLS, _ := proxytest.TLSPair(t)
	srv, err = proxy.New(proxy.Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []proxy.Backend{
		{Address: "127.0.0.1:25", Login: "password"},
		{Address: "127.0.0.1:25", ClientIP: "id"},
		{Address: "127.0.0.1:25", TLS: "maybe"},
		{Address: ""},
	} {
		if f, err := New(srv, Options{Backend: b}); err == nil || f != nil {
			t.Errorf("New with backend %+v = %v, want a configuration error", b, err)
		}
	}
	f, err := New(srv, Options{Backend: proxy.Backend{Address: "127.0.0.1:25"}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	ln := newClosedCheckListener(t)
	if err := srv.Serve(context.Background(), ln, false, f); !errors.Is(err, proxy.ErrServerClosed) {
		t.Errorf("Serve after Close = %v, want ErrServerClosed", err)
	}
	if !ln.closed.Load() {
		t.Errorf("Serve did not close its listener")
	}
}

// TestSMTPShutdown: connections outside a mail transaction get 421 at once;
// a transaction goes on during the drain time, then the connection gets 421
// and the backend never sees the final dot.
func TestSMTPShutdown(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	pre := tp.dialSubmission(t)
	idle := tp.dialSubmissions(t)
	idle.SMTPLogin()
	tx := tp.dialSubmissions(t)
	tx.SMTPLogin()
	tx.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")

	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	go func() { done <- tp.srv.Shutdown(ctx) }()
	for _, c := range []*proxytest.Conn{pre, idle} {
		c.SMTPExpect("421 4.3.2")
		c.ExpectClosed()
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("idle connections ended after %v, want at once", d)
	}
	// During the drain the transaction goes on.
	tx.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	tx.SMTPCmd("DATA", "354 ")
	tx.C.Write([]byte("Subject: cut by shutdown\r\n\r\n"))
	tx.SMTPExpect("421 4.3.2")
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Fatalf("transaction ended after %v, before the drain time", d)
	}
	tx.ExpectClosed()
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown() = %v, want DeadlineExceeded", err)
	}
	for i := 0; i < 2; i++ {
		if err := <-tp.serveErr; !errors.Is(err, proxy.ErrServerClosed) {
			t.Fatalf("ServeSMTP() = %v, want proxy.ErrServerClosed", err)
		}
	}
	proxytest.WaitFor(t, "the backend connections to close", func() bool { return fb.OpenConns() == 0 })
	if n := len(fb.Messages()); n != 0 {
		t.Fatalf("backend got %d messages", n)
	}
}

// TestSMTPShutdownFinishesMessage: a message whose DATA ends within the
// drain time is delivered and answered, then the connection gets 421.
func TestSMTPShutdownFinishesMessage(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tp.srv.Shutdown(ctx) }()
	proxytest.WaitFor(t, "the listeners to close", func() bool {
		c, err := proxytest.DialNoFail(tp.tlsAddr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	c.SMTPCmd("Subject: during shutdown\r\n\r\nbody\r\n.", "250 2.0.0 Ok: queued as FAKE1")
	c.SMTPExpect("421 4.3.2") // the transaction is over: the connection ends
	c.ExpectClosed()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown() = %v, want nil (every connection ended in time)", err)
	}
	if n := len(fb.Messages()); n != 1 {
		t.Fatalf("backend got %d messages, want 1", n)
	}
}

// TestSMTPBDATShortLastChunk: a client whose connection ends inside a BDAT
// LAST chunk leaves nothing at the backend: the backend connection is
// closed inside the chunk.
func TestSMTPBDATShortLastChunk(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.C.Write([]byte("BDAT 1000 LAST\r\nSubject: short\r\n\r\nonly part of the chunk\r\n"))
	// The process dies: the kernel sends FIN, without a TLS close_notify.
	c.C.(*tls.Conn).NetConn().(*net.TCPConn).CloseWrite()
	proxytest.WaitFor(t, "the backend DATA to be cut off", func() bool { return fb.AbortedCount() == 1 })
	if n := len(fb.Messages()); n != 0 {
		t.Fatalf("backend got %d messages, want 0", n)
	}
}

func TestSMTPContextCancel(t *testing.T) {
	tp, _ := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	tp.cancel()
	for i := 0; i < 2; i++ {
		select {
		case err := <-tp.serveErr:
			if !errors.Is(err, proxy.ErrServerClosed) {
				t.Fatalf("ServeSMTP() = %v, want proxy.ErrServerClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("ServeSMTP did not return after the context ended")
		}
	}
}

func TestXtext(t *testing.T) {
	if got := xtext("a+b=c d@x"); got != "a+2Bb+3Dc+20d@x" {
		t.Fatalf("xtext = %q", got)
	}
}

// closeCheckListener is a listener that records whether it was closed.
type closeCheckListener struct {
	net.Listener
	closed atomic.Bool
}

func (l *closeCheckListener) Close() error { l.closed.Store(true); return l.Listener.Close() }

func newClosedCheckListener(t *testing.T) *closeCheckListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() = %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return &closeCheckListener{Listener: ln}
}
