package testenv

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Append stores msg in user's INBOX over IMAP from 127.0.0.1 (plaintext on
// 2.3, after STARTTLS on 2.4), logged in as the master user (AUTHENTICATE
// PLAIN with authzid=user). Bare LF line ends are converted to CRLF. It needs
// the default MasterAllowNets and TrustedNetworks (or ones that include
// 127.0.0.1).
func (d *Dovecot) Append(ctx context.Context, user string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, convTimeout)
	defer cancel()
	c, err := dialLine(ctx, d.IMAPAddr, nil)
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	defer c.Close()
	if _, err := c.readLine(); err != nil {
		return fmt.Errorf("append: greeting: %w", err)
	}
	if d.needsTLS() {
		if err := c.startTLS(ctx, "a0 STARTTLS", "a0 OK", d.TLSConfig()); err != nil {
			return fmt.Errorf("append: %w", err)
		}
	}
	ir := base64.StdEncoding.EncodeToString([]byte(user + "\x00" + d.MasterUser + "\x00" + d.MasterPassword))
	if err := c.writeLine("a1 AUTHENTICATE PLAIN " + ir); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	if line, err := c.imapTagged("a1"); err != nil {
		return fmt.Errorf("append: authenticate: %w", err)
	} else if !strings.HasPrefix(line, "a1 OK") {
		return fmt.Errorf("append: master login for %s refused: %s", user, line)
	}
	body := crlf(msg)
	if err := c.writeLine(fmt.Sprintf("a2 APPEND INBOX {%d+}", len(body))); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	if _, err := c.Write(append(body, '\r', '\n')); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	if line, err := c.imapTagged("a2"); err != nil {
		return fmt.Errorf("append: %w", err)
	} else if !strings.HasPrefix(line, "a2 OK") {
		return fmt.Errorf("append: %s", line)
	}
	_ = c.writeLine("a3 LOGOUT")
	return nil
}

// AppendDirect is Append for tests: it fails tb on error.
func (d *Dovecot) AppendDirect(tb testing.TB, user string, msg []byte) {
	tb.Helper()
	if err := d.Append(context.Background(), user, msg); err != nil {
		tb.Fatalf("%v\n%s", err, d.Log.TailBlock(20))
	}
}

// Deliver delivers msg to rcpt through Dovecot's LMTP listener (envelope
// sender <>), as Postfix would. Bare LF line ends are converted to CRLF.
func (d *Dovecot) Deliver(ctx context.Context, rcpt string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, convTimeout)
	defer cancel()
	c, err := dialLine(ctx, d.LMTPAddr, nil)
	if err != nil {
		return fmt.Errorf("lmtp: %w", err)
	}
	defer c.Close()
	step := func(cmd, code string) error {
		if cmd != "" {
			if err := c.writeLine(cmd); err != nil {
				return err
			}
		}
		_, err := c.expectSMTP(code)
		return err
	}
	if err := step("", "220"); err != nil {
		return fmt.Errorf("lmtp greeting: %w", err)
	}
	for _, s := range [][2]string{{"LHLO testenv.example.test", "250"}, {"MAIL FROM:<>", "250"}, {"RCPT TO:<" + rcpt + ">", "250"}, {"DATA", "354"}} {
		if err := step(s[0], s[1]); err != nil {
			return fmt.Errorf("lmtp %s: %w", strings.Fields(s[0])[0], err)
		}
	}
	var b bytes.Buffer
	for _, line := range strings.SplitAfter(string(crlf(msg)), "\r\n") {
		if strings.HasPrefix(line, ".") {
			b.WriteByte('.')
		}
		b.WriteString(line)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) && b.Len() > 0 {
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	if _, err := c.Write(b.Bytes()); err != nil {
		return fmt.Errorf("lmtp data: %w", err)
	}
	if _, err := c.expectSMTP("250"); err != nil {
		return fmt.Errorf("lmtp delivery to %s: %w", rcpt, err)
	}
	_ = c.writeLine("QUIT")
	return nil
}

// DeliverLMTP is Deliver for tests: it fails tb on error.
func (d *Dovecot) DeliverLMTP(tb testing.TB, rcpt string, msg []byte) {
	tb.Helper()
	if err := d.Deliver(context.Background(), rcpt, msg); err != nil {
		tb.Fatalf("%v\n%s", err, d.Log.TailBlock(20))
	}
}

// FindMessage returns the first message file in user's INBOX (new/ and cur/
// of the Maildir) whose content contains substr.
func (d *Dovecot) FindMessage(user, substr string) ([]byte, bool) {
	return d.FindMessageIn(user, "INBOX", substr)
}

// FindMessageIn is FindMessage for another mailbox of user (see
// [Dovecot.MailboxDir]), e.g. one a Sieve script files into.
func (d *Dovecot) FindMessageIn(user, mailbox, substr string) ([]byte, bool) {
	for _, sub := range []string{"new", "cur"} {
		files, _ := filepath.Glob(filepath.Join(d.MailboxDir(user, mailbox), sub, "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err == nil && bytes.Contains(b, []byte(substr)) {
				return b, true
			}
		}
	}
	return nil, false
}

// WaitMessage polls user's INBOX until a message containing substr appears
// and returns it; after timeout it fails tb with the tail of Dovecot's log.
func (d *Dovecot) WaitMessage(tb testing.TB, user, substr string, timeout time.Duration) []byte {
	tb.Helper()
	return d.WaitMessageIn(tb, user, "INBOX", substr, timeout)
}

// WaitMessageIn is WaitMessage for another mailbox of user.
func (d *Dovecot) WaitMessageIn(tb testing.TB, user, mailbox, substr string, timeout time.Duration) []byte {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if b, ok := d.FindMessageIn(user, mailbox, substr); ok {
			return b
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no message with %q in %s after %v\n%s", substr, d.MailboxDir(user, mailbox), timeout, d.Log.TailBlock(30))
		}
		time.Sleep(pollInterval)
	}
}
