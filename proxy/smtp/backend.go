package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"

	"github.com/mailgate/mailgate/proxy"
)

// The backend side of submission: a go-smtp client logs in to Postfix on
// behalf of the verified user, either as the Dovecot master user (AUTH PLAIN
// authzid=user, authcid=master; stock DMS) or with XCLIENT LOGIN=user (Postfix
// with smtpd_authorized_xclient_hosts); then the session reads and writes the
// connection itself (backendSession). go-smtp's client cannot send XCLIENT,
// and its STARTTLS keeps the TLS connection to itself, so mailgate speaks the
// start of the session (preamble): STARTTLS, then XCLIENT, written without
// reading its reply, which smtp.NewClient reads as its greeting (Postfix
// answers XCLIENT with a new 220). XCLIENT is never sent after AUTH: it
// resets the session and cancels the login.

// Deadlines towards the backend once logged in (RFC 5321 section 4.5.3.2).
const (
	backendReplyTimeout      = 5 * time.Minute  // MAIL, RCPT, DATA's 354
	backendSubmissionTimeout = 10 * time.Minute // the reply after the final dot
	backendQuitTimeout       = 5 * time.Second
)

// backendCaps is what mailgate needs from the backend's EHLO reply: the
// extensions whose parameters it passes on.
type backendCaps struct {
	size     int64 // SIZE; 0 if absent or unlimited
	utf8     bool  // SMTPUTF8
	dsn      bool  // DSN
	eightBit bool  // 8BITMIME
	chunking bool  // CHUNKING (BDAT)
	binary   bool  // BINARYMIME
}

func capsOf(c *smtp.Client) backendCaps {
	var caps backendCaps
	if ok, v := c.Extension("SIZE"); ok {
		caps.size, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		caps.size = max(caps.size, 0)
	}
	caps.utf8, _ = c.Extension("SMTPUTF8")
	caps.dsn, _ = c.Extension("DSN")
	caps.eightBit, _ = c.Extension("8BITMIME")
	caps.chunking, _ = c.Extension("CHUNKING")
	caps.binary, _ = c.Extension("BINARYMIME")
	return caps
}

// backendSession is a session on the backend, logged in as one user. The
// go-smtp client that logged in is left behind: from then on mailgate
// reads and writes the connection itself (session.go, data.go). SMTP is
// lockstep and Postfix says nothing after its 235 (or the EHLO reply for
// an XCLIENT login) until the next command, so the client's buffer holds
// nothing that could be lost.
type backendSession struct {
	conn net.Conn // what commands go through: TLS, or the TCP connection
	raw  net.Conn // the TCP connection under any TLS layer: deadlines and abort
	br   *bufio.Reader
	caps backendCaps
	rep  []byte // the last reply, reused
	cmd  []byte // the last command line, reused
}

func newBackendSession(c *smtp.Client, conn, raw net.Conn) *backendSession {
	return &backendSession{conn: conn, raw: raw, br: bufio.NewReaderSize(conn, 1024), caps: capsOf(c)}
}

// Caps of a backend reply (RFC 5321 section 4.5.3.1.5 says 512 octets per
// line; Postfix's are shorter; a multi-line reply of EHLO size at most).
const (
	maxReplyLine  = 2048
	maxReplyLines = 64
)

// errBadReply: the backend said something that is not an SMTP reply.
var errBadReply = errors.New("smtp: malformed reply from the backend")

// send writes a command line (without CRLF) within timeout.
func (b *backendSession) send(line []byte, timeout time.Duration) error {
	b.raw.SetWriteDeadline(time.Now().Add(timeout))
	b.cmd = append(append(b.cmd[:0], line...), '\r', '\n') // one write: one TLS record
	_, err := b.conn.Write(b.cmd)
	return err
}

// write writes body bytes within timeout.
func (b *backendSession) write(p []byte, timeout time.Duration) error {
	if len(p) == 0 {
		return nil
	}
	b.raw.SetWriteDeadline(time.Now().Add(timeout))
	_, err := proxy.BatchWrite(b.conn, p)
	return err
}

// roundTrip sends a command and reads its reply.
func (b *backendSession) roundTrip(line []byte, timeout time.Duration) (int, []byte, error) {
	if err := b.send(line, timeout); err != nil {
		return 0, nil, err
	}
	return b.readReply(timeout)
}

