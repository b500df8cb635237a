package proxytest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// Conn is a scripted client connection: C is what it talks through (a
// *tls.Conn after a handshake) and BR reads from C.
type Conn struct {
	T  *testing.T
	C  net.Conn
	BR *bufio.Reader
}

// NewConn wraps an open connection; it is closed when the test ends.
func NewConn(t *testing.T, c net.Conn) *Conn {
	t.Helper()
	t.Cleanup(func() { c.Close(); CheckSuiteLog(t) })
	return &Conn{T: t, C: c, BR: bufio.NewReader(c)}
}

// DialPlain connects to addr over TCP.
func DialPlain(t *testing.T, addr string) *Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("net.Dial() = %v", err)
	}
	return NewConn(t, c)
}

// DialTLS connects to addr and runs the TLS handshake with cfg.
func DialTLS(t *testing.T, addr string, cfg *tls.Config) *Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("tls.Dial() = %v", err)
	}
	return NewConn(t, c)
}

// DialFrom connects to addr from the loopback address src.
func DialFrom(t *testing.T, src, addr string) *Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return &Conn{T: t, C: c, BR: bufio.NewReader(c)}
}

// DialTLSFrom connects from the loopback address src; the TLS handshake
// runs with the first read or write.
func DialTLSFrom(t *testing.T, src, addr string, cfg *tls.Config) *Conn {
	t.Helper()
	c := DialFrom(t, src, addr)
	tc := tls.Client(c.C, cfg)
	c.C, c.BR = tc, bufio.NewReader(tc)
	return c
}

// DialProxied connects from 127.0.0.1 and sends a PROXY v2 header naming src.
func DialProxied(t *testing.T, addr, src string) *Conn {
	t.Helper()
	c := DialPlain(t, addr)
	hdr := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, c.C.RemoteAddr())
	if _, err := hdr.WriteTo(c.C); err != nil {
		t.Fatal(err)
	}
	return c
}

// DialNoFail connects to addr within a second, for flood loops that
// expect some connections to fail.
func DialNoFail(addr string) (interface{ Close() error }, error) {
	return net.DialTimeout("tcp", addr, time.Second)
}

// Send writes line with CRLF.
func (tc *Conn) Send(line string) {
	tc.T.Helper()
	tc.Write(line + "\r\n")
}

// Write writes s as it is (no CRLF added), within 10 s.
func (tc *Conn) Write(s string) {
	tc.T.Helper()
	tc.C.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(tc.C, s); err != nil {
		tc.T.Fatalf("write %q: %v", s, err)
	}
}

// ReadLine returns the next line without CRLF.
func (tc *Conn) ReadLine() string {
	tc.T.Helper()
	tc.C.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := tc.BR.ReadString('\n')
	if err != nil {
		tc.T.Fatalf("read: %v (partial %q)", err, line)
	}
	return strings.TrimRight(line, "\r\n")
}

// Expect reads the next line and checks its prefix.
func (tc *Conn) Expect(prefix string) string {
	tc.T.Helper()
	line := tc.ReadLine()
	if !strings.HasPrefix(line, prefix) {
		tc.T.Fatalf("got %q, want prefix %q", line, prefix)
	}
	return line
}

// ExpectTagged skips untagged lines up to the one tagged tag and checks its prefix.
func (tc *Conn) ExpectTagged(tag, prefix string) string {
	tc.T.Helper()
	for {
		line := tc.ReadLine()
		if strings.HasPrefix(line, tag+" ") {
			if !strings.HasPrefix(line, prefix) {
				tc.T.Fatalf("got %q, want prefix %q", line, prefix)
			}
			return line
		}
	}
}

// ExpectClosed checks that the server closes the connection.
func (tc *Conn) ExpectClosed() {
	tc.T.Helper()
	tc.C.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(tc.BR)
	if err != nil {
		tc.T.Fatalf("connection not closed: %v (read %q)", err, rest)
	}
	if len(rest) > 0 {
		tc.T.Fatalf("unexpected bytes before close: %q", rest)
	}
}

// StartTLS upgrades a plain IMAP connection after the greeting.
func (tc *Conn) StartTLS(cfg *tls.Config) {
	tc.T.Helper()
	tc.Send("s1 STARTTLS")
	tc.Expect("s1 OK")
	tc.handshake(cfg)
}

