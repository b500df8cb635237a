package proxy

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
)

// The backend side of submission: a go-smtp client logged in to Postfix on
// behalf of the verified user, either as the Dovecot master user (AUTH PLAIN
// authzid=user, authcid=master; stock DMS) or with XCLIENT LOGIN=user (Postfix
// with smtpd_authorized_xclient_hosts). go-smtp's client cannot send XCLIENT,
// so mailgate speaks the start of the session itself, writes XCLIENT without
// reading its reply, and lets smtp.NewClient read that reply as its greeting
// (Postfix answers XCLIENT with a new 220). XCLIENT is never sent after AUTH:
// it resets the session and cancels the login.

// Values of Backend.Login and Backend.ClientIP for SMTP.
const (
	smtpLoginMaster     = "master"
	smtpLoginXCLIENT    = "xclient"
	smtpClientIPXCLIENT = "xclient" // XCLIENT ADDR= and PORT=
	smtpClientIPProxy   = "proxy"   // a PROXY v2 header (Postfix smtpd_upstream_proxy_protocol = haproxy)
)

// Deadlines towards the backend once logged in (RFC 5321 section 4.5.3.2).
const (
	smtpBackendReplyTimeout      = 5 * time.Minute  // MAIL, RCPT, DATA's 354
	smtpBackendSubmissionTimeout = 10 * time.Minute // the reply after the final dot
	smtpBackendQuitTimeout       = 5 * time.Second
)

// smtpCaps is what mailgate needs from the backend's EHLO reply.
type smtpCaps struct {
	size     int64 // SIZE; 0 if absent or unlimited
	utf8     bool  // SMTPUTF8
	dsn      bool  // DSN
	eightBit bool  // 8BITMIME
}

func capsOf(c *smtp.Client) smtpCaps {
	var caps smtpCaps
	if ok, v := c.Extension("SIZE"); ok {
		caps.size, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		caps.size = max(caps.size, 0)
	}
	caps.utf8, _ = c.Extension("SMTPUTF8")
	caps.dsn, _ = c.Extension("DSN")
	caps.eightBit, _ = c.Extension("8BITMIME")
	return caps
}

// smtpBackend is a session on the backend, logged in as one user.
type smtpBackend struct {
	c    *smtp.Client
	raw  net.Conn // the TCP connection under any TLS layer: deadlines and abort
	caps smtpCaps
}

// quit ends the session politely, within smtpBackendQuitTimeout.
func (b *smtpBackend) quit() {
	b.c.CommandTimeout = smtpBackendQuitTimeout
	b.raw.SetDeadline(time.Now().Add(smtpBackendQuitTimeout))
	b.c.Quit()
	b.raw.Close()
}

// abort closes the connection at once. In the middle of DATA the backend
// never sees the final dot and discards what it got.
func (b *smtpBackend) abort() { b.raw.Close() }

// smtpLogin is who a backend session is for: a verified user, logged in
// as the master user or with XCLIENT LOGIN, or, with a password (password
// passthrough), a user logging in with their own credentials.
type smtpLogin struct {
	user     string
	password string // the user's own password; "" for a verified user
}

// openSMTPBackend opens a backend session for login.user: dial, STARTTLS when
// configured, XCLIENT when configured, EHLO, then AUTH PLAIN as the master
// user unless XCLIENT LOGIN did the login. With login.password it is AUTH
// PLAIN with the user's own credentials instead, and XCLIENT never carries
// LOGIN (only the client's address, when configured). The connection is
// registered with cc so that closing the client closes it too. Errors wrap
// errBackendAuthz (the backend refused the user), errBackendRefused (it
// refused the user's own password) or errBackendUnavailable.
func (s *Server) openSMTPBackend(ctx context.Context, cc *smtpClientConn, hostname string, login smtpLogin, log *slog.Logger) (_ *smtpBackend, err error) {
	b := s.opts.SMTPBackend
	user, own := login.user, login.password != ""
	moved, err := cc.seat.login()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && moved {
			cc.seat.loginFailed()
		}
	}()
	start := time.Now()
	defer func() {
		berr := err
		if errors.Is(err, errBackendRefused) {
			berr = nil // the backend works; the user's password was wrong
		}
		s.obs.BackendLogin("smtp", time.Since(start), berr)
	}()
	ctx, cancel := context.WithTimeout(ctx, s.backendLoginTimeout(own))
	defer cancel()

	var attrs []string
	if b.Login == smtpLoginXCLIENT && !own {
		attrs = append(attrs, "LOGIN="+xtext(user))
	}
	if b.ClientIP == smtpClientIPXCLIENT {
		if ip, port, ok := SplitAddr(cc.RemoteAddr()); ok {
			if strings.Contains(ip, ":") {
				ip = "IPV6:" + ip
			}
			attrs = append(attrs, "ADDR="+ip, "PORT="+port)
		}
	}
	var preface []byte
	if b.ClientIP == smtpClientIPProxy {
		if preface, err = proxyHeader(cc.RemoteAddr(), cc.LocalAddr(), tlvVersion(b, cc.tlsVersion())); err != nil {
			return nil, fmt.Errorf("%w: proxy header: %v", errBackendUnavailable, err)
		}
	}
	c, raw, err := s.dialSMTPBackend(ctx, hostname, preface, attrs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			raw.Close()
		}
	}()
	if !cc.setBackend(raw) {
		return nil, errClientGone
	}
	defer func() {
		if err != nil {
			cc.clearBackend(raw)
		}
	}()

	if b.Login != smtpLoginXCLIENT || own {
		stop := context.AfterFunc(ctx, func() { raw.Close() })
		cl := sasl.NewPlainClient(user, s.opts.Master.User, s.opts.Master.Password)
		if own {
			cl = sasl.NewPlainClient("", user, login.password)
			c.CommandTimeout = s.backendLoginTimeout(true)
		}
		err := c.Auth(cl)
		if !stop() {
			return nil, fmt.Errorf("%w: AUTH: %v", errBackendUnavailable, context.Cause(ctx))
		}
		if err != nil {
			var se *smtp.SMTPError
			if own && errors.As(err, &se) && se.Code == 535 {
				return nil, fmt.Errorf("%w: AUTH: %v", errBackendRefused, err)
			}
			if errors.As(err, &se) && se.Code == 535 {
				// Postfix says the same for an unknown user and a wrong master
				// password; the second is a configuration error worth a warning.
				log.Warn("backend refused the master login (unknown user, or wrong master credentials?)",
					"code", se.Code, "text", se.Message)
				return nil, fmt.Errorf("%w: AUTH: %v", errBackendAuthz, err)
			}
			return nil, fmt.Errorf("%w: AUTH: %v", errBackendUnavailable, err)
		}
	}
	c.CommandTimeout = smtpBackendReplyTimeout
	c.SubmissionTimeout = smtpBackendSubmissionTimeout
	return &smtpBackend{c: c, raw: raw, caps: capsOf(c)}, nil
}

