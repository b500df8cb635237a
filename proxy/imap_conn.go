package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// The IMAP pre-authentication state machine: greeting, CAPABILITY, NOOP,
// LOGOUT, ID, STARTTLS, AUTHENTICATE and LOGIN, until a backend session is
// open; then the byte relay takes over (relay.go).

const (
	imapCapsBase  = "IMAP4rev1 SASL-IR ID LITERAL+"
	imapCapsPlain = imapCapsBase + " STARTTLS LOGINDISABLED"
	imapCapsTLS   = imapCapsBase + " AUTH=OAUTHBEARER AUTH=XOAUTH2"
	// imapCapsTLSPasswords is imapCapsTLS with password passthrough on.
	imapCapsTLSPasswords = imapCapsTLS + " AUTH=PLAIN AUTH=LOGIN"
	imapGreetingText     = "mailgate ready."
)

type imapConn struct {
	s        *Server
	id       string // connection id, in logs and passed to Dovecot as x-session-ext-id
	log      *slog.Logger
	nc       net.Conn // the client connection: plain, or TLS after a handshake
	raw      net.Conn // the accepted connection, under any TLS layer
	seat     *seat    // its place in the connection pools
	r        imapReader
	bw       *bufio.Writer
	isTLS    bool
	deadline time.Time // end of the pre-auth phase

	protoErrors  int
	authFailures int
	clientID     []string // sanitized ID fields from the client, key/value pairs
}

// errCloseConn ends the pre-auth loop after a final reply has been written.
var errCloseConn = errors.New("close connection")

func (s *Server) handleIMAP(ctx context.Context, raw net.Conn, ci connInfo) {
	start := time.Now()
	log := ci.log
	c := &imapConn{s: s, id: ci.id, log: log, nc: raw, raw: raw, seat: ci.seat, deadline: start.Add(s.limits.PreauthTimeout)}
	if ci.implicitTLS {
		tc, err := c.handshake(raw)
		if err != nil {
			log.Debug("tls handshake failed", "err", err)
			return
		}
		c.nc, c.isTLS = tc, true
	}
	c.setStream(c.nc)

	log.Debug("connection opened")
	// Shutdown interrupts a pre-auth conversation at once (readError says BYE).
	stopPre := context.AfterFunc(s.shutdownCtx, func() { raw.SetReadDeadline(time.Now()) })
	sess, err := c.preauth(ctx)
	stopPre()
	// A session that logged in while Shutdown was starting gets the drain
	// time like any other (the relay ends at once if it is already over).
	if err != nil || sess == nil {
		log.Info("connection closed before login", "duration", time.Since(start).Round(time.Millisecond), "auth_failures", c.authFailures)
		return
	}
	defer sess.backend.Close()
	log = sess.log
	log.Info("relay started", "preauth", time.Since(start).Round(time.Millisecond))

	// Keep only the read-ahead bytes, not the pre-auth buffers: an idle
	// session should hold as little memory as possible.
	pendingUp := takeBuffered(c.r.br)
	pendingDown := takeBuffered(sess.br)
	c.r, c.bw, sess.br = imapReader{}, nil, nil

	// The relay stops for a server shutdown (drain time over) or at the
	// end of the session's lifetime, whichever comes first.
	var (
		stop     relayStopper
		stopOnce sync.Once
		stopWhy  string // written before Stop
	)
	end := func(why string) { stopOnce.Do(func() { stopWhy = why; stop.Stop() }) }
	stopDrain := context.AfterFunc(s.drainCtx, func() { end(imapEndShutdown) })
	defer stopDrain()
	if !sess.password {
		stopWatch := s.watchSession(sess.id, sess.token, c.raw.RemoteAddr().String(), log,
			func(why sessionEnd) { end(why.String()) })
		defer stopWatch()
		sess.token = ""
	}
	st := relay(ctx, relayEnds{
		client: c.nc, backend: sess.backend,
		pendingUp: pendingUp, pendingDown: pendingDown,
		idle:  s.limits.IdleTimeout,
		stop:  &stop,
		count: s.countIMAP,
	})
	if st.reason == "stopped" {
		st.reason = stopWhy
		if st.lastDown == '\n' {
			// At a line boundary (not inside a literal): tell the client why.
			c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			c.nc.Write([]byte(imapByeFor(stopWhy)))
		}
	}
	log.Info("session ended", "duration", time.Since(start).Round(time.Millisecond),
		"bytes_up", st.up, "bytes_down", st.down, "end", st.reason)
}