// readReply reads one reply, every line of it, within timeout, and
// returns its code and its bytes as they came (with CRLF), valid until the
// next read.
func (b *backendSession) readReply(timeout time.Duration) (code int, raw []byte, err error) {
	b.raw.SetReadDeadline(time.Now().Add(timeout))
	b.rep = b.rep[:0]
	for n := 0; n < maxReplyLines; n++ {
		line, err := proxy.ReadLine(b.br, maxReplyLine)
		if err != nil {
			return 0, nil, err
		}
		c, more, ok := replyLine(line)
		if !ok || (n > 0 && c != code) {
			return 0, nil, fmt.Errorf("%w: %q", errBadReply, proxy.Truncate(line))
		}
		code = c
		b.rep = append(append(b.rep, line...), '\r', '\n')
		if !more {
			return code, b.rep, nil
		}
	}
	return 0, nil, fmt.Errorf("%w: more than %d lines", errBadReply, maxReplyLines)
}

// replyLine parses the start of a reply line: a code 200-599 (or 1xx/3xx
// intermediates), then a space (the last line), a hyphen (more follow) or
// nothing.
func replyLine(line []byte) (code int, more, ok bool) {
	if len(line) < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' {
		return 0, false, false
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	switch {
	case len(line) == 3:
		return code, false, true
	case line[3] == ' ':
		return code, false, true
	case line[3] == '-':
		return code, true, true
	}
	return 0, false, false
}

// stale reports whether the backend spoke unasked or closed while the
// session was idle: Postfix ends an idle session (smtpd_timeout) with a
// 421 and a close, which must not become the reply to the client's next
// MAIL; that MAIL gets a new backend session instead.
func (b *backendSession) stale() bool { return b.br.Buffered() > 0 || proxy.PeerSpoke(b.raw) }

// quit ends the session politely, within backendQuitTimeout.
func (b *backendSession) quit() {
	b.roundTrip([]byte("QUIT"), backendQuitTimeout)
	b.raw.Close()
}

// abort closes the connection at once. In the middle of a message the
// backend never sees its end and discards what it got.
func (b *backendSession) abort() { b.raw.Close() }

// dialog is the backend login of one client connection, for the login
// sequence (proxy.BackendDialog; Conn.Login and Conn.Reconnect dial, with
// the PROXY header and implicit TLS): STARTTLS when configured, XCLIENT
// when configured, EHLO, then AUTH PLAIN as the master user unless XCLIENT
// LOGIN did the login. For the user's own credentials (password
// passthrough) it is AUTH PLAIN with them, and XCLIENT never carries LOGIN
// (only the client's address, when configured). The connection is
// registered with the client connection, so that closing the client closes
// it too. On success session holds the backend session.
type dialog struct {
	f       *Front
	sc      *conn
	session *backendSession
}

func (f *Front) dialog(sc *conn) *dialog { return &dialog{f: f, sc: sc} }

// Login implements proxy.BackendDialog. Errors: a *proxy.Refusal (the
// user's own password refused: 535), proxy.ErrMailboxRefused (the master
// login refused: Postfix says 535 for an unknown mailbox), or
// proxy.ErrBackendUnavailable.
func (d *dialog) Login(ctx context.Context, conn net.Conn, a proxy.BackendAuth) (_ *proxy.BackendSession, err error) {
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if !d.sc.setBackend(raw) {
		return nil, proxy.ErrClientGone
	}
	defer func() {
		if err != nil {
			d.sc.clearBackend(raw)
		}
	}()
	stop := whileLoggingIn(ctx, raw)
	defer func() {
		if !stop() && err == nil {
			err = fmt.Errorf("%w: %v", proxy.ErrBackendUnavailable, context.Cause(ctx))
		}
	}()
	c, top, err := d.f.hello(ctx, conn, d.f.xclientAttrs(a))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", proxy.ErrBackendUnavailable, err)
	}
	if d.f.backend.Login != loginXCLIENT || a.Own {
		if err := d.auth(ctx, c, a); err != nil {
			return nil, err
		}
	}
	d.session = newBackendSession(c, top, raw)
	return &proxy.BackendSession{Conn: raw}, nil
}

// xclientAttrs are the XCLIENT attributes of a login: LOGIN= for an
// XCLIENT login on behalf of the user, ADDR= and PORT= when the client's
// address is passed that way; none: no XCLIENT.
func (f *Front) xclientAttrs(a proxy.BackendAuth) []string {
	var attrs []string
	if f.backend.Login == loginXCLIENT && !a.Own {
		attrs = append(attrs, "LOGIN="+xtext(a.AuthzID))
	}
	if f.backend.ClientIP == clientIPXCLIENT {
		if ip, port, ok := proxy.SplitAddr(a.Remote); ok {
			if strings.Contains(ip, ":") {
				ip = "IPV6:" + ip
			}
			attrs = append(attrs, "ADDR="+ip, "PORT="+port)
		}
	}
	return attrs
}

