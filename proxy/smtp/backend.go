package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
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

// The backend side of submission: a go-smtp client logged in to Postfix on
// behalf of the verified user, either as the Dovecot master user (AUTH PLAIN
// authzid=user, authcid=master; stock DMS) or with XCLIENT LOGIN=user (Postfix
// with smtpd_authorized_xclient_hosts). go-smtp's client cannot send XCLIENT,
// so mailgate speaks the start of the session itself, writes XCLIENT without
// reading its reply, and lets smtp.NewClient read that reply as its greeting
// (Postfix answers XCLIENT with a new 220). XCLIENT is never sent after AUTH:
// it resets the session and cancels the login.

// Deadlines towards the backend once logged in (RFC 5321 section 4.5.3.2).
const (
	backendReplyTimeout      = 5 * time.Minute  // MAIL, RCPT, DATA's 354
	backendSubmissionTimeout = 10 * time.Minute // the reply after the final dot
	backendQuitTimeout       = 5 * time.Second
)

// backendCaps is what mailgate needs from the backend's EHLO reply.
type backendCaps struct {
	size     int64 // SIZE; 0 if absent or unlimited
	utf8     bool  // SMTPUTF8
	dsn      bool  // DSN
	eightBit bool  // 8BITMIME
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
	return caps
}

// backendSession is a session on the backend, logged in as one user.
type backendSession struct {
	c    *smtp.Client
	raw  net.Conn // the TCP connection under any TLS layer: deadlines and abort
	caps backendCaps
}

// quit ends the session politely, within backendQuitTimeout.
func (b *backendSession) quit() {
	b.c.CommandTimeout = backendQuitTimeout
	b.raw.SetDeadline(time.Now().Add(backendQuitTimeout))
	b.c.Quit()
	b.raw.Close()
}

// abort closes the connection at once. In the middle of DATA the backend
// never sees the final dot and discards what it got.
func (b *backendSession) abort() { b.raw.Close() }

// dialog is the backend login of one client connection, for the login
// sequence (proxy.BackendDialog; Conn.Login and Conn.Reconnect dial, with
// the PROXY header and implicit TLS): STARTTLS when configured, XCLIENT
// when configured, EHLO, then AUTH PLAIN as the master user unless XCLIENT
// LOGIN did the login. For the user's own credentials (password
// passthrough) it is AUTH PLAIN with them, and XCLIENT never carries LOGIN
// (only the client's address, when configured). The connection is
// registered with the client connection, so that closing the client closes
// it too. On success session holds the go-smtp client.
type dialog struct {
	f       *Front
	cc      *clientConn
	log     *slog.Logger
	session *backendSession
}

func (f *Front) dialog(cc *clientConn, log *slog.Logger) *dialog {
	return &dialog{f: f, cc: cc, log: log}
}

// loginRequest is a login through d, for the login sequence.
func (f *Front) loginRequest(d *dialog, cc *clientConn) proxy.LoginRequest {
	return proxy.LoginRequest{Backend: f.backend, Dialog: d, ClientTLS: cc.tlsVersion()}
}

