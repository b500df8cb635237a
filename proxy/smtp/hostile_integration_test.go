package smtp

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// TestSecurityBDATCutByCloseNotify (issue 11, problem 4): a client that
// announces "BDAT n LAST" and then closes TLS cleanly (close_notify) before
// n octets, on 465 and on 587, must not get its truncated message committed
// by the real Postfix: mailgate drops the backend connection before the
// final dot. A whole message sent afterwards is delivered.
func TestSecurityBDATCutByCloseNotify(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, nil)
	token := it.token(t, "alice@example.test")
	for _, port := range []string{"465", "587"} {
		t.Run(port, func(t *testing.T) {
			mark := pf.Log.Mark()
			subject := proxytest.UniqueSubject("bdat-cut-" + port)
			var c *proxytest.Conn
			if port == "465" {
				c = it.tp.dialSubmissions(t)
			} else {
				c = it.tp.dialSubmission(t)
			}
			c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", token), "235 ")
			c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
			c.SMTPCmd("RCPT TO:<alice@example.test>", "250 ")
			part := "Subject: " + subject + "\r\n\r\nonly the first part of the body\r\n"
			fmt.Fprintf(c.C, "BDAT %d LAST\r\n%s", len(part)+1000, part)
			if err := c.C.(*tls.Conn).CloseWrite(); err != nil { // close_notify, TCP stays open
				t.Fatal(err)
			}
			// Whatever the client is told (if anything), Postfix must not
			// have taken the message.
			c.C.SetReadDeadline(time.Now().Add(10 * time.Second))
			reply, _ := io.ReadAll(c.BR)
			if bytes.HasPrefix(reply, []byte("250")) {
				t.Fatalf("cut BDAT answered %q", reply)
			}
			pf.Log.WaitSince(t, mark, "lost connection after BDAT", 15*time.Second)

			control := proxytest.UniqueSubject("after-bdat-cut-" + port)
			sc := it.smtpClient(t, port == "465", "XOAUTH2", "alice@example.test", token)
			if _, err := smtpSend(t, sc, "alice@example.test", "alice@example.test", bytes.NewReader(smtpTestMessage(control))); err != nil {
				t.Fatalf("send = %v", err)
			}
			it.dc.WaitMessage(t, "alice@example.test", control, 15*time.Second)
			if _, found := it.dc.FindMessage("alice@example.test", subject); found {
				t.Fatal("the message cut off in BDAT was delivered")
			}
		})
	}
}
