package pop3

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// The pre-authentication state machine: greeting, then commands until a
// backend session is open or the connection is to be closed.

// errClose ends the conversation after a final reply has been written (or
// when nobody is listening any more).
var errClose = errors.New("pop3: close connection")

// conn is one client's pre-auth conversation. Its zero value is not usable.
type conn struct {
	f     *Front
	c     *proxy.Conn
	nc    net.Conn // the client connection: c.Raw, or TLS over it
	isTLS bool
	r     *reader
	bw    *bufio.Writer

	user         string // from USER, for the next PASS
	protoErrors  int
	authFailures int
}

func newConn(f *Front, c *proxy.Conn, nc net.Conn) *conn {
	pc := &conn{f: f, c: c}
	pc.setStream(nc, c.ImplicitTLS)
	return pc
}

// setStream starts reading and writing nc with fresh buffers: whatever the
// old reader held is dropped (after STLS, plaintext pipelined behind it).
func (pc *conn) setStream(nc net.Conn, isTLS bool) {
	l := pc.c.Limits()
	pc.nc, pc.isTLS = nc, isTLS
	pc.r = newReader(nc, 4096, l.MaxLine, l.MaxPreloginBytes)
	pc.bw = bufio.NewWriterSize(nc, 1024)
}

// write sends s and flushes it under the write deadline.
func (pc *conn) write(s ...string) error {
	pc.nc.SetWriteDeadline(time.Now().Add(pc.c.Limits().WriteTimeout))
	for _, x := range s {
		pc.bw.WriteString(x)
	}
	return pc.bw.Flush()
}

// preauth runs the conversation until a backend session is open (sess !=
// nil) or the connection is to be closed (err != nil).
func (pc *conn) preauth(ctx context.Context) (*proxy.Session, error) {
	if err := pc.write(replyGreeting); err != nil {
		return nil, err
	}
	for {
		if !pc.c.ArmRead(pc.nc) || ctx.Err() != nil {
			pc.write(replyShutdown)
			return nil, errClose
		}
		cmd, err := pc.r.ReadCommand()
		if err != nil {
			return nil, pc.readError(err)
		}
		sess, err := pc.dispatch(ctx, cmd)
		if sess != nil || err != nil {
			return sess, err
		}
	}
}

// readError answers a failed read (every one ends the conversation) and
// returns errClose.
func (pc *conn) readError(err error) error {
	switch {
	case errors.Is(err, errLineTooLong):
		pc.write(replyLineTooLong)
	case errors.Is(err, errCommandTooLarge):
		pc.write(replyTooLarge)
	case errors.Is(err, os.ErrDeadlineExceeded):
		switch {
		case pc.c.ShuttingDown():
			pc.write(replyShutdown)
		case !time.Now().Before(pc.c.Deadline):
			pc.write(replyPreauthOver)
		default:
			pc.write(replyIdle)
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
	default:
		pc.c.Log.Debug("read failed", "err", err)
	}
	return errClose
}

// fail answers a refused command with line and counts a protocol error.
func (pc *conn) fail(line string) error {
	if err := pc.write(line); err != nil {
		return err
	}
	return pc.protocolError()
}

// protocolError counts a protocol error; too many close the connection.
func (pc *conn) protocolError() error {
	pc.protoErrors++
	if pc.protoErrors >= pc.c.Limits().MaxErrors {
		pc.c.Log.Debug("too many protocol errors", "errors", pc.protoErrors)
		return errClose
	}
	return nil
}

// authFailed counts a failed authentication; too many close the connection.
func (pc *conn) authFailed() error {
	pc.authFailures++
	if pc.authFailures >= pc.c.Limits().MaxAuthFailures {
		pc.c.Log.Debug("too many authentication failures", "failures", pc.authFailures)
		return errClose
	}
	return nil
}

// relay passes the backend's login reply to the client, then hands the
// connection to the relay with whatever the client pipelined behind its
// login. POP3 has no goodbye for a relay stopped by mailgate: it closes.
func (pc *conn) relay(ctx context.Context, sess *proxy.Session) {
	if len(sess.Reply) > 0 {
		pc.nc.SetWriteDeadline(time.Now().Add(pc.c.Limits().WriteTimeout))
		if _, err := pc.nc.Write(sess.Reply); err != nil {
			sess.Log.Info("client gone before the relay", "err", err)
			sess.Conn.Close()
			return
		}
		pc.nc.SetWriteDeadline(time.Time{})
	}
	pendingUp := proxy.TakeBuffered(pc.r.BR)
	pc.r, pc.bw = nil, nil // an idle session keeps no pre-auth buffers
	pc.nc.SetReadDeadline(time.Time{})
	pc.c.Relay(ctx, pc.nc, pendingUp, sess, nil)
}
