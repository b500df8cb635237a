package smtp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// One client connection, from the greeting to QUIT: the pre-login commands
// (commands.go, auth.go), then the session's (session.go, data.go). The
// conversation runs in ServeConn's goroutine; what other goroutines do to
// it (Shutdown, the end of the token's lifetime) goes through atomics and
// the read deadline.

// errClose ends the conversation after a final reply has been written (or
// when nobody is listening any more).
var errClose = errors.New("smtp: close connection")

// conn is one client's conversation. Its zero value is not usable.
type conn struct {
	f     *Front
	c     *proxy.Conn
	nc    net.Conn // the client connection: c.Raw, or TLS over it
	isTLS bool
	r     *reader
	bw    *bufio.Writer

	helo         bool // EHLO or HELO since the connection (or TLS) began
	protoErrors  int
	authFailures int

	// After login (session.go).
	sess *session

	// busy: a mail transaction is open (from an accepted MAIL to the end of
	// its message, or RSET). Shutdown lets it finish during the drain time.
	busy atomic.Bool
	// stop is the shutdown level: stopLevelIdle, then stopLevelAll.
	stop atomic.Int32
	// ended is set (endExpired or endRevoked) when the session's token has
	// expired or been found invalid: the next command outside a mail
	// transaction is answered 421 4.7.0 and the connection closed.
	ended atomic.Int32
}

// Shutdown levels of conn.stop.
const (
	stopLevelIdle = 1 // end the connection at its next command outside a transaction
	stopLevelAll  = 2 // end it at its next read
)

// Values of conn.ended.
const (
	endExpired     = 1 // proxy.EndExpired
	endRevoked     = 2 // proxy.EndRevoked
	endAppPassword = 3 // proxy.EndAppPassword
)

// sessionIdleTimeout bounds the wait for a command once logged in (RFC
// 5321 section 4.5.3.2.7: a server waits 5 minutes).
const sessionIdleTimeout = 5 * time.Minute

func newConn(f *Front, c *proxy.Conn, nc net.Conn) *conn {
	sc := &conn{f: f, c: c}
	sc.setStream(nc, c.ImplicitTLS)
	return sc
}

// setStream starts reading and writing nc with fresh buffers: whatever the
// old reader held is dropped (after STARTTLS, plaintext pipelined behind it).
func (sc *conn) setStream(nc net.Conn, isTLS bool) {
	l := sc.c.Limits()
	sc.nc, sc.isTLS = nc, isTLS
	sc.r = newReader(nc, l.MaxLine, l.MaxPreloginBytes)
	sc.bw = bufio.NewWriterSize(nc, 1024)
}

// reply queues lines for the client; they go out at the next flush, which
// happens before any read that would wait for the client (so a pipelined
// group of commands gets its replies in one write, RFC 2920).
func (sc *conn) reply(s ...string) {
	for _, x := range s {
		sc.bw.WriteString(x)
	}
}

// replyBytes queues b (a backend's reply, verbatim).
func (sc *conn) replyBytes(b []byte) { sc.bw.Write(b) }

// flush sends what is queued, under the write deadline.
func (sc *conn) flush() error {
	if sc.bw.Buffered() == 0 {
		return nil
	}
	sc.nc.SetWriteDeadline(time.Now().Add(sc.c.Limits().WriteTimeout))
	return sc.bw.Flush()
}

// write queues s and flushes.
func (sc *conn) write(s ...string) error {
	sc.reply(s...)
	return sc.flush()
}

// serve runs the conversation to its end.
func (sc *conn) serve(ctx context.Context) {
	sc.reply(sc.f.greeting)
	for {
		if err := sc.next(ctx); err != nil {
			sc.flush()
			return
		}
	}
}

// next reads and runs one command.
func (sc *conn) next(ctx context.Context) error {
	if !sc.r.Buffered() {
		if err := sc.flush(); err != nil {
			return err
		}
	}
	if !sc.armRead() {
		return sc.goodbye()
	}
	cmd, err := sc.r.ReadCommand()
	if err != nil {
		return sc.readError(err)
	}
	if sc.sess == nil {
		return sc.preauth(ctx, cmd)
	}
	// The command was read but is not run when the session is to end:
	// Shutdown's drain is over, or, outside a mail transaction, Shutdown
	// has begun or the token's lifetime is over.
	if sc.stop.Load() == stopLevelAll {
		return sc.goodbye()
	}
	if !sc.busy.Load() {
		if why := sc.ended.Load(); why != 0 {
			return sc.endSession(why)
		}
		if sc.stopping() {
			return sc.goodbye()
		}
	}
	return sc.sess.dispatch(ctx, cmd)
}

// armRead sets the read deadline for the next command: the command
// timeout and the pre-auth deadline before login, sessionIdleTimeout
// after. It reports false if the connection is to end now (Shutdown).
func (sc *conn) armRead() bool {
	if sc.sess == nil {
		return sc.c.ArmRead(sc.nc)
	}
	sc.nc.SetReadDeadline(time.Now().Add(min(sessionIdleTimeout, sc.c.Limits().IdleTimeout)))
	return !sc.stopping() // Shutdown's deadline may have been undone: check after arming
}

