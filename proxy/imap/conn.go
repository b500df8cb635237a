package imap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// The IMAP pre-authentication state machine: greeting, CAPABILITY, NOOP,
// LOGOUT, ID, STARTTLS, AUTHENTICATE and LOGIN, until a backend session is
// open; then proxy.Conn.Relay takes over.

const (
	capsBase  = "IMAP4rev1 SASL-IR ID LITERAL+"
	capsPlain = capsBase + " STARTTLS LOGINDISABLED"
	capsTLS   = capsBase + " AUTH=OAUTHBEARER AUTH=XOAUTH2"
	// capsTLSPasswords is capsTLS with password passthrough on.
	capsTLSPasswords = capsTLS + " AUTH=PLAIN AUTH=LOGIN"
	greetingText     = "mailgate ready."
)

// conn is one client's pre-auth conversation.
type conn struct {
	f     *Front
	pc    *proxy.Conn
	log   *slog.Logger
	lim   proxy.Limits
	nc    net.Conn // the client connection: plain, or TLS after a handshake
	r     reader
	bw    *bufio.Writer
	isTLS bool

	protoErrors  int
	authFailures int
	clientID     []string // sanitized ID fields from the client, key/value pairs
}

// errCloseConn ends the pre-auth loop after a final reply has been written.
var errCloseConn = errors.New("close connection")

func (c *conn) setStream(nc net.Conn) {
	c.r = reader{
		br:         bufio.NewReaderSize(nc, 4096),
		maxLine:    c.lim.MaxLine,
		maxLiteral: c.lim.MaxLiteral,
		budget:     c.lim.MaxPreloginBytes,
		kept:       c.r.kept,
		cont:       func() error { return c.writeLine("+ Ready for literal data") },
	}
	c.bw = bufio.NewWriterSize(nc, 4096)
}

func (c *conn) caps() string {
	if c.isTLS {
		if c.pc.Passwords() {
			return capsTLSPasswords
		}
		return capsTLS
	}
	return capsPlain
}

// writeLine writes one response line and flushes it under the write deadline.
func (c *conn) writeLine(format string, a ...any) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.lim.WriteTimeout))
	fmt.Fprintf(c.bw, format, a...)
	c.bw.WriteString("\r\n")
	return c.bw.Flush()
}

func (c *conn) writeRaw(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.lim.WriteTimeout))
	c.bw.Write(b)
	return c.bw.Flush()
}

// preauth runs the conversation until a backend session is open (sess != nil)
// or the connection is to be closed.
func (c *conn) preauth(ctx context.Context) (*proxy.Session, error) {
	if err := c.writeLine("* OK [CAPABILITY %s] %s", c.caps(), greetingText); err != nil {
		return nil, err
	}
	for {
		if !c.pc.ArmRead(c.nc) || ctx.Err() != nil {
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

// readResponse reads one SASL response line under the command deadline.
// With wait > 0, a client that has not begun to answer within wait gets
// proxy.ErrStepTimeout, with nothing written. Other errors have been
// answered (readError) and are for the caller to return.
func (c *conn) readResponse(wait time.Duration) ([]byte, error) {
	if err := c.pc.AwaitResponse(c.nc, c.r.br, wait); err != nil {
		return nil, err
	}
	if !c.pc.ArmRead(c.nc) {
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
func (c *conn) readError(err error) error {
	var se *syntaxError
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
	case errors.Is(err, proxy.ErrLineTooLong):
		c.writeLine("* BYE Command line too long.")
	case errors.Is(err, errLiteralTooLarge):
		c.writeLine("* BYE [TOOBIG] Literal too large.")
	case errors.Is(err, errCommandTooLarge):
		c.writeLine("* BYE [TOOBIG] Command too large.")
	case errors.Is(err, os.ErrDeadlineExceeded):
		if c.pc.ShuttingDown() {
			c.writeLine("* BYE [UNAVAILABLE] Server shutting down.")
		} else if !time.Now().Before(c.pc.Deadline) {
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
func (c *conn) protocolError() error {
	c.protoErrors++
	if c.protoErrors >= c.lim.MaxErrors {
		c.writeLine("* BYE Too many invalid commands.")
		return errCloseConn
	}
	return nil
}

// authFailed counts a failed authentication and closes after too many.
func (c *conn) authFailed() error {
	c.authFailures++
	if c.authFailures >= c.lim.MaxAuthFailures {
		c.writeLine("* BYE Too many authentication failures.")
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

func (c *conn) dispatch(ctx context.Context, cmd *command) (*proxy.Session, error) {
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
func (c *conn) bad(cmd *command, text string) error {
	if err := c.writeLine("%s BAD %s", cmd.Tag, text); err != nil {
		return err
	}
	return c.protocolError()
}
