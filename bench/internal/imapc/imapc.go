// Package imapc is the small IMAP client of the benchmarks: one connection,
// tagged commands, literals skipped or counted, nothing parsed that a
// benchmark does not need. It is not a general IMAP client.
package imapc

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// ErrNotOK is wrapped by the error of a command answered NO or BAD (or a
// greeting that is not "* OK").
var ErrNotOK = errors.New("imap: command refused")

// Conn is one IMAP connection. It is not safe for concurrent use.
type Conn struct {
	nc    net.Conn
	r     *bufio.Reader
	tag   int
	limit time.Duration
}

// Options shape a Dial.
type Options struct {
	// TLS, if not nil, starts TLS right after connecting (implicit TLS).
	TLS *tls.Config
	// Timeout bounds each command (and the connect plus greeting). Zero: 30 s.
	Timeout time.Duration
	// LocalAddr, if not nil, is the source address (another 127.x address).
	LocalAddr net.Addr
	// ReadBuffer is the size of the read buffer. Zero: 4 KiB.
	ReadBuffer int
}

const defaultTimeout = 30 * time.Second

// Dial connects to addr, does the TLS handshake when o.TLS is set and reads
// the greeting. The caller must Close the Conn.
func Dial(addr string, o Options) (*Conn, error) {
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	d := net.Dialer{Timeout: o.Timeout, LocalAddr: o.LocalAddr}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if o.TLS != nil {
		tc := tls.Client(nc, o.TLS)
		tc.SetDeadline(time.Now().Add(o.Timeout))
		if err := tc.Handshake(); err != nil {
			nc.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		nc = tc
	}
	size := o.ReadBuffer
	if size <= 0 {
		size = 4096
	}
	c := &Conn{nc: nc, r: bufio.NewReaderSize(nc, size), limit: o.Timeout}
	c.nc.SetDeadline(time.Now().Add(c.limit))
	line, err := c.readLine(nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(line, "* OK") {
		nc.Close()
		return nil, fmt.Errorf("%w: greeting %.40q", ErrNotOK, line)
	}
	return c, nil
}

// OpenIdle dials addr, logs in with login, selects INBOX and starts IDLE:
// one idle session, as a mail client leaves it.
func OpenIdle(addr string, o Options, login func(*Conn) error) (*Conn, error) {
	c, err := Dial(addr, o)
	if err != nil {
		return nil, err
	}
	if err := login(c); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Select("INBOX"); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.Idle(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the connection without LOGOUT.
func (c *Conn) Close() error { return c.nc.Close() }

// NetConn is the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Resumed reports whether the TLS handshake resumed a session (false
// without TLS).
func (c *Conn) Resumed() bool {
	tc, ok := c.nc.(*tls.Conn)
	return ok && tc.ConnectionState().DidResume
}

// readLine reads one response line (without CRLF), reading and discarding
// (or, with sink, copying to sink) every literal it announces. The returned
// line has each literal replaced by its size marker.
func (c *Conn) readLine(sink io.Writer) (string, error) {
	var b strings.Builder
	for {
		part, err := c.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			b.Write(part)
			continue
		}
		if err != nil {
			return "", err
		}
		part = part[:len(part)-1]
		if n := len(part); n > 0 && part[n-1] == '\r' {
			part = part[:n-1]
		}
		b.Write(part)
		s := b.String()
		size, ok := literalSize(s)
		if !ok {
			return s, nil
		}
		w := io.Discard
		if sink != nil {
			w = sink
		}
		if _, err := io.CopyN(w, c.r, size); err != nil {
			return "", fmt.Errorf("literal: %w", err)
		}
	}
}

// literalSize reports the size of a literal announced at the end of line:
// "{123}" or "{123+}".
func literalSize(line string) (int64, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(line[i+1:len(line)-1], "+"), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// Command sends "tag cmd" and reads until the tagged reply; literals in the
// untagged replies are copied to sink (nil: discarded). It returns the
// untagged lines (literals replaced by their markers) and fails with ErrNotOK
// unless the tagged reply is OK.
func (c *Conn) Command(cmd string, sink io.Writer) ([]string, error) {
	c.tag++
	tag := "a" + strconv.Itoa(c.tag)
	c.nc.SetDeadline(time.Now().Add(c.limit))
	if _, err := io.WriteString(c.nc, tag+" "+cmd+"\r\n"); err != nil {
		return nil, err
	}
	var untagged []string
	for {
		line, err := c.readLine(sink)
		if err != nil {
			return untagged, err
		}
		if rest, ok := strings.CutPrefix(line, tag+" "); ok {
			if strings.HasPrefix(rest, "OK") {
				return untagged, nil
			}
			return untagged, fmt.Errorf("%w: %s: %.60q", ErrNotOK, verb(cmd), rest)
		}
		if strings.HasPrefix(line, "+") {
			// A continuation we did not ask for (e.g. a SASL error
			// challenge): answer with an empty line and read on.
			if _, err := io.WriteString(c.nc, "\r\n"); err != nil {
				return untagged, err
			}
			continue
		}
		untagged = append(untagged, line)
	}
}

// verb is the first word of cmd, so errors never carry a credential.
func verb(cmd string) string {
	v, _, _ := strings.Cut(cmd, " ")
	if strings.EqualFold(v, "AUTHENTICATE") || strings.EqualFold(v, "LOGIN") {
		return strings.ToUpper(v)
	}
	return v
}

// AuthPlain sends AUTHENTICATE PLAIN with an initial response (SASL-IR):
// authzid, authcid and password (a master login when authzid is set).
func (c *Conn) AuthPlain(authzid, authcid, password string) error {
	ir := base64.StdEncoding.EncodeToString([]byte(authzid + "\x00" + authcid + "\x00" + password))
	_, err := c.Command("AUTHENTICATE PLAIN "+ir, nil)
	return err
}

// AuthXOAUTH2 sends AUTHENTICATE XOAUTH2 with an initial response.
func (c *Conn) AuthXOAUTH2(user, token string) error {
	_, err := c.Command("AUTHENTICATE XOAUTH2 "+XOAUTH2(user, token), nil)
	return err
}

// XOAUTH2 is the base64 XOAUTH2 initial response for user and token.
func XOAUTH2(user, token string) string {
	return base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
}

// Login sends LOGIN with both arguments quoted.
func (c *Conn) Login(user, password string) error {
	_, err := c.Command("LOGIN "+quote(user)+" "+quote(password), nil)
	return err
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Select selects mailbox and returns its EXISTS count.
func (c *Conn) Select(mailbox string) (int, error) {
	lines, err := c.Command("SELECT "+quote(mailbox), nil)
	if err != nil {
		return 0, err
	}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "*" && f[2] == "EXISTS" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, nil
}

// countWriter counts what is written to it and keeps nothing.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// FetchAll fetches BODY.PEEK[] of every message in the selected mailbox and
// returns the literal bytes received.
func (c *Conn) FetchAll() (int64, error) {
	var cw countWriter
	_, err := c.Command("FETCH 1:* (BODY.PEEK[])", &cw)
	return cw.n, err
}

// Idle sends IDLE and returns once the server sent its continuation. Done
// ends it.
func (c *Conn) Idle() error {
	c.tag++
	c.nc.SetDeadline(time.Now().Add(c.limit))
	if _, err := io.WriteString(c.nc, "a"+strconv.Itoa(c.tag)+" IDLE\r\n"); err != nil {
		return err
	}
	for {
		line, err := c.readLine(nil)
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, "+") {
			c.nc.SetDeadline(time.Time{})
			return nil
		}
		if strings.HasPrefix(line, "a"+strconv.Itoa(c.tag)+" ") {
			return fmt.Errorf("%w: IDLE: %.60q", ErrNotOK, line)
		}
	}
}

// Await reads untagged lines during IDLE until one ends with suffix (e.g.
// " EXISTS") and returns it, or fails after timeout. IDLE goes on.
func (c *Conn) Await(suffix string, timeout time.Duration) (string, error) {
	c.nc.SetDeadline(time.Now().Add(timeout))
	defer c.nc.SetDeadline(time.Time{})
	for {
		line, err := c.readLine(nil)
		if err != nil {
			return "", err
		}
		if strings.HasSuffix(line, suffix) {
			return line, nil
		}
	}
}

// Done ends IDLE and waits for its tagged reply.
func (c *Conn) Done() error {
	tag := "a" + strconv.Itoa(c.tag) + " "
	c.nc.SetDeadline(time.Now().Add(c.limit))
	if _, err := io.WriteString(c.nc, "DONE\r\n"); err != nil {
		return err
	}
	for {
		line, err := c.readLine(nil)
		if err != nil {
			return err
		}
		if rest, ok := strings.CutPrefix(line, tag); ok {
			if strings.HasPrefix(rest, "OK") {
				return nil
			}
			return fmt.Errorf("%w: IDLE: %.60q", ErrNotOK, rest)
		}
	}
}

// Logout sends LOGOUT, waits for the tagged OK and closes the connection.
func (c *Conn) Logout() error {
	_, err := c.Command("LOGOUT", nil)
	cerr := c.nc.Close()
	if err != nil {
		return err
	}
	return cerr
}