// imapEndShutdown is the relay's end reason for a server shutdown; the
// others are sessionEnd's.
const imapEndShutdown = "shutdown"

// imapByeFor is the goodbye for a relay stopped for why.
func imapByeFor(why string) string {
	switch why {
	case endExpired.String():
		return "* BYE [EXPIRED] Access token expired, log in again.\r\n"
	case endRevoked.String():
		return "* BYE [EXPIRED] Access token no longer valid, log in again.\r\n"
	}
	return "* BYE [UNAVAILABLE] Server shutting down.\r\n"
}

func (s *Server) countIMAP(up bool, n int) {
	if up {
		s.obs.Relayed("imap", "up", n)
	} else {
		s.obs.Relayed("imap", "down", n)
	}
}

// takeBuffered returns a copy of the bytes br has read ahead (nil if none).
func takeBuffered(br *bufio.Reader) []byte {
	if br == nil || br.Buffered() == 0 {
		return nil
	}
	b, _ := br.Peek(br.Buffered())
	return append([]byte(nil), b...)
}

func (c *imapConn) setStream(nc net.Conn) {
	c.r = imapReader{
		br:         bufio.NewReaderSize(nc, 4096),
		maxLine:    c.s.limits.MaxLine,
		maxLiteral: c.s.limits.MaxLiteral,
		budget:     c.s.limits.MaxPreloginBytes,
		kept:       c.r.kept,
		cont:       func() error { return c.writeLine("+ Ready for literal data") },
	}
	c.bw = bufio.NewWriterSize(nc, 4096)
}

// handshake runs a server TLS handshake on nc under the handshake deadline.
func (c *imapConn) handshake(nc net.Conn) (*tls.Conn, error) {
	cfg := c.s.tls.imap
	tc := tls.Server(nc, cfg)
	dl := earliest(time.Now().Add(c.s.limits.HandshakeTimeout), c.deadline)
	nc.SetDeadline(dl)
	err := tc.HandshakeContext(context.Background())
	nc.SetDeadline(time.Time{})
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// tlsVersion is the TLS version of the client's connection, 0 before TLS.
func (c *imapConn) tlsVersion() uint16 {
	if tc, ok := c.nc.(*tls.Conn); ok {
		return tc.ConnectionState().Version
	}
	return 0
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (c *imapConn) caps() string {
	if c.isTLS {
		if c.s.opts.Passwords.IMAP {
			return imapCapsTLSPasswords
		}
		return imapCapsTLS
	}
	return imapCapsPlain
}

// writeLine writes one response line and flushes it under the write deadline.
func (c *imapConn) writeLine(format string, a ...any) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.s.limits.WriteTimeout))
	fmt.Fprintf(c.bw, format, a...)
	c.bw.WriteString("\r\n")
	return c.bw.Flush()
}

func (c *imapConn) writeRaw(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.s.limits.WriteTimeout))
	c.bw.Write(b)
	return c.bw.Flush()
}

// preauth runs the conversation until a backend session is open (sess != nil)
// or the connection is to be closed.
func (c *imapConn) preauth(ctx context.Context) (*imapSession, error) {
	if err := c.writeLine("* OK [CAPABILITY %s] %s", c.caps(), imapGreetingText); err != nil {
		return nil, err
	}
	for {
		if !c.armRead() || ctx.Err() != nil {
			c.writeLine("* BYE [UNAVAILABLE] Server shutting down.")
			return nil, errCloseConn
		}
		cmd, err := c.r.readCommand()
		if err != nil {
			if err := c.readError(err); err != nil {
				return nil, err
			}
			continue // answered with BAD; the stream is at a line boundary
		}
		sess, err := c.dispatch(ctx, cmd)
		if sess != nil || err != nil {
			if errors.Is(err, errCloseConn) {
				err = nil
			}
			return sess, err
		}
	}
}