// auth logs in with AUTH PLAIN: as the master user on behalf of the user,
// or with the user's own credentials.
func (d *dialog) auth(ctx context.Context, c *smtp.Client, a proxy.BackendAuth) error {
	cl := sasl.NewPlainClient(a.AuthzID, a.AuthcID, a.Password)
	if a.Own {
		cl = sasl.NewPlainClient("", a.AuthcID, a.Password)
		if dl, ok := ctx.Deadline(); ok {
			c.CommandTimeout = time.Until(dl) // Dovecot answers a wrong password slowly
		}
	}
	err := c.Auth(cl)
	if err == nil {
		return nil
	}
	var se *smtp.SMTPError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%w: AUTH: %v", proxy.ErrBackendUnavailable, context.Cause(ctx))
	case a.Own && errors.As(err, &se) && se.Code == 535:
		ref := &proxy.Refusal{Reply: []byte(smtpReplyLine(se)), Credentials: true}
		return fmt.Errorf("%w: AUTH: %v", ref, err)
	case errors.As(err, &se) && se.Code == 535:
		// Postfix says the same for an unknown user and a wrong master
		// password; the second is a configuration error worth a warning.
		d.sc.c.Log.Warn("backend refused the master login (unknown user, or wrong master credentials?)",
			"code", se.Code, "text", se.Message)
		return fmt.Errorf("%w: AUTH: %v", proxy.ErrMailboxRefused, err)
	}
	return fmt.Errorf("%w: AUTH: %v", proxy.ErrBackendUnavailable, err)
}

// smtpReplyLine is a go-smtp error as the reply line it was.
func smtpReplyLine(se *smtp.SMTPError) string {
	if se.EnhancedCode != smtp.EnhancedCodeNotSet && se.EnhancedCode != smtp.NoEnhancedCode {
		ec := se.EnhancedCode
		return fmt.Sprintf("%d %d.%d.%d %s\r\n", se.Code, ec[0], ec[1], ec[2], se.Message)
	}
	return fmt.Sprintf("%d %s\r\n", se.Code, se.Message)
}

// whileLoggingIn bounds a backend conversation by ctx: its deadline on raw,
// and closing raw when it ends, which is what reliably ends a blocked read
// (the go-smtp client sets, and clears, its own deadline for each command).
// The returned stop reports false if ctx ended first.
func whileLoggingIn(ctx context.Context, raw net.Conn) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	after := context.AfterFunc(ctx, func() { raw.Close() })
	return func() bool {
		raw.SetDeadline(time.Time{})
		return after()
	}
}

// hello gets a backend connection as far as a successful EHLO: after
// STARTTLS when configured, and after XCLIENT with attrs when attrs is not
// empty. STARTTLS is mailgate's own (preamble), so that the TLS
// connection is known and reused by the session; go-smtp's client then
// starts after it. top is what the session talks through.
func (f *Front) hello(ctx context.Context, conn net.Conn, attrs []string) (c *smtp.Client, top net.Conn, err error) {
	top = conn
	if len(attrs) > 0 || f.backend.TLS == proxy.TLSStartTLS {
		if top, err = preamble(ctx, conn, f.backend, f.opts.Hostname, strings.Join(attrs, " ")); err != nil {
			return nil, nil, err
		}
	}
	c = smtp.NewClient(top)
	c.CommandTimeout = f.lim.DialTimeout
	if err := c.Hello(f.opts.Hostname); err != nil {
		what := "EHLO"
		if len(attrs) > 0 {
			what = "XCLIENT" // Hello reads the reply to XCLIENT as its greeting
		}
		return nil, nil, fmt.Errorf("%s: %v", what, err)
	}
	c.CommandTimeout = backendReplyTimeout
	c.SubmissionTimeout = backendSubmissionTimeout
	return c, top, nil
}

// probeCaps reads the backend's capabilities (after STARTTLS when
// configured) and says QUIT.
func (f *Front) probeCaps(ctx context.Context) (backendCaps, error) {
	ctx, cancel := context.WithTimeout(ctx, f.lim.DialTimeout)
	defer cancel()
	c, raw, err := f.probeDial(ctx)
	if err != nil {
		return backendCaps{}, err
	}
	defer raw.Close()
	caps := capsOf(c)
	c.CommandTimeout = backendQuitTimeout
	c.Quit()
	return caps, nil
}