// Login implements proxy.BackendDialog. Errors: a *proxy.Refusal (the
// user's own password refused: 535), proxy.ErrMailboxRefused (the master
// login refused: Postfix says 535 for an unknown mailbox), or
// proxy.ErrBackendUnavailable.
func (d *dialog) Login(ctx context.Context, conn net.Conn, a proxy.BackendAuth) (_ *proxy.BackendSession, err error) {
	b := d.f.backend
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if !d.cc.setBackend(raw) {
		return nil, proxy.ErrClientGone
	}
	defer func() {
		if err != nil {
			d.cc.clearBackend(raw)
		}
	}()
	stop := whileLoggingIn(ctx, raw)
	defer func() {
		if !stop() && err == nil {
			err = fmt.Errorf("%w: %v", proxy.ErrBackendUnavailable, context.Cause(ctx))
		}
	}()

	var attrs []string
	if b.Login == loginXCLIENT && !a.Own {
		attrs = append(attrs, "LOGIN="+xtext(a.AuthzID))
	}
	if b.ClientIP == clientIPXCLIENT {
		if ip, port, ok := proxy.SplitAddr(a.Remote); ok {
			if strings.Contains(ip, ":") {
				ip = "IPV6:" + ip
			}
			attrs = append(attrs, "ADDR="+ip, "PORT="+port)
		}
	}
	c, err := d.f.hello(ctx, conn, attrs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", proxy.ErrBackendUnavailable, err)
	}
	if b.Login != loginXCLIENT || a.Own {
		cl := sasl.NewPlainClient(a.AuthzID, a.AuthcID, a.Password)
		if a.Own {
			cl = sasl.NewPlainClient("", a.AuthcID, a.Password)
			if dl, ok := ctx.Deadline(); ok {
				c.CommandTimeout = time.Until(dl) // Dovecot answers a wrong password slowly
			}
		}
		if err := c.Auth(cl); err != nil {
			var se *smtp.SMTPError
			switch {
			case ctx.Err() != nil:
				return nil, fmt.Errorf("%w: AUTH: %v", proxy.ErrBackendUnavailable, context.Cause(ctx))
			case a.Own && errors.As(err, &se) && se.Code == 535:
				ref := &proxy.Refusal{Reply: []byte(fmt.Sprintf("%d %s\r\n", se.Code, se.Message)), Credentials: true}
				return nil, fmt.Errorf("%w: AUTH: %v", ref, err)
			case errors.As(err, &se) && se.Code == 535:
				// Postfix says the same for an unknown user and a wrong master
				// password; the second is a configuration error worth a warning.
				d.log.Warn("backend refused the master login (unknown user, or wrong master credentials?)",
					"code", se.Code, "text", se.Message)
				return nil, fmt.Errorf("%w: AUTH: %v", proxy.ErrMailboxRefused, err)
			}
			return nil, fmt.Errorf("%w: AUTH: %v", proxy.ErrBackendUnavailable, err)
		}
	}
	c.CommandTimeout = backendReplyTimeout
	c.SubmissionTimeout = backendSubmissionTimeout
	d.session = &backendSession{c: c, raw: raw, caps: capsOf(c)}
	return &proxy.BackendSession{Conn: raw}, nil
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
// empty.
func (f *Front) hello(ctx context.Context, conn net.Conn, attrs []string) (*smtp.Client, error) {
	b := f.backend
	var c *smtp.Client
	switch {
	case len(attrs) > 0:
		conn, err := sendXCLIENT(ctx, conn, b, f.opts.Hostname, strings.Join(attrs, " "))
		if err != nil {
			return nil, err
		}
		c = smtp.NewClient(conn)
	case b.TLS == proxy.TLSStartTLS:
		var err error
		c, err = smtp.NewClientStartTLS(conn, proxy.BackendTLSConfig(b))
		if err != nil {
			return nil, fmt.Errorf("starttls: %v", err)
		}
	default:
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = f.lim.DialTimeout
	if err := c.Hello(f.opts.Hostname); err != nil {
		what := "EHLO"
		if len(attrs) > 0 {
			what = "XCLIENT" // Hello reads the reply to XCLIENT as its greeting
		}
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	return c, nil
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
	c, err := f.hello(ctx, conn, nil)
	if err != nil {
		return nil, nil, err
	}
	return c, raw, nil
}

// sendXCLIENT runs greeting, EHLO, optional STARTTLS and EHLO again on
// conn, then writes "XCLIENT attrs" without reading the reply: the caller
// hands the connection (TLS if upgraded) to smtp.NewClient, whose greeting
// read consumes it.
func sendXCLIENT(ctx context.Context, conn net.Conn, b proxy.Backend, hostname, attrs string) (net.Conn, error) {
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	ext, err := ehlo(tp, hostname)
	if err != nil {
		return nil, err
	}
	if b.TLS == proxy.TLSStartTLS {
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
		conn, tp = tc, textproto.NewConn(tc)
		if ext, err = ehlo(tp, hostname); err != nil {
			return nil, err
		}
	}
	offered, ok := ext["XCLIENT"]
	if !ok {
		return nil, errors.New("XCLIENT not offered (is mailgate in smtpd_authorized_xclient_hosts?)")
	}
	var keep []string
	for _, a := range strings.Fields(attrs) {
		name, _, _ := strings.Cut(a, "=")
		if hasWord(offered, name) {
			keep = append(keep, a)
		} else if name != "PORT" {
			return nil, fmt.Errorf("XCLIENT does not offer %s", name)
		}
	}
	if tp.R.Buffered() > 0 {
		return nil, errors.New("data after the EHLO reply")
	}
	if err := tp.PrintfLine("XCLIENT %s", strings.Join(keep, " ")); err != nil {
		return nil, fmt.Errorf("XCLIENT: %w", err)
	}
	return conn, nil
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
