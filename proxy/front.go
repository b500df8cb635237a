package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"time"
)

// A Front is one protocol's front end, in its own package (proxy/pop3,
// proxy/sieve, ...): the pre-auth conversation of an admitted connection.
// What every front shares lives here: listeners and admission (pools,
// rates, PROXY in), TLS, the login sequence (Conn.Login), backend dialing
// and the protocol-blind relay (Conn.Relay).
type Front interface {
	// Proto names the protocol in logs, metrics and ALPN: "pop3", "sieve".
	Proto() string
	// ServeConn runs c's conversation; c is closed when it returns.
	ServeConn(ctx context.Context, c *Conn)
	// Busy is the line (with CRLF) a client on a plaintext port hears when
	// it is turned away for capacity; "" closes silently.
	Busy() string
}

// A ConnWrapper is a Front that wraps every connection it is given, as it
// is accepted (after the PROXY header), before the Server tracks it: what
// the Server closes (an evicted pre-login connection, whatever is left when
// Shutdown's drain time is over) is then the wrapper, whose Close can end
// what the front hung on the connection (a backend session). Conn.Raw is
// the wrapper. Optional.
type ConnWrapper interface {
	WrapConn(net.Conn) net.Conn
}

// Serve accepts clients for f on ln until ln fails or Shutdown is called.
// With implicitTLS the TLS handshake comes first (Conn.ImplicitTLS tells the
// front). Serve closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener, implicitTLS bool, f Front) error {
	proto := f.Proto()
	ln = s.wrapProxyProtocol(ln)
	if w, ok := f.(ConnWrapper); ok {
		ln = &wrapListener{Listener: ln, wrap: w.WrapConn}
	}
	return s.serve(ctx, ln, proto, implicitTLS, func(ctx context.Context, raw net.Conn, ci connInfo) {
		f.ServeConn(ctx, &Conn{
			ID: ci.id, Log: ci.log, Raw: raw, ImplicitTLS: implicitTLS,
			Start: ci.start, Deadline: ci.start.Add(s.limits.PreauthTimeout),
			s: s, proto: proto, seat: ci.seat,
		})
	}, f.Busy())
}

// Conn is an admitted client connection, handed to a Front.
type Conn struct {
	ID          string       // in every log line; Dovecot's session id for the backend
	Log         *slog.Logger // with conn, proto, listener and remote
	Raw         net.Conn     // the accepted connection; RemoteAddr is the client's (PROXY header aware)
	ImplicitTLS bool         // the listener is implicit TLS: handshake first
	Start       time.Time    // accepted
	Deadline    time.Time    // end of the pre-auth phase (Limits.PreauthTimeout after Start)

	s     *Server
	proto string
	seat  *seat
}

// Limits are the server's limits, defaults applied.
func (c *Conn) Limits() Limits { return c.s.limits }

// Passwords reports whether c's protocol takes passwords (LOGIN/PLAIN, after
// TLS): password passthrough or app passwords are on for it.
func (c *Conn) Passwords() bool { return c.passthrough() || c.appPasswords() }

// passthrough reports whether password passthrough is on for c's protocol.
func (c *Conn) passthrough() bool { return c.s.opts.Passwords.allowed(c.proto) }

// appPasswords reports whether app passwords are on for c's protocol.
func (c *Conn) appPasswords() bool { return c.s.opts.AppPasswords.allowed(c.proto) }

// Handshake runs the server TLS handshake on nc (the raw connection, or a
// view of it after STARTTLS) with c's protocol's TLS configuration, under
// the handshake timeout and the pre-auth deadline. The TLS connection
// writes through a batchConn, so that the relay can send a bulk chunk's
// records with one write.
func (c *Conn) Handshake(nc net.Conn) (*tls.Conn, error) {
	tc := tls.Server(&batchConn{Conn: nc}, c.s.tls.get(c.proto))
	nc.SetDeadline(earliest(time.Now().Add(c.s.limits.HandshakeTimeout), c.Deadline))
	err := tc.HandshakeContext(context.Background())
	nc.SetDeadline(time.Time{})
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// ArmRead sets nc's read deadline for the next command or SASL response
// (the command timeout, at most the pre-auth deadline) and reports false if
// Shutdown has begun: Shutdown wakes a waiting read by setting the deadline
// to now, which arming could undo, so it is checked afterwards.
func (c *Conn) ArmRead(nc net.Conn) bool {
	nc.SetReadDeadline(earliest(time.Now().Add(c.s.limits.CommandTimeout), c.Deadline))
	return c.s.shutdownCtx.Err() == nil
}

// ShuttingDown reports whether Shutdown has begun.
func (c *Conn) ShuttingDown() bool { return c.s.shutdownCtx.Err() != nil }

// OnShutdown calls f (once, in its own goroutine) when Shutdown begins; the
// returned stop cancels that, as context.AfterFunc's does. Fronts use it to
// wake a pre-auth read (Raw.SetReadDeadline(time.Now())).
func (c *Conn) OnShutdown(f func()) (stop func() bool) { return context.AfterFunc(c.s.shutdownCtx, f) }

// OnDrainEnd calls f (once, in its own goroutine) when Shutdown's drain
// time is over, as OnShutdown does when it begins: a front with a relay of
// its own (SMTP's, command by command) ends its sessions then. Relay does
// this itself. Whatever is still open shortly after is closed.
func (c *Conn) OnDrainEnd(f func()) (stop func() bool) { return context.AfterFunc(c.s.drainCtx, f) }

// wrapListener wraps every accepted connection (ConnWrapper).
type wrapListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l *wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// TLSVersion is the TLS version of nc (0 if it is not a *tls.Conn).
func TLSVersion(nc net.Conn) uint16 {
	if tc, ok := nc.(*tls.Conn); ok {
		return tc.ConnectionState().Version
	}
	return 0
}

// AwaitResponse waits at most wait (never past the pre-auth deadline) for
// the first byte of the client's next SASL response on br, consuming
// nothing; the Stepper's bounded wait for an RFC 7628 dummy reply. It
// returns ErrStepTimeout if the client has not begun to answer, nil
// otherwise: the front then reads the response whole as usual (ArmRead),
// so the stream stays in step, and a closed connection, Shutdown or the
// pre-auth deadline meets the front's usual answer there.
func (c *Conn) AwaitResponse(nc net.Conn, br *bufio.Reader, wait time.Duration) error {
	if wait <= 0 || br.Buffered() > 0 {
		return nil
	}
	nc.SetReadDeadline(earliest(time.Now().Add(wait), c.Deadline))
	if c.ShuttingDown() { // after the deadline is set, as in ArmRead
		return nil
	}
	_, err := br.Peek(1)
	if errors.Is(err, os.ErrDeadlineExceeded) && !c.ShuttingDown() && time.Now().Before(c.Deadline) {
		return ErrStepTimeout
	}
	return nil
}
