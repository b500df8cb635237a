package demo

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// imapserver (go-imap v2.0.0-beta.8) has no ID command (RFC 2971) and drops
// the connection on any unknown command before login. Dovecot does answer ID,
// and clients or mailgate may send it before authenticating. idConn sits
// between the socket and imapserver: it answers ID itself and adds ID to the
// capability lists imapserver writes.
//
// It hands imapserver one command line (or one literal) per Read. imapserver
// handles a command completely before it reads the next, so an ID reply
// written from Read cannot overtake the reply to an earlier command.

const (
	maxIDLine       = 64 << 10 // longer lines are refused; imapserver's own cap is 50 KiB
	maxIDLiteral    = 1024     // RFC 2971: values are at most 1024 octets
	idWriteDeadline = 30 * time.Second
)

var errIDLineTooLong = errors.New("demo: imap command line too long")

// idListener wraps accepted connections in idConn.
type idListener struct{ net.Listener }

func (l idListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ic := &idConn{Conn: c, br: bufio.NewReaderSize(c, maxIDLine)}
	ic.capsNext.Store(true) // the greeting carries [CAPABILITY ...]
	return ic, nil
}

type idConn struct {
	net.Conn
	br        *bufio.Reader
	pending   []byte // rest of the current command line, for imapserver
	literal   int64  // literal bytes still to pass through unexamined
	inCommand bool   // the next line continues a command after a literal

	// capsNext is set while the last command read may be answered with a
	// capability list (greeting, CAPABILITY, LOGIN, AUTHENTICATE), so that
	// message data is never rewritten.
	capsNext atomic.Bool
	wmu      sync.Mutex // serialises ID replies with imapserver's writes
}

func (c *idConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 && c.literal == 0 {
		if err := c.nextLine(); err != nil {
			return 0, err
		}
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if int64(len(p)) > c.literal {
		p = p[:c.literal]
	}
	n, err := c.br.Read(p)
	c.literal -= int64(n)
	return n, err
}

// nextLine reads the next command line: an ID command is answered here,
// anything else becomes pending for imapserver.
func (c *idConn) nextLine() error {
	line, err := c.readLine()
	if err != nil {
		return err
	}
	// After a literal the line continues the same command.
	if tag, verb := commandWords(line); !c.inCommand && verb != "" {
		switch strings.ToUpper(verb) {
		case "ID":
			return c.answerID(tag, line)
		case "CAPABILITY", "LOGIN", "AUTHENTICATE":
			c.capsNext.Store(true)
		default:
			c.capsNext.Store(false)
		}
	} // lines without a command name (SASL responses, IDLE's DONE) keep the flag
	n, _, ok := literalAtEnd(line)
	c.literal, c.inCommand = n, ok
	c.pending = line
	return nil
}

// readLine returns a copy of the next line including its line ending. A final
// line without one is returned as is; io.EOF comes with the next call.
func (c *idConn) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, errIDLineTooLong
	case err != nil && len(line) == 0:
		return nil, err
	}
	return bytes.Clone(line), nil
}

// answerID skips the ID parameters, literals included, and replies.
func (c *idConn) answerID(tag string, line []byte) error {
	for {
		n, nonSync, ok := literalAtEnd(line)
		if !ok {
			break
		}
		if n > maxIDLiteral {
			return errIDLineTooLong
		}
		if !nonSync {
			if err := c.reply("+ Ready for literal data\r\n"); err != nil {
				return err
			}
		}
		if _, err := c.br.Discard(int(n)); err != nil {
			return err
		}
		var err error
		if line, err = c.readLine(); err != nil {
			return err
		}
	}
	return c.reply("* ID (\"name\" \"mailgate-demo\")\r\n" + tag + " OK ID completed\r\n")
}

func (c *idConn) reply(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.Conn.SetWriteDeadline(time.Now().Add(idWriteDeadline)); err != nil {
		return err
	}
	_, err := io.WriteString(c.Conn, s)
	if derr := c.Conn.SetWriteDeadline(time.Time{}); err == nil {
		err = derr
	}
	return err
}

// Write adds ID to a capability list in the first line of b.
// imapserver flushes every response line separately.
func (c *idConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	out := b
	if c.capsNext.Load() {
		const plain, withID = "CAPABILITY IMAP4rev1", "CAPABILITY IMAP4rev1 ID"
		first, rest, found := bytes.Cut(b, []byte("\n"))
		if bytes.Contains(first, []byte(plain)) {
			out = bytes.Replace(first, []byte(plain), []byte(withID), 1)
			if found {
				out = append(append(out, '\n'), rest...)
			}
		}
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// commandWords returns the tag and the command name of an IMAP command line.
// A continuation line has no command name.
func commandWords(line []byte) (tag, verb string) {
	f := strings.Fields(strings.TrimRight(string(line), "\r\n"))
	if len(f) < 2 {
		return "", ""
	}
	return f[0], f[1]
}

// literalAtEnd parses a "{n}" or "{n+}" literal announcement ending a line.
func literalAtEnd(line []byte) (n int64, nonSync, ok bool) {
	s := strings.TrimRight(string(line), "\r\n")
	if !strings.HasSuffix(s, "}") {
		return 0, false, false
	}
	i := strings.LastIndexByte(s, '{')
	if i < 0 {
		return 0, false, false
	}
	num := s[i+1 : len(s)-1]
	num, nonSync = strings.CutSuffix(num, "+")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, false, false
	}
	return n, nonSync, true
}
