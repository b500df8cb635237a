package sieve

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// The pre-authentication state machine: capability greeting, CAPABILITY,
// NOOP, LOGOUT, STARTTLS and AUTHENTICATE, until a backend session is open;
// then the core's relay takes over.

// conn is one client's pre-auth conversation.
type conn struct {
	f     *Front
	pc    *proxy.Conn
	log   *slog.Logger
	nc    net.Conn // the client connection: plain, or TLS after a handshake
	isTLS bool
	r     reader
	bw    *bufio.Writer

	protoErrors  int
	authFailures int
}

func newConn(f *Front, pc *proxy.Conn) *conn {
	return &conn{f: f, pc: pc, log: pc.Log, nc: pc.Raw}
}

// setStream reads and writes nc from now on, with fresh buffers.
func (c *conn) setStream(nc net.Conn) {
	l := c.pc.Limits()
	c.r = reader{br: bufio.NewReaderSize(nc, 4096), maxLine: l.MaxLine, maxSASL: l.MaxLine, budget: l.MaxPreloginBytes}
	c.bw = bufio.NewWriterSize(nc, 4096)
}

// write writes s (whole lines, with CRLF) under the write deadline.
func (c *conn) write(s string) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.pc.Limits().WriteTimeout))
	c.bw.WriteString(s)
	return c.bw.Flush()
}

// writeCaps writes the capability response, ending in OK with text.
func (c *conn) writeCaps(ok string) error {
	return c.write(c.f.capabilityLines(c.isTLS, c.pc.Passwords()) + ok)
}

// preauth runs the conversation until a backend session is open (sess !=
// nil) or the connection is to be closed.
func (c *conn) preauth(ctx context.Context) (*proxy.Session, error) {
	if err := c.writeCaps(replyGreeting); err != nil {
		return nil, err
	}
	for {
		if !c.pc.ArmRead(c.nc) || ctx.Err() != nil {
			c.write(replyShutdown)
			return nil, errClose
		}
		cmd, err := c.r.readCommand()
		if err != nil {
			if err := c.readError(err); err != nil {
				return nil, err
			}
			continue // answered with NO; the stream is at a command boundary
		}
		sess, err := c.dispatch(ctx, cmd)
		if sess != nil || err != nil {
			return sess, err
		}
	}
}

// readError answers a failed read and tells whether to go on (nil).
func (c *conn) readError(err error) error {
	var se *syntaxError
	switch {
	case errors.As(err, &se):
		return c.refuse(quote(se.msg))
	case errors.Is(err, errLineTooLong):
		c.write(`BYE "Line too long."` + "\r\n")
	case errors.Is(err, errLiteralTooLarge):
		c.write(`BYE "Literal too large."` + "\r\n")
	case errors.Is(err, errCommandTooLarge):
		c.write(`BYE "Command too large."` + "\r\n")
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.write(c.timeoutBye())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
	default:
		c.log.Debug("read failed", "err", err)
	}
	return errClose
}

// timeoutBye is the goodbye for a read that timed out.
func (c *conn) timeoutBye() string {
	switch {
	case c.pc.ShuttingDown():
		return replyShutdown
	case !time.Now().Before(c.pc.Deadline):
		return `BYE "Pre-authentication time limit reached."` + "\r\n"
	}
	return `BYE "Disconnected for inactivity."` + "\r\n"
}

// refuse answers NO with text (a quoted string) and counts a protocol error.
func (c *conn) refuse(text string) error {
	if err := c.write("NO " + text + "\r\n"); err != nil {
		return err
	}
	return c.count(countError)
}

// count applies the connection's limits to a protocol error or refused
// login: too many, and the connection is closed.
func (c *conn) count(what int) error {
	switch what {
	case countError:
		if c.protoErrors++; c.protoErrors >= c.pc.Limits().MaxErrors {
			c.write(replyTooManyErrors)
			return errClose
		}
	case countAuthFailure:
		if c.authFailures++; c.authFailures >= c.pc.Limits().MaxAuthFailures {
			c.write(replyTooManyAuth)
			return errClose
		}
	}
	return nil
}

// dispatch runs one command. Commands of the authenticated state are
// refused (they would need a login), unknown ones too; both count as
// protocol errors.
func (c *conn) dispatch(ctx context.Context, cmd *command) (*proxy.Session, error) {
	switch cmd.name {
	case "CAPABILITY":
		if len(cmd.args) != 0 {
			return nil, c.refuse(`"CAPABILITY takes no arguments."`)
		}
		return nil, c.writeCaps(`OK "Capability completed."` + "\r\n")
	case "NOOP":
		return nil, c.handleNoop(cmd)
	case "LOGOUT":
		c.write(`OK "Logout completed."` + "\r\n")
		return nil, errClose
	case "STARTTLS":
		return nil, c.handleStartTLS(cmd)
	case "AUTHENTICATE":
		return c.handleAuthenticate(ctx, cmd)
	case "HAVESPACE", "PUTSCRIPT", "LISTSCRIPTS", "SETACTIVE", "GETSCRIPT", "DELETESCRIPT", "RENAMESCRIPT",
		"CHECKSCRIPT", "UNAUTHENTICATE":
		return nil, c.refuse(`"Authenticate first."`)
	}
	return nil, c.refuse(`"Unknown command."`)
}

// handleNoop answers NOOP, echoing its optional tag (RFC 5804 §2.13).
func (c *conn) handleNoop(cmd *command) error {
	switch {
	case len(cmd.args) == 0:
		return c.write(`OK "NOOP completed."` + "\r\n")
	case len(cmd.args) == 1 && cmd.args[0].kind == argString:
		return c.write(`OK (TAG ` + quote(cmd.args[0].value) + `) "Done"` + "\r\n")
	}
	return c.refuse(`"NOOP takes one optional string."`)
}

// handleStartTLS upgrades the connection (RFC 5804 §2.2). Bytes the client
// sent behind STARTTLS arrived in plaintext and could have been injected
// by a man in the middle: they are discarded, never run after the
// handshake. The capabilities are sent again over TLS.
func (c *conn) handleStartTLS(cmd *command) error {
	switch {
	case len(cmd.args) != 0:
		return c.refuse(`"STARTTLS takes no arguments."`)
	case c.isTLS:
		return c.refuse(`"TLS is already active."`)
	}
	if n := c.r.br.Buffered(); n > 0 {
		c.log.Warn("plaintext pipelined after STARTTLS discarded (possible command injection)", "bytes", n)
		c.r.br.Discard(n)
	}
	if err := c.write(`OK "Begin TLS negotiation now."` + "\r\n"); err != nil {
		return err
	}
	tc, err := c.pc.Handshake(c.pc.Raw)
	if err != nil {
		c.log.Debug("starttls handshake failed", "err", err)
		return errClose
	}
	c.nc, c.isTLS = tc, true
	c.setStream(tc)
	return c.writeCaps(`OK "TLS negotiation successful."` + "\r\n")
}