// probeDial connects to the backend for a probe (no client: a PROXY v2
// LOCAL header, as load balancers send for health checks, so the backend
// uses the real connection's addresses) and gets as far as EHLO. The
// returned net.Conn is the TCP connection, closed by the caller.
func (f *Front) probeDial(ctx context.Context) (_ *smtp.Client, _ net.Conn, err error) {
	b := f.backend
	d := net.Dialer{KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", b.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", b.Address, err)
	}
	defer func() {
		if err != nil {
			raw.Close()
		}
	}()
	stop := whileLoggingIn(ctx, raw)
	defer func() {
		if !stop() && err == nil {
			err = context.Cause(ctx)
		}
	}()
	if b.ClientIP == clientIPProxy {
		h, err := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}).Format()
		if err == nil {
			_, err = raw.Write(h)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("proxy header: %w", err)
		}
	}
	conn := raw
	if b.TLS == proxy.TLSImplicit {
		tc, err := proxy.BackendHandshake(ctx, raw, b)
		if err != nil {
			return nil, nil, err
		}
		conn = tc
	}
	c, _, err := f.hello(ctx, conn, nil)
	if err != nil {
		return nil, nil, err
	}
	return c, raw, nil
}

// preamble runs greeting, EHLO, STARTTLS (when configured) and, with
// attrs, EHLO again and XCLIENT, and returns the connection (TLS if
// upgraded) for go-smtp's client, which starts by reading a greeting: the
// reply to XCLIENT (Postfix answers it with a new 220), or, without
// XCLIENT, a replayed one (greeted).
func preamble(ctx context.Context, conn net.Conn, b proxy.Backend, hostname, attrs string) (net.Conn, error) {
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	ext, err := ehlo(tp, hostname)
	if err != nil {
		return nil, err
	}
	if b.TLS == proxy.TLSStartTLS {
		if conn, err = startTLS(ctx, tp, conn, ext, b); err != nil {
			return nil, err
		}
		tp = textproto.NewConn(conn)
		if attrs == "" {
			return &greeted{Conn: conn, pre: []byte("220 greeted before STARTTLS\r\n")}, nil
		}
		if ext, err = ehlo(tp, hostname); err != nil {
			return nil, err
		}
	}
	if err := sendXCLIENT(tp, ext, attrs); err != nil {
		return nil, err
	}
	return conn, nil
}

// startTLS upgrades the backend connection after the EHLO that offered it.
func startTLS(ctx context.Context, tp *textproto.Conn, conn net.Conn, ext map[string]string, b proxy.Backend) (net.Conn, error) {
	if _, ok := ext["STARTTLS"]; !ok {
		return nil, errors.New("starttls: not offered")
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, fmt.Errorf("starttls: %w", err)
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("starttls: %w", err)
	}
	if tp.R.Buffered() > 0 {
		return nil, errors.New("starttls: data after the 220")
	}
	tc, err := proxy.BackendHandshake(ctx, conn, b)
	if err != nil {
		return nil, fmt.Errorf("starttls: %w", err)
	}
	return tc, nil
}

// sendXCLIENT writes "XCLIENT attrs" (those the backend offers; PORT may
// be missing) without reading the reply, which go-smtp's client reads as
// its greeting.
func sendXCLIENT(tp *textproto.Conn, ext map[string]string, attrs string) error {
	offered, ok := ext["XCLIENT"]
	if !ok {
		return errors.New("XCLIENT not offered (is mailgate in smtpd_authorized_xclient_hosts?)")
	}
	var keep []string
	for _, a := range strings.Fields(attrs) {
		name, _, _ := strings.Cut(a, "=")
		if hasWord(offered, name) {
			keep = append(keep, a)
		} else if name != "PORT" {
			return fmt.Errorf("XCLIENT does not offer %s", name)
		}
	}
	if tp.R.Buffered() > 0 {
		return errors.New("data after the EHLO reply")
	}
	if err := tp.PrintfLine("XCLIENT %s", strings.Join(keep, " ")); err != nil {
		return fmt.Errorf("XCLIENT: %w", err)
	}
	return nil
}

// greeted is a connection whose greeting mailgate has read already (before
// STARTTLS): go-smtp's client, which begins by reading one, is given it
// again.
type greeted struct {
	net.Conn
	pre []byte
}

func (g *greeted) Read(p []byte) (int, error) {
	if len(g.pre) > 0 {
		n := copy(p, g.pre)
		g.pre = g.pre[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// ehlo sends EHLO and returns the extensions, keyword upper-cased.
func ehlo(tp *textproto.Conn, hostname string) (map[string]string, error) {
	if err := tp.PrintfLine("EHLO %s", hostname); err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	_, msg, err := tp.ReadResponse(250)
	if err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	ext := make(map[string]string)
	lines := strings.Split(msg, "\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext, nil
}

func hasWord(list, w string) bool {
	for _, f := range strings.Fields(list) {
		if strings.EqualFold(f, w) {
			return true
		}
	}
	return false
}

// xtext encodes s as RFC 3461 xtext (XCLIENT attribute values).
func xtext(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < '!' || ch > '~' || ch == '+' || ch == '=' {
			fmt.Fprintf(&sb, "+%02X", ch)
			continue
		}
		sb.WriteByte(ch)
	}
	return sb.String()
}
