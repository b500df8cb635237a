package smtp

import (
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
)

// TestSMTPPipelinedAfterData: commands pipelined in the same write as the
// end of a message (RFC 2920) are neither lost nor taken as body: the
// backend gets two whole messages, and the client one reply per command,
// in order.
func TestSMTPPipelinedAfterData(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.Write("MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
	c.SMTPExpect("250 2.1.0")
	c.SMTPExpect("250 2.1.5")
	c.SMTPExpect("354 ")
	c.Write("Subject: one\r\n\r\none\r\n.\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
	c.SMTPExpect("250 2.0.0 Ok: queued as FAKE1")
	c.SMTPExpect("250 2.1.0")
	c.SMTPExpect("250 2.1.5")
	c.SMTPExpect("354 ")
	c.Write("Subject: two\r\n\r\ntwo\r\n.\r\nNOOP\r\nQUIT\r\n")
	c.SMTPExpect("250 2.0.0 Ok: queued as FAKE2")
	c.SMTPExpect("250 2.0.0 Ok")
	c.SMTPExpect("221 ")
	c.ExpectClosed()
	msgs := fb.Messages()
	if len(msgs) != 2 || msgs[0].Sum != sha256.Sum256([]byte("Subject: one\r\n\r\none\r\n")) ||
		msgs[1].Sum != sha256.Sum256([]byte("Subject: two\r\n\r\ntwo\r\n")) {
		t.Fatalf("backend messages = %+v", msgs)
	}
}

// TestSMTPPipelinedBDAT: BDAT chunks pipelined in one write, the next
// command behind the last one, reach the backend as the same chunks.
func TestSMTPPipelinedBDAT(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.Write("MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT 6\r\nhello\nBDAT 8 LAST\r\n world\r\nNOOP\r\n")
	for _, want := range []string{"250 2.1.0", "250 2.1.5", "250 2.0.0 Ok: 6 bytes", "250 2.0.0 Ok: queued as FAKE1", "250 2.0.0 Ok"} {
		c.SMTPExpect(want)
	}
	if msgs := fb.Messages(); len(msgs) != 1 || msgs[0].Sum != sha256.Sum256([]byte("hello\n world\r\n")) {
		t.Fatalf("backend messages = %+v, want the chunks as sent (BDAT has no line rules)", msgs)
	}
}

// TestSecuritySMTPCommandsNotPassedOn: after login, commands that would
// let a client speak for mailgate at the backend (XCLIENT, XFORWARD) or
// change the session (AUTH, STARTTLS) are answered by mailgate and never
// reach the backend; an AUTH= parameter of MAIL is dropped.
func TestSecuritySMTPCommandsNotPassedOn(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{}, nil)
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.SMTPCmd("XCLIENT LOGIN=bob@example.test", "502 5.5.2")
	c.SMTPCmd("XFORWARD ADDR=192.0.2.1", "502 5.5.2")
	c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("bob@example.test", proxytest.TestToken), "503 5.5.1")
	c.SMTPCmd("STARTTLS", "554 5.5.1")
	c.SMTPCmd("MAIL FROM:<alice@example.test> AUTH=<bob@example.test> BODY=8BITMIME", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	c.SMTPCmd("Subject: x\r\n\r\nx\r\n.", "250 2.0.0 Ok: queued as FAKE1")
	for _, cmd := range []string{"XCLIENT", "XFORWARD", "STARTTLS"} {
		if fb.SawCommand(cmd) {
			t.Errorf("%s reached the backend", cmd)
		}
	}
	if n := len(fb.AuthLines()); n != 1 {
		t.Errorf("backend saw %d AUTHs, want mailgate's own login only", n)
	}
	if m := fb.Messages(); len(m) != 1 || strings.Contains(strings.ToUpper(m[0].MailArgs), "AUTH=") || m[0].MailArgs != "BODY=8BITMIME" {
		t.Fatalf("MAIL parameters at the backend: %+v", m)
	}
}

// TestSMTPBackendIdleTimeout: a backend that ended the idle session (a
// 421 and a close, as Postfix's smtpd_timeout does) costs the client
// nothing: its next MAIL goes to a new backend session.
func TestSMTPBackendIdleTimeout(t *testing.T) {
	tp, fb := newSMTPTest(t, proxytest.FakeSMTPOptions{IdleTimeout: 200 * time.Millisecond}, nil)
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	conns := fb.ConnCount()
	proxytest.WaitFor(t, "the backend to end the idle session", func() bool { return fb.OpenConns() == 0 })
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<bob@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	c.SMTPCmd("Subject: x\r\n\r\nx\r\n.", "250 2.0.0 Ok: queued as FAKE1")
	if fb.ConnCount() != conns+1 {
		t.Fatalf("backend connections %d, want one more than %d", fb.ConnCount(), conns)
	}
}
