package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// CommandReader reads the client lines of a line-based front (SMTP, POP3)
// under caps: a command line is refused once it passes Short unless it
// starts with "AUTH ", which, like a SASL response (ReadResponse), may
// take up to Long (bearer tokens take several KiB). Everything one
// command makes the reader hold, its line and the SASL responses read
// while it runs, comes off a budget of Quota bytes (0: none). Nothing
// beyond a cap is ever buffered, and a long line's buffer is not kept.
// The reader knows nothing of what the commands mean. Bulk data (an SMTP
// message body) is read past the line buffer with ReadRaw, and bytes read
// too far given back with Unread.
type CommandReader struct {
	BR    *bufio.Reader
	Short int // cap of a command line, CRLF included
	Long  int // cap of an AUTH line or a SASL response
	Quota int // budget of one command; 0: none

	src  *pushback
	left int    // of the budget, for the current command
	pend []byte // the line being read
}

// ErrCommandTooLarge: a command's lines together exceed the budget. Like
// ErrLineTooLong, fatal: the stream cannot be followed any more.
var ErrCommandTooLarge = errors.New("command too large")

// keepPend is the largest line buffer the reader keeps between lines.
const keepPend = 1024

// NewCommandReader reads src through a buffer of bufSize bytes.
func NewCommandReader(src io.Reader, bufSize, short, long, quota int) *CommandReader {
	pb := &pushback{r: src}
	return &CommandReader{BR: bufio.NewReaderSize(pb, bufSize), src: pb, Short: short, Long: max(long, short), Quota: quota}
}

// Command is one client command line.
type Command struct {
	Verb string // as sent: fronts compare it case-insensitively
	Args []byte // after the verb and one space; nil if none. Valid until the next read.
	Line []byte // the whole line without CRLF. Valid until the next read.
}

// Buffered reports whether the client sent bytes not read yet (pipelined).
func (r *CommandReader) Buffered() bool { return r.BR.Buffered() > 0 || len(r.src.pre) > 0 }

// ReadCommand reads one command line. Errors: ErrLineTooLong,
// ErrCommandTooLarge or the connection's (every one ends the connection).
func (r *CommandReader) ReadCommand() (Command, error) {
	r.left = r.Quota
	line, err := r.readLine(false)
	if err != nil {
		return Command{}, err
	}
	verb, args, found := bytes.Cut(line, []byte{' '})
	if !found {
		args = nil
	}
	return Command{Verb: string(verb), Args: args, Line: line}, nil
}

// ReadResponse reads one SASL response line of the current command, under
// the long cap and what is left of the budget.
func (r *CommandReader) ReadResponse() ([]byte, error) { return r.readLine(true) }

// readLine returns one line without its CRLF (a bare LF is tolerated),
// valid until the next read.
func (r *CommandReader) readLine(long bool) ([]byte, error) {
	for {
		frag, err := r.BR.ReadSlice('\n')
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
func (r *CommandReader) check(long bool, frag []byte) error {
	n := len(r.pend) + len(frag)
	limit := r.Short
	if long || (n > r.Short && isAuthLine(r.pend, frag)) {
		limit = r.Long
	}
	switch {
	case r.Quota > 0 && n > min(limit, r.left) && r.left < limit:
		return ErrCommandTooLarge
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

// ReadRaw reads the next bytes into p: what the buffer holds first, then
// straight from the source, past the buffer. With len(p) at least the
// buffer's size, it leaves the buffer empty (so Unread keeps the order).
func (r *CommandReader) ReadRaw(p []byte) (int, error) {
	if r.BR.Buffered() > 0 {
		return r.BR.Read(p)
	}
	return r.src.Read(p)
}

// Unread gives back bytes that ReadRaw returned beyond what the caller
// wanted (commands pipelined behind a message): the next reads see them
// first.
func (r *CommandReader) Unread(b []byte) {
	if len(b) > 0 {
		r.src.pre = append(append([]byte(nil), b...), r.src.pre...)
	}
}

// pushback is what the buffer fills from: bytes given back by Unread,
// then the source.
type pushback struct {
	r   io.Reader
	pre []byte
}

func (p *pushback) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		if len(p.pre) == 0 {
			p.pre = nil
		}
		return n, nil
	}
	return p.r.Read(b)
}