// probeSMTPBackend reads the backend's capabilities (after STARTTLS when
// configured) and says QUIT.
func (s *Server) probeSMTPBackend(ctx context.Context, hostname string) (smtpCaps, error) {
	ctx, cancel := context.WithTimeout(ctx, s.limits.DialTimeout)
	defer cancel()
	preface, err := smtpProbePreface(s.opts.SMTPBackend)
	if err != nil {
		return smtpCaps{}, err
	}
	c, raw, err := s.dialSMTPBackend(ctx, hostname, preface, nil)
	if err != nil {
		return smtpCaps{}, err
	}
	defer raw.Close()
	caps := capsOf(c)
	c.CommandTimeout = smtpBackendQuitTimeout
	c.Quit()
	return caps, nil
}

// smtpProbePreface is the PROXY header of a connection without a client:
// a PROXY v2 LOCAL header (the backend uses the real connection's
// addresses), as load balancers send for health checks.
func smtpProbePreface(b Backend) ([]byte, error) {
	if b.ClientIP != smtpClientIPProxy {
		return nil, nil
	}
	h, err := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}).Format()
	if err != nil {
		return nil, fmt.Errorf("%w: proxy header: %v", errBackendUnavailable, err)
	}
	return h, nil
}

// dialSMTPBackend connects to the backend (sending preface first, a PROXY
// header, if not empty) and gets as far as a successful EHLO: after STARTTLS
// when configured, and after XCLIENT with attrs when attrs is not empty. The
// returned net.Conn is the TCP connection, closed by the caller. Errors wrap
// errBackendUnavailable.
func (s *Server) dialSMTPBackend(ctx context.Context, hostname string, preface []byte, attrs []string) (_ *smtp.Client, _ net.Conn, err error) {
	b := s.opts.SMTPBackend
	conn, err := dialBackend(ctx, b, preface)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: dial %s: %v", errBackendUnavailable, b.Address, err)
	}
	tcp := conn
	if tc, ok := conn.(*tls.Conn); ok {
		tcp = tc.NetConn()
	}
	defer func() {
		if err != nil {
			tcp.Close()
		}
	}()
	// Closing the connection is what reliably ends a blocked read: the
	// go-smtp client sets its own deadlines for each command.
	stop := context.AfterFunc(ctx, func() { tcp.Close() })
	defer func() {
		if !stop() && err == nil {
			err = fmt.Errorf("%w: %v", errBackendUnavailable, context.Cause(ctx))
		}
	}()
	if dl, ok := ctx.Deadline(); ok {
		tcp.SetDeadline(dl)
		defer tcp.SetDeadline(time.Time{})
	}

	var c *smtp.Client
	switch {
	case len(attrs) > 0:
		conn, err = smtpSendXCLIENT(ctx, conn, b, hostname, strings.Join(attrs, " "))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", errBackendUnavailable, err)
		}
		c = smtp.NewClient(conn)
	case b.TLS == TLSStartTLS:
		c, err = smtp.NewClientStartTLS(conn, backendTLSConfig(b))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: starttls: %v", errBackendUnavailable, err)
		}
	default:
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = s.limits.DialTimeout
	if err := c.Hello(hostname); err != nil {
		what := "EHLO"
		if len(attrs) > 0 {
			what = "XCLIENT" // Hello reads the reply to XCLIENT as its greeting
		}
		return nil, nil, fmt.Errorf("%w: %s: %v", errBackendUnavailable, what, err)
	}
	return c, tcp, nil
}

// smtpSendXCLIENT runs greeting, EHLO, optional STARTTLS and EHLO again on
// conn, then writes "XCLIENT attrs" without reading the reply: the caller
// hands the connection (TLS if upgraded) to smtp.NewClient, whose greeting
// read consumes it.
func smtpSendXCLIENT(ctx context.Context, conn net.Conn, b Backend, hostname, attrs string) (net.Conn, error) {
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	ext, err := smtpEHLO(tp, hostname)
	if err != nil {
		return nil, err
	}
	if b.TLS == TLSStartTLS {
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
		tc, err := backendHandshake(ctx, conn, b)
		if err != nil {
			return nil, fmt.Errorf("starttls: %w", err)
		}
		conn, tp = tc, textproto.NewConn(tc)
		if ext, err = smtpEHLO(tp, hostname); err != nil {
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

// smtpEHLO sends EHLO and returns the extensions, keyword upper-cased.
func smtpEHLO(tp *textproto.Conn, hostname string) (map[string]string, error) {
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