// readError answers a failed read (every one ends the conversation) and
// returns errClose.
func (sc *conn) readError(err error) error {
	switch {
	case errors.Is(err, errLineTooLong):
		sc.reply(replyLineTooLong)
	case errors.Is(err, errCommandTooLarge):
		sc.reply(replyTooLarge)
	case errors.Is(err, os.ErrDeadlineExceeded):
		switch {
		case sc.stopping() || sc.c.ShuttingDown() && sc.sess == nil:
			sc.reply(replyShutdown)
		case sc.sess == nil && !time.Now().Before(sc.c.Deadline):
			sc.c.Log.Info("pre-auth timeout: closing")
			sc.reply(replyPreauthOver)
		default:
			sc.reply(replyTimeout)
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
	default:
		sc.c.Log.Debug("read failed", "err", err)
	}
	return errClose
}

// fail answers a refused command with line and counts a protocol error.
func (sc *conn) fail(line string) error {
	sc.reply(line)
	return sc.protocolError()
}

// sessionErrors is the number of protocol errors that closes a logged-in
// session (Postfix's smtpd_hard_error_limit): a user's client is given
// more room than an anonymous one (Limits.MaxErrors).
const sessionErrors = 20

// protocolError counts a protocol error; too many close the connection.
func (sc *conn) protocolError() error {
	sc.protoErrors++
	limit := sc.c.Limits().MaxErrors
	if sc.sess != nil {
		limit = max(limit, sessionErrors)
	}
	if sc.protoErrors >= limit {
		sc.c.Log.Debug("too many protocol errors", "errors", sc.protoErrors)
		sc.reply(replyTooManyErrors)
		return errClose
	}
	return nil
}

// authFailed counts a failed authentication; too many close the connection.
func (sc *conn) authFailed() error {
	sc.authFailures++
	if sc.authFailures >= sc.c.Limits().MaxAuthFailures {
		sc.c.Log.Info("too many authentication failures: closing")
		sc.reply(replyTooManyAuth)
		return errClose
	}
	return nil
}

// stopping reports whether Shutdown wants the connection to end now.
func (sc *conn) stopping() bool {
	switch sc.stop.Load() {
	case stopLevelAll:
		return true
	case stopLevelIdle:
		return !sc.busy.Load()
	}
	return false
}

// shutdown sets the shutdown level and wakes a read that should end. It
// runs in its own goroutine (proxy.Conn.OnShutdown, OnDrainEnd).
func (sc *conn) shutdown(level int32) {
	for {
		cur := sc.stop.Load()
		if cur >= level || sc.stop.CompareAndSwap(cur, level) {
			break
		}
	}
	if sc.stopping() {
		sc.c.Raw.SetReadDeadline(time.Now())
	}
}

// goodbye answers 421 for Shutdown and ends the conversation.
func (sc *conn) goodbye() error {
	sc.reply(replyShutdown)
	return errClose
}

// endSession answers 421 for the end of the session's lifetime and ends
// the conversation.
func (sc *conn) endSession(why int32) error {
	line, end := replyExpired, proxy.EndExpired
	switch why {
	case endRevoked:
		line, end = replyRevoked, proxy.EndRevoked
	case endAppPassword:
		line, end = replyAppPassword, proxy.EndAppPassword
	}
	sc.reply(line)
	sc.sess.log.Info("closing: session lifetime over", "end", end)
	return errClose
}

// close ends the session, if one was open (its backend is sent QUIT), and
// logs the end of a connection that never logged in.
func (sc *conn) close() {
	if sc.sess != nil {
		sc.sess.end()
		return
	}
	sc.c.Log.Info("connection closed before login", "duration", time.Since(sc.c.Start).Round(time.Millisecond),
		"auth_failures", sc.authFailures)
}

// clientConn is an accepted connection (Front.WrapConn) that closes the
// backend connection registered with it when it is closed: whatever the
// proxy.Server closes (eviction, the end of Shutdown) ends the backend
// session too, even while the conversation waits for the backend.
type clientConn struct {
	net.Conn
	mu      sync.Mutex
	backend net.Conn
	closed  bool
}

func (c *clientConn) Close() error {
	c.mu.Lock()
	be := c.backend
	c.backend, c.closed = nil, true
	c.mu.Unlock()
	if be != nil {
		be.Close()
	}
	return c.Conn.Close()
}

// WrapConn implements proxy.ConnWrapper.
func (f *Front) WrapConn(nc net.Conn) net.Conn { return &clientConn{Conn: nc} }

// setBackend registers the backend connection to be closed with the client
// connection. It returns false, and the caller closes be, if the client
// connection is already closed.
func (sc *conn) setBackend(be net.Conn) bool {
	cc, ok := sc.c.Raw.(*clientConn)
	if !ok {
		return true
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		return false
	}
	cc.backend = be
	return true
}

// clearBackend forgets be after its owner has closed it.
func (sc *conn) clearBackend(be net.Conn) {
	cc, ok := sc.c.Raw.(*clientConn)
	if !ok {
		return
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.backend == be {
		cc.backend = nil
	}
}