// UpgradeTLS runs a client TLS handshake on a plain connection (implicit TLS).
func (tc *Conn) UpgradeTLS(cfg *tls.Config) {
	tc.T.Helper()
	tc.C.SetDeadline(time.Now().Add(10 * time.Second))
	tc.handshake(cfg)
	tc.C.SetDeadline(time.Time{})
}

func (tc *Conn) handshake(cfg *tls.Config) {
	tc.T.Helper()
	c := tls.Client(tc.C, cfg)
	if err := c.Handshake(); err != nil {
		tc.T.Fatalf("handshake: %v", err)
	}
	tc.C, tc.BR = c, bufio.NewReader(c)
}

// Reset kills the connection like a dying process: the kernel sends RST.
func (tc *Conn) Reset() {
	tc.T.Helper()
	raw := tc.C
	if u, ok := raw.(interface{ NetConn() net.Conn }); ok {
		raw = u.NetConn()
	}
	tcp, ok := raw.(*net.TCPConn)
	if !ok {
		tc.T.Fatalf("reset: %T is not a TCP connection", raw)
	}
	tcp.SetLinger(0)
	tcp.Close()
}

// RecordConn keeps a copy of everything read from the connection.
type RecordConn struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *RecordConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.buf.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// String is everything read so far.
func (c *RecordConn) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// Recorded wraps tc's connection so that everything the client reads from
// now on is kept.
func (tc *Conn) Recorded() *RecordConn {
	rc := &RecordConn{Conn: tc.C}
	tc.C, tc.BR = rc, bufio.NewReader(rc)
	return rc
}

// SMTPReply reads one (possibly multi-line) reply and returns its code and
// its lines without the code.
func (tc *Conn) SMTPReply() (int, []string) {
	tc.T.Helper()
	var lines []string
	for {
		l := tc.ReadLine()
		if len(l) < 4 {
			tc.T.Fatalf("short SMTP reply line %q", l)
		}
		lines = append(lines, l[4:])
		if l[3] == ' ' {
			code, err := strconv.Atoi(l[:3])
			if err != nil {
				tc.T.Fatalf("bad SMTP reply line %q", l)
			}
			return code, lines
		}
	}
}

// SMTPCmd sends line and checks that the reply's last line starts with want
// ("250 2.1.0" or "250"); it returns the last line.
func (tc *Conn) SMTPCmd(line, want string) string {
	tc.T.Helper()
	tc.Send(line)
	return tc.SMTPExpect(want)
}

// SMTPExpect reads a reply and checks the prefix of its last line.
func (tc *Conn) SMTPExpect(want string) string {
	tc.T.Helper()
	code, lines := tc.SMTPReply()
	last := strconv.Itoa(code) + " " + lines[len(lines)-1]
	if !strings.HasPrefix(last, want) {
		tc.T.Fatalf("reply %q, want prefix %q", last, want)
	}
	return last
}

// SMTPEHLO sends EHLO and returns the extension keywords (with parameters).
func (tc *Conn) SMTPEHLO() []string {
	tc.T.Helper()
	tc.Send("EHLO client.test")
	code, lines := tc.SMTPReply()
	if code != 250 {
		tc.T.Fatalf("EHLO = %d %q", code, lines)
	}
	return lines[1:]
}

// SMTPStartTLS runs STARTTLS and the handshake.
func (tc *Conn) SMTPStartTLS(cfg *tls.Config) {
	tc.T.Helper()
	tc.SMTPCmd("STARTTLS", "220 ")
	tc.handshake(cfg)
}

// SMTPLogin authenticates as alice with XOAUTH2.
func (tc *Conn) SMTPLogin() {
	tc.T.Helper()
	tc.SMTPCmd("AUTH XOAUTH2 "+XOAUTH2("alice@example.test", TestToken), "235 2.7.0")
}

// HasExt reports whether the EHLO keywords exts hold kw.
func HasExt(exts []string, kw string) bool {
	for _, e := range exts {
		if e == kw || strings.HasPrefix(e, kw+" ") {
			return true
		}
	}
	return false
}

// ExtParam is the parameter of kw in the EHLO keywords exts.
func ExtParam(exts []string, kw string) string {
	for _, e := range exts {
		if v, ok := strings.CutPrefix(e, kw+" "); ok {
			return v
		}
	}
	return ""
}

// WaitFor polls cond until it holds or 10 s have passed.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ClosedAddr is a loopback address nobody listens on.
func ClosedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
