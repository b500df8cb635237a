package smtp

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// Fidelity against the real Postfix: once logged in, the client hears
// Postfix's own replies, and a message's bytes reach the Maildir as the
// client sent them.

// fidelityScript is a session's commands after login, each with the
// message bytes (DATA's body, BDAT's chunk) that follow its reply or the
// command itself.
var fidelityScript = []struct{ cmd, then string }{
	{"MAIL FROM:<alice@example.test>", ""},
	{"RCPT TO:<alice@example.test>", ""},
	{"DATA", "Subject: fidelity-data\r\n\r\n..a stuffed line\r\n.\r\n"},
	{"RSET", ""},
	{"RCPT TO:<alice@example.test>", ""},
	{"DATA", ""},
	{"MAIL FROM:<alice@example.test> SIZE=200 BODY=8BITMIME", ""},
	{"MAIL FROM:<alice@example.test>", ""},
	{"RCPT TO:<alice@example.test> NOTIFY=NEVER", ""},
	{"BDAT 28", "Subject: fidelity-bdat\r\n\r\nab"},
	{"BDAT 4 LAST", "cd\r\n"},
	{"MAIL FROM:<alice@example.test>", ""},
	{"RCPT TO:<alice@example.test>", ""},
	{"RSET", ""},
	{"NOOP", ""},
	{"VRFY alice@example.test", ""},
}

// queueIDs are Postfix's queue ids in replies, which differ between runs.
var queueIDs = regexp.MustCompile(`queued as [0-9A-Za-z]+`)

// runFidelityScript runs fidelityScript on a logged-in connection and
// returns every reply line, queue ids masked.
func runFidelityScript(t *testing.T, c *proxytest.Conn) []string {
	t.Helper()
	var out []string
	for _, s := range fidelityScript {
		if strings.HasPrefix(s.cmd, "BDAT") {
			c.C.Write([]byte(s.cmd + "\r\n" + s.then))
		} else {
			c.Send(s.cmd)
		}
		add := func(code int, lines []string) {
			for _, l := range lines {
				out = append(out, fmt.Sprintf("%s -> %d %s", s.cmd, code, queueIDs.ReplaceAllString(l, "queued as QUEUEID")))
			}
		}
		code, lines := c.SMTPReply()
		add(code, lines)
		if code == 354 {
			c.C.Write([]byte(s.then))
			code, lines := c.SMTPReply()
			add(code, lines)
			if code != 250 {
				t.Fatalf("the message after %q got %d %v", s.cmd, code, lines)
			}
		}
	}
	return out
}

// TestIntegrationSMTPPostfixReplies: the same session straight to Postfix
// (as the master user on behalf of alice) and through mailgate gets the
// same replies, code, enhanced code and text, for MAIL (with parameters),
// RCPT (accepted, without MAIL), DATA (354, the final 250,
// without recipients), BDAT chunks, RSET, NOOP and VRFY; mailgate's own
// replies to AUTH are 235 2.7.0, 501 5.5.2 for a malformed SASL response
// and 535 5.7.8 for a token the provider refuses.
func TestIntegrationSMTPPostfixReplies(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, nil)
	dc := pf.Dovecot

	direct := proxytest.DialPlain(t, pf.SubmissionAddr)
	direct.SMTPExpect("220 ")
	direct.SMTPEHLO()
	direct.SMTPStartTLS(pf.TLSConfig())
	direct.SMTPEHLO()
	direct.SMTPCmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString(auth.EncodePLAIN("alice@example.test", dc.MasterUser, dc.MasterPassword)), "235 ")
	want := runFidelityScript(t, direct)

	c := it.tp.dialSubmissions(t)
	c.SMTPCmd("AUTH XOAUTH2 "+base64.StdEncoding.EncodeToString([]byte("not a SASL message\x01")), "501 5.5.2 ")
	c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", "not-a-token-the-provider-knows"), "334 ")
	c.SMTPCmd("", "535 5.7.8 ")
	c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", it.token(t, "alice@example.test")), "235 2.7.0 Authentication successful")
	got := runFidelityScript(t, c)

	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("replies through mailgate:\n%s\nstraight from Postfix:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, must := range []string{"-> 250 2.1.0 Ok", "-> 250 2.1.5 Ok", "-> 354 End data with", "-> 250 2.0.0 Ok: queued as QUEUEID",
		"-> 250 2.0.0 Ok: 28 bytes", "-> 503 5.5.1 Error: need MAIL command", "-> 503 5.5.1 Error: need RCPT command"} {
		if !strings.Contains(strings.Join(got, "\n"), must) {
			t.Errorf("no reply %q in the session:\n%s", must, strings.Join(got, "\n"))
		}
	}
}

// TestIntegrationSMTPBodyByteForByte: a body with dot-stuffed lines (a
// line of only ".", lines starting with one or more dots), 8-bit text and
// a long line, sent through mailgate with DATA and with BDAT, is in the
// Maildir exactly as the client meant it: unstuffed, line for line.
func TestIntegrationSMTPBodyByteForByte(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, nil)
	lines := []string{
		"From: alice@example.test", "To: alice@example.test", "Subject: %s", "Message-ID: <%s@mailgate.test>",
		"Date: Sat, 05 Dec 2026 10:00:00 +0000", "MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", "",
		".", "..", ".leading dot", "..two leading dots", " . space dot", "ünïcödé ✓", strings.Repeat("0123456789", 90), // under RFC 5322's 998
		"", "last line",
	}
	for _, mode := range []string{"DATA", "BDAT"} {
		t.Run(mode, func(t *testing.T) {
			subject := proxytest.UniqueSubject("bytes-" + mode)
			msg := strings.ReplaceAll(strings.Join(lines, "\r\n")+"\r\n", "%s", subject)
			c := it.tp.dialSubmissions(t)
			c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", it.token(t, "alice@example.test")), "235 ")
			c.SMTPCmd("MAIL FROM:<alice@example.test> BODY=8BITMIME", "250 ")
			c.SMTPCmd("RCPT TO:<alice@example.test>", "250 ")
			if mode == "DATA" {
				c.SMTPCmd("DATA", "354 ")
				c.C.Write([]byte(dotStuff(msg) + ".\r\n"))
			} else {
				fmt.Fprintf(c.C, "BDAT %d LAST\r\n%s", len(msg), msg)
			}
			c.SMTPExpect("250 2.0.0 Ok: ") // "queued as", after "1773 bytes" for BDAT
			c.SMTPCmd("QUIT", "221 ")
			it.dc.WaitMessage(t, "alice@example.test", subject, 15*time.Second)
			files := maildirFilesWith(t, it.dc, "alice@example.test", subject)
			if len(files) != 1 {
				t.Fatalf("%d messages with the subject, want 1", len(files))
			}
			wantTail := []byte(strings.ReplaceAll(msg, "\r\n", "\n")) // Maildir lines end in LF
			if !bytes.HasSuffix(files[0], wantTail) {
				os.WriteFile(t.TempDir()+"/got", files[0], 0o644)
				t.Fatalf("the Maildir file does not end with the message as sent:\n%q\nwant it to end with\n%q", files[0], wantTail)
			}
		})
	}
}

// dotStuff stuffs msg (CRLF lines) for DATA: a line starting with "." gets
// another one (RFC 5321 section 4.5.2).
func dotStuff(msg string) string {
	ls := strings.SplitAfter(msg, "\r\n")
	for i, l := range ls {
		if strings.HasPrefix(l, ".") {
			ls[i] = "." + l
		}
	}
	return strings.Join(ls, "")
}
