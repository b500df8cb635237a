// Package smtpc is the small SMTP submission client of the benchmarks: EHLO,
// AUTH with an initial response, and messages streamed from memory. It is not
// a general SMTP client: the messages it sends must need no dot-stuffing.
package smtpc

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// ErrReply is wrapped by the error of an unexpected reply code.
var ErrReply = errors.New("smtp: unexpected reply")

// Conn is one SMTP connection. It is not safe for concurrent use.
type Conn struct {
	nc    net.Conn
	r     *bufio.Reader
	w     *bufio.Writer
	limit time.Duration
}

// Dial connects to addr (implicit TLS when tlsConf is set) and reads the
// 220 greeting. timeout bounds each step (zero: 60 s). The caller must Close.
func Dial(addr string, tlsConf *tls.Config, timeout time.Duration) (*Conn, error) {
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	if tlsConf != nil {
		tc := tls.Client(nc, tlsConf)
		tc.SetDeadline(time.Now().Add(timeout))
		if err := tc.Handshake(); err != nil {
			nc.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		nc = tc
	}
	c := &Conn{nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriterSize(nc, 64<<10), limit: timeout}
	if _, err := c.expect(220); err != nil {
		nc.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	return c, nil
}

// Close closes the connection without QUIT.
func (c *Conn) Close() error { return c.nc.Close() }

// expect reads one (multi-line) reply and checks its code.
func (c *Conn) expect(code int) (string, error) {
	c.nc.SetDeadline(time.Now().Add(c.limit))
	var last string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		last = line
		if len(line) < 4 || line[3] != '-' {
			break
		}
	}
	if len(last) < 3 || last[:3] != fmt.Sprint(code) {
		return last, fmt.Errorf("%w: want %d, got %.60q", ErrReply, code, last)
	}
	return last, nil
}

// cmd sends one line and expects code. what names the command in errors
// (never the line itself: it may carry a credential).
func (c *Conn) cmd(what, line string, code int) error {
	c.nc.SetDeadline(time.Now().Add(c.limit))
	if _, err := c.w.WriteString(line + "\r\n"); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	if _, err := c.expect(code); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Ehlo sends EHLO.
func (c *Conn) Ehlo(name string) error { return c.cmd("EHLO", "EHLO "+name, 250) }

// AuthPlain sends AUTH PLAIN with an initial response.
func (c *Conn) AuthPlain(authzid, authcid, password string) error {
	ir := base64.StdEncoding.EncodeToString([]byte(authzid + "\x00" + authcid + "\x00" + password))
	return c.cmd("AUTH PLAIN", "AUTH PLAIN "+ir, 235)
}

// AuthXOAUTH2 sends AUTH XOAUTH2 with an initial response.
func (c *Conn) AuthXOAUTH2(user, token string) error {
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
	return c.cmd("AUTH XOAUTH2", "AUTH XOAUTH2 "+ir, 235)
}

// Send runs one transaction: MAIL, RCPT, DATA with msg (CRLF lines, none
// starting with a dot), and waits for the final 250.
func (c *Conn) Send(from, to string, msg []byte) error {
	if err := c.cmd("MAIL", "MAIL FROM:<"+from+">", 250); err != nil {
		return err
	}
	if err := c.cmd("RCPT", "RCPT TO:<"+to+">", 250); err != nil {
		return err
	}
	if err := c.cmd("DATA", "DATA", 354); err != nil {
		return err
	}
	c.nc.SetDeadline(time.Now().Add(c.limit))
	if _, err := c.w.Write(msg); err != nil {
		return err
	}
	if _, err := c.w.WriteString(".\r\n"); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	if _, err := c.expect(250); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}

// Quit sends QUIT and closes the connection.
func (c *Conn) Quit() error {
	err := c.cmd("QUIT", "QUIT", 221)
	c.nc.Close()
	return err
}

// Message builds a message of about size bytes from from to to: headers and
// lines of 76 letters and digits (nothing to dot-stuff), CRLF line ends.
func Message(from, to, subject string, size int) []byte {
	var b strings.Builder
	b.Grow(size + 256)
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@bench.example.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n", from, to, subject, strings.ReplaceAll(subject, " ", "-"))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	line := make([]byte, 78)
	for i := 0; b.Len() < size; i++ {
		for j := 0; j < 76; j++ {
			line[j] = alphabet[(i*7+j*13+i*j)%len(alphabet)]
		}
		line[76], line[77] = '\r', '\n'
		b.Write(line)
	}
	return []byte(b.String())
}
