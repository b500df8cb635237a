package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
)

// The client's command reader. RFC 5321 caps a command line at 512 octets,
// but AUTH lines and SASL responses carry bearer tokens of several KiB:
// before login a line is refused once it passes maxCommandLine unless it
// starts with "AUTH " or is a SASL response, which may take up to the long
// cap (Limits.MaxLine). Everything one pre-login command makes the reader
// hold, its line and the SASL responses read while it runs, comes off a
// budget (Limits.MaxPreloginBytes). After login every command line has
// maxSessionLine (Postfix's line_length_limit), and no budget. Nothing
// beyond a cap is ever buffered. The reader knows nothing of what the
// commands mean; message bodies are read through body (data.go).

const (
	// maxCommandLine caps a command line before login, CRLF included:
	// RFC 5321's 512 octets, with room for clients that go a little over.
	maxCommandLine = 1024
	// maxSessionLine caps a command line after login: MAIL and RCPT with
	// every extension's parameters (Postfix's line_length_limit).
	maxSessionLine = 2048
	// keepPend is the largest line buffer the reader keeps between lines.
	keepPend = 1024
	// clientBufSize is the client reader's buffer: commands, and the first
	// bytes of a body (the rest is read past it, see body).
	clientBufSize = 4096
)

var (
	// errLineTooLong: a line exceeds its cap. Fatal: the stream cannot be
	// resynchronised without reading what was refused.
	errLineTooLong = errors.New("smtp: line too long")
	// errCommandTooLarge: the command's lines together exceed the budget. Fatal.
	errCommandTooLarge = errors.New("smtp: command too large")
)

// command is one client command line.
type command struct {
	verb string // as sent: dispatch compares it case-insensitively
	args []byte // after the verb and one space; nil if none. Valid until the next read.
	line []byte // the whole line without CRLF, as sent. Valid until the next read.
}

// reader reads client lines under the caps. Its zero value is not usable.
type reader struct {
	br    *bufio.Reader
	src   *source
	short int    // cap of a command line
	long  int    // cap of an AUTH line or a SASL response (Limits.MaxLine)
	quota int    // budget of one command (0: none)
	left  int    // of the budget, for the current command
	pend  []byte // the line being read
}

func newReader(nc net.Conn, long, quota int) *reader {
	src := &source{nc: nc}
	return &reader{
		br: bufio.NewReaderSize(src, clientBufSize), src: src,
		short: maxCommandLine, long: max(long, maxCommandLine), quota: max(quota, maxCommandLine),
	}
}

// loggedIn switches to the caps of a session: every line up to
// maxSessionLine, no budget.
func (r *reader) loggedIn() { r.short, r.long, r.quota = maxSessionLine, maxSessionLine, 0 }

// buffered reports whether the client has sent bytes not read yet (a
// pipelined command).
func (r *reader) buffered() bool { return r.br.Buffered() > 0 || len(r.src.pre) > 0 }

// readCommand reads one command line. Errors: errLineTooLong,
// errCommandTooLarge or the connection's (every one ends the connection).
func (r *reader) readCommand() (command, error) {
	r.left = r.quota
	line, err := r.readLine(false)
	if err != nil {
		return command{}, err
	}
	verb, args, found := bytes.Cut(line, []byte{' '})
	if !found {
		args = nil
	}
	return command{verb: string(verb), args: args, line: line}, nil
}

// readResponse reads one SASL response line of the current command,
// under the long cap and what is left of the budget.
func (r *reader) readResponse() ([]byte, error) { return r.readLine(true) }

// readLine returns one line without its CRLF (a bare LF is tolerated),
// valid until the next read.
func (r *reader) readLine(long bool) ([]byte, error) {
	for {
		frag, err := r.br.ReadSlice('\n')
		if lerr := r.check(long, frag); lerr != nil {
			r.pend = r.pend[:0]
			return nil, lerr
		}
		r.pend = append(r.pend, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF && len(r.pend) > 0 {
				err = io.ErrUnexpectedEOF
			}
			r.pend = r.pend[:0]
			return nil, err
		}
	}
	line := r.pend[:len(r.pend)-1]
	r.left -= len(r.pend)
	r.pend = r.pend[:0]
	if cap(r.pend) > keepPend {
		r.pend = nil // a long line's buffer is not kept for the next ones
	}
	return bytes.TrimSuffix(line, []byte{'\r'}), nil
}

// check refuses frag if the line would exceed its cap with it.
func (r *reader) check(long bool, frag []byte) error {
	n := len(r.pend) + len(frag)
	limit := r.short
	if long || (n > r.short && isAuthLine(r.pend, frag)) {
		limit = r.long
	}
	switch {
	case r.quota > 0 && n > min(limit, r.left) && r.left < limit:
		return errCommandTooLarge
	case n > limit:
		return errLineTooLong
	}
	return nil
}

// isAuthLine reports whether the line made of pend and frag starts with
// "AUTH " (case-insensitively). Called once the line is past the short
// cap, so its first five bytes are there.
func isAuthLine(pend, frag []byte) bool {
	var head [5]byte
	n := copy(head[:], pend)
	copy(head[n:], frag)
	return bytes.EqualFold(head[:], []byte("AUTH "))
}

// readBody reads the next part of a message body into p: what the
// reader holds first, then straight from the connection, past the
// reader's buffer (a body is read in blocks of bodyBufSize, not 4 KiB).
func (r *reader) readBody(p []byte) (int, error) {
	if r.br.Buffered() > 0 {
		return r.br.Read(p)
	}
	return r.src.Read(p)
}

// unread gives back bytes that readBody returned past the end of a body
// (commands the client pipelined behind it): the next reads see them first.
func (r *reader) unread(b []byte) {
	if len(b) > 0 {
		r.src.pre = append(append([]byte(nil), b...), r.src.pre...)
	}
}

// source is what the reader's buffer fills from: bytes given back by
// unread, then the connection.
type source struct {
	nc  net.Conn
	pre []byte
}

func (s *source) Read(p []byte) (int, error) {
	if len(s.pre) > 0 {
		n := copy(p, s.pre)
		s.pre = s.pre[n:]
		if len(s.pre) == 0 {
			s.pre = nil
		}
		return n, nil
	}
	return s.nc.Read(p)
}