// armRead sets the read deadline for the next command or SASL line and
// reports false if Shutdown has begun: Shutdown wakes a waiting read by
// setting the deadline to now, which arming could undo, so it is checked
// after the deadline is set.
func (c *imapConn) armRead() bool {
	c.nc.SetReadDeadline(earliest(time.Now().Add(c.s.limits.CommandTimeout), c.deadline))
	return c.s.shutdownCtx.Err() == nil
}

// readClientLine reads one SASL response line under the command deadline.
// Errors have been answered (readError) and are for the caller to return.
func (c *imapConn) readClientLine() ([]byte, error) {
	if !c.armRead() {
		c.writeLine("* BYE [UNAVAILABLE] Server shutting down.")
		return nil, errCloseConn
	}
	line, err := c.r.readLine()
	if err != nil {
		return nil, c.readError(err)
	}
	return line, nil
}

// readError answers a failed command read and tells whether to go on.
func (c *imapConn) readError(err error) error {
	var se *imapSyntaxError
	switch {
	case errors.As(err, &se):
		tag := se.tag
		if tag == "" {
			tag = "*"
		}
		if werr := c.writeLine("%s BAD %s", tag, capitalize(se.msg)); werr != nil {
			return werr
		}
		return c.protocolError()
	case errors.Is(err, errLineTooLong):
		c.writeLine("* BYE Command line too long.")
	case errors.Is(err, errLiteralTooLarge):
		c.writeLine("* BYE [TOOBIG] Literal too large.")
	case errors.Is(err, errCommandTooLarge):
		c.writeLine("* BYE [TOOBIG] Command too large.")
	case errors.Is(err, os.ErrDeadlineExceeded):
		if c.s.shutdownCtx.Err() != nil {
			c.writeLine("* BYE [UNAVAILABLE] Server shutting down.")
		} else if !time.Now().Before(c.deadline) {
			c.writeLine("* BYE Pre-authentication time limit reached.")
		} else {
			c.writeLine("* BYE Autologout; idle for too long.")
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
	default:
		c.log.Debug("read failed", "err", err)
	}
	return errCloseConn
}

// protocolError counts a protocol error and closes after too many.
func (c *imapConn) protocolError() error {
	c.protoErrors++
	if c.protoErrors >= c.s.limits.MaxErrors {
		c.writeLine("* BYE Too many invalid commands.")
		return errCloseConn
	}
	return nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (c *imapConn) dispatch(ctx context.Context, cmd *imapCommand) (*imapSession, error) {
	switch cmd.Name {
	case "CAPABILITY":
		if len(cmd.Args) != 0 {
			return nil, c.bad(cmd, "CAPABILITY takes no arguments")
		}
		c.writeLine("* CAPABILITY %s", c.caps())
		return nil, c.writeLine("%s OK CAPABILITY completed.", cmd.Tag)
	case "NOOP":
		return nil, c.writeLine("%s OK NOOP completed.", cmd.Tag)
	case "LOGOUT":
		c.writeLine("* BYE Logging out.")
		c.writeLine("%s OK LOGOUT completed.", cmd.Tag)
		return nil, errCloseConn
	case "ID":
		return nil, c.handleID(cmd)
	case "STARTTLS":
		return nil, c.handleStartTLS(cmd)
	case "AUTHENTICATE":
		return c.handleAuthenticate(ctx, cmd)
	case "LOGIN":
		return c.handleLogin(ctx, cmd)
	case "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB",
		"NAMESPACE", "STATUS", "APPEND", "IDLE", "ENABLE", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE",
		"SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID", "COMPRESS", "GETQUOTA", "GETQUOTAROOT":
		return nil, c.bad(cmd, "Authenticate first")
	default:
		return nil, c.bad(cmd, "Unknown command")
	}
}

// bad answers a tagged BAD and counts a protocol error.
func (c *imapConn) bad(cmd *imapCommand, text string) error {
	if err := c.writeLine("%s BAD %s", cmd.Tag, text); err != nil {
		return err
	}
	return c.protocolError()
}
