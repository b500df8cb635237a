package smtp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// clientConn is an accepted submission connection (under any TLS layer)
// with what the go-smtp session needs to know about it. The proxy.Server
// tracks it (Front.WrapConn).
//
// Close closes the client connection and the backend connection registered
// with setBackend; it is safe to call more than once and from any goroutine.
type clientConn struct {
	net.Conn

	// Set by ServeConn before go-smtp sees the connection.
	ctx context.Context
	log *slog.Logger // the connection's logger; with user and mech after login
	pc  *proxy.Conn

	// dataIdle, when > 0, makes every Read push the read deadline this far
	// ahead (nanoseconds): go-smtp sets one deadline for a whole DATA body.
	dataIdle atomic.Int64
	// closeAfterWrite closes the connection once the next reply is written
	// (after 421, or the last allowed authentication failure).
	closeAfterWrite atomic.Bool
	authed          atomic.Bool
	expired         atomic.Bool // the pre-auth time is up (before login)
	authFailures    atomic.Int32
	// busy: a mail transaction is open (from an accepted MAIL to the end of
	// its DATA, or RSET). Shutdown lets it finish during the drain time.
	busy atomic.Bool
	// stop is the shutdown level: stopLevelIdle, then stopLevelAll.
	stop atomic.Int32
	// ended is set (endExpired or endRevoked) when the session's token has
	// expired or been found invalid: the next command outside a mail
	// transaction is answered 421 4.7.0 and the connection closed (see Read).
	ended atomic.Int32
	// sawEOF: the client closed its side. A BDAT chunk cut short by EOF
	// looks complete to go-smtp, so Data checks this before the final dot.
	sawEOF atomic.Bool
	// top is what go-smtp reads and writes: this conn or a *tls.Conn over it.
	top atomic.Pointer[net.Conn]
	// exchange is the SASL exchange waiting for a response, if any: it is
	// told what go-smtp writes meanwhile (see saslBridge.wrote).
	exchange atomic.Pointer[saslBridge]

	mu      sync.Mutex
	backend net.Conn
	closed  bool
	done    chan struct{} // closed by Close
}

// Shutdown levels of clientConn.stop.
const (
	stopLevelIdle = 1 // end the connection at its next read outside a transaction
	stopLevelAll  = 2 // end it at its next read
)

// Values of clientConn.ended.
const (
	endExpired = 1 // proxy.EndExpired
	endRevoked = 2 // proxy.EndRevoked
)

// errShutdown is what Read returns once the connection is to end.
// It is not io.EOF: go-smtp would take a BDAT chunk cut off by EOF as whole.
var errShutdown = errors.New("smtp: server shutting down")

func (c *clientConn) Read(p []byte) (int, error) {
	if c.stopping() {
		return 0, c.goodbye()
	}
	if c.preauthOver() {
		return 0, c.timedOut()
	}
	if d := c.dataIdle.Load(); d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(time.Duration(d)))
		if c.stopping() { // shutdown may have set its deadline just before
			return 0, c.goodbye()
		}
	}
	n, err := c.Conn.Read(p)
	if err != nil && n == 0 && c.stopping() { // woken by shutdown's deadline
		return 0, c.goodbye()
	}
	if err != nil && n == 0 && c.preauthOver() { // woken by the pre-auth timer
		return 0, c.timedOut()
	}
	if n > 0 && c.ended.Load() != 0 && !c.busy.Load() {
		// The next command after the end of the session's lifetime: it is
		// not read, but answered with 421.
		return 0, c.endSession(c.ended.Load())
	}
	if err == io.EOF {
		c.sawEOF.Store(true)
	}
	return n, err
}

func (c *clientConn) stopping() bool {
	switch c.stop.Load() {
	case stopLevelAll:
		return true
	case stopLevelIdle:
		return !c.busy.Load()
	}
	return false
}

