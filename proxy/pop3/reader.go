package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// The pre-auth command reader. RFC 2449 caps a command line at 255 octets,
// but AUTH lines and SASL responses carry bearer tokens of several KiB: a
// line is refused once it passes maxCommandLine unless it starts with
// "AUTH " or is a SASL response, which may take up to the long cap
// (Limits.MaxLine). Everything one command makes the reader hold, its
// line and the SASL responses read while it runs, comes off a budget
// (Limits.MaxPreloginBytes). Nothing beyond a cap is ever buffered. The
// reader knows nothing of what the commands mean.

// maxCommandLine caps a command line other than AUTH, CRLF included:
// RFC 2449's 255 octets, with room for clients that go a little over.
const maxCommandLine = 512

// keepPend is the largest line buffer the reader keeps between lines.
const keepPend = 1024

var (
	// errLineTooLong: a line exceeds its cap. Fatal: the stream cannot be
	// resynchronised without reading what was refused.
	errLineTooLong = errors.New("pop3: line too long")
	// errCommandTooLarge: the command's lines together exceed the budget. Fatal.
	errCommandTooLarge = errors.New("pop3: command too large")
)

// command is one client command line.
type command struct {
	verb string // as sent: dispatch compares it case-insensitively
	args []byte // after the verb and one space; nil if none. Valid until the next read.
}

// reader reads client lines under the caps. Its zero value is not usable.
type reader struct {
	br    *bufio.Reader
	short int    // cap of a command line (maxCommandLine)
	long  int    // cap of an AUTH line or a SASL response (Limits.MaxLine)
	quota int    // budget of one command (Limits.MaxPreloginBytes)
	left  int    // of the budget, for the current command
	pend  []byte // the line being read
}

func newReader(br *bufio.Reader, long, quota int) *reader {
	return &reader{br: br, short: maxCommandLine, long: max(long, maxCommandLine), quota: max(quota, maxCommandLine)}
}

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
	return command{verb: string(verb), args: args}, nil
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
	case n > min(limit, r.left) && r.left < limit:
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
