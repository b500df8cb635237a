// Package imap is mailgate's IMAP front (RFC 9051, RFC 3501): the
// pre-authentication conversation of an IMAP client (greeting, CAPABILITY,
// NOOP, LOGOUT, ID, STARTTLS, AUTHENTICATE and LOGIN), its reply mapping,
// and its backend login to Dovecot, as a proxy.BackendDialog. Everything
// else (listeners, limits, the login sequence, the relay) is package
// proxy's; see proxy/doc.go for the walk of a login.
//
// Files: front.go (New, ServeConn, the relay's goodbye), conn.go (the
// pre-auth loop), reader.go (the command reader), authenticate.go and
// login.go (the logins, through proxy.Conn.Login and LoginPassword),
// starttls.go, id.go, errors.go (the one reply mapper), backend.go (the
// backend dialog) and probe.go (the backend probe).
//
// References: RFC 9051 and RFC 3501, RFC 2971 (ID), RFC 7888 (LITERAL+),
// RFC 4959 (SASL-IR), RFC 5530 (response codes), RFC 7628 (OAUTHBEARER).
package imap

import (
	"context"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// Options configure the IMAP front.
type Options struct {
	// Backend is Dovecot's IMAP service. Its ClientIP is how the client's
	// address is passed on: "none" (or ""), "id" (an ID command with
	// x-originating-ip and friends, honoured from login_trusted_networks)
	// or "proxy" (a PROXY v2 header).
	Backend proxy.Backend
}

// Front is the IMAP front: a proxy.Front and the IMAP backend's
// proxy.Prober. It is safe for concurrent use by any number of listeners.
type Front struct {
	srv     *proxy.Server
	backend proxy.Backend // as the login sequence uses it (PrepareBackend)
}

var (
	_ proxy.Front  = (*Front)(nil)
	_ proxy.Prober = (*Front)(nil)
)

// New returns the IMAP front of srv and registers its backend probe with
// srv ("imap"). Serve it with srv.Serve.
func New(srv *proxy.Server, opts Options) *Front {
	f := &Front{srv: srv, backend: srv.PrepareBackend("imap", opts.Backend)}
	srv.RegisterProbe("imap", f)
	return f
}

// Proto is "imap".
func (f *Front) Proto() string { return "imap" }

// Busy is the line a client on the STARTTLS port hears when it is turned
// away for capacity.
func (f *Front) Busy() string {
	return "* BYE [UNAVAILABLE] Too many connections, try again later.\r\n"
}

// ServeConn runs pc's conversation until a backend session is open, then
// hands the client over to proxy.Conn.Relay.
func (f *Front) ServeConn(ctx context.Context, pc *proxy.Conn) {
	c := &conn{f: f, pc: pc, log: pc.Log, nc: pc.Raw, lim: pc.Limits()}
	if pc.ImplicitTLS {
		tc, err := pc.Handshake(pc.Raw)
		if err != nil {
			c.log.Debug("tls handshake failed", "err", err)
			return
		}
		c.nc, c.isTLS = tc, true
	}
	c.setStream(c.nc)

	c.log.Debug("connection opened")
	// Shutdown interrupts a pre-auth conversation at once (readError says BYE).
	stopPre := pc.OnShutdown(func() { pc.Raw.SetReadDeadline(time.Now()) })
	sess, err := c.preauth(ctx)
	stopPre()
	// A session that logged in while Shutdown was starting gets the drain
	// time like any other (the relay ends at once if it is already over).
	if err != nil || sess == nil {
		c.log.Info("connection closed before login", "duration", time.Since(pc.Start).Round(time.Millisecond),
			"auth_failures", c.authFailures)
		return
	}
	// Keep only the read-ahead bytes, not the pre-auth buffers: an idle
	// session should hold as little memory as possible.
	pendingUp := proxy.TakeBuffered(c.r.br)
	client := c.nc
	c.r, c.bw = reader{}, nil
	pc.Relay(ctx, client, pendingUp, sess, byeFor)
}

// byeFor is the goodbye for a relay stopped for why; Relay writes it at a
// line boundary of the backend's stream (not inside a literal).
func byeFor(why string) []byte {
	switch why {
	case proxy.EndExpired:
		return []byte("* BYE [EXPIRED] Access token expired, log in again.\r\n")
	case proxy.EndRevoked:
		return []byte("* BYE [EXPIRED] Access token no longer valid, log in again.\r\n")
	case proxy.EndAppPassword:
		return []byte("* BYE [AUTHENTICATIONFAILED] App password no longer valid.\r\n")
	}
	return []byte("* BYE [UNAVAILABLE] Server shutting down.\r\n")
}

// Probe checks the IMAP backend the way logins reach it (see probe.go).
func (f *Front) Probe(ctx context.Context, loginAs string) error { return f.probe(ctx, loginAs) }