// goodbye writes 421 and closes the connection. It runs inside a Read by
// go-smtp's goroutine, the only one that writes to the client, so the reply
// cannot interleave with another.
func (c *clientConn) goodbye() error {
	c.writeTop("421 4.3.2 Service shutting down, try again later\r\n")
	c.Close()
	return errShutdown
}

// writeTop writes a line through what go-smtp talks to, within goodbyeTimeout.
func (c *clientConn) writeTop(line string) {
	if p := c.top.Load(); p != nil {
		top := *p
		top.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
		io.WriteString(top, line)
	}
}

// preauthExpired ends a connection that has not logged in in time: a Read
// waiting for the client is woken and answers 421 4.4.2 (timedOut); a
// connection busy elsewhere (a login under way) is closed after a grace.
func (c *clientConn) preauthExpired() {
	c.expired.Store(true)
	c.Conn.SetReadDeadline(time.Now())
	time.AfterFunc(goodbyeTimeout, func() {
		if !c.authed.Load() {
			c.Close()
		}
	})
}

func (c *clientConn) preauthOver() bool { return c.expired.Load() && !c.authed.Load() }

// errPreauthTimeout is what Read returns after the pre-auth time is up.
var errPreauthTimeout = errors.New("smtp: pre-authentication time limit reached")

// timedOut writes the 421 of the pre-auth timeout and closes; like goodbye,
// it runs inside a Read by the goroutine that writes replies.
func (c *clientConn) timedOut() error {
	c.writeTop("421 4.4.2 Pre-authentication time limit reached, closing connection\r\n")
	c.Close()
	return errPreauthTimeout
}

// errSessionEnded is what Read returns once the session's lifetime is over.
var errSessionEnded = errors.New("smtp: session lifetime over")

// endSession writes the 421 for the end of the session's lifetime and closes
// the connection. Like goodbye, it runs inside go-smtp's Read.
func (c *clientConn) endSession(why int32) error {
	msg, end := "421 4.7.0 Access token expired, log in again\r\n", proxy.EndExpired
	if why == endRevoked {
		msg, end = "421 4.7.0 Access token no longer valid, log in again\r\n", proxy.EndRevoked
	}
	c.writeTop(msg)
	c.log.Info("closing: session lifetime over", "end", end)
	c.Close()
	return errSessionEnded
}

// goodbyeTimeout bounds writing the shutdown 421.
const goodbyeTimeout = 5 * time.Second

// shutdown sets the shutdown level and wakes a Read that should end.
func (c *clientConn) shutdown(level int32) {
	for {
		cur := c.stop.Load()
		if cur >= level || c.stop.CompareAndSwap(cur, level) {
			break
		}
	}
	if c.stopping() {
		c.Conn.SetReadDeadline(time.Now())
	}
}

// setTop records what go-smtp talks through (after a TLS handshake, the
// *tls.Conn), for goodbye.
func (c *clientConn) setTop(nc net.Conn) { c.top.Store(&nc) }

func (c *clientConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.closeAfterWrite.Load() {
		c.Close()
	}
	return n, err
}

func (c *clientConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	be := c.backend
	c.backend = nil
	close(c.done)
	c.mu.Unlock()
	if be != nil {
		be.Close()
	}
	return c.Conn.Close()
}

// setBackend registers the backend connection to be closed with the client
// connection. It returns false, and the caller closes be, if the client
// connection is already closed.
func (c *clientConn) setBackend(be net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.backend = be
	return true
}

// clearBackend forgets be after its owner has closed it.
func (c *clientConn) clearBackend(be net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.backend == be {
		c.backend = nil
	}
}

// clientConnOf finds the clientConn under what go-smtp holds.
func clientConnOf(nc net.Conn) *clientConn {
	if v, ok := nc.(*tlsView); ok {
		return v.cc
	}
	return nil
}

// tlsVersion is the TLS version of the client's connection, 0 before TLS.
func (c *clientConn) tlsVersion() uint16 {
	if p := c.top.Load(); p != nil {
		if v, ok := (*p).(*tlsView); ok {
			return v.ConnectionState().Version
		}
	}
	return 0
}
