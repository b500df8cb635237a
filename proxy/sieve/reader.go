package sieve

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/mailgate/mailgate/proxy"
)

// The pre-auth command reader (RFC 5804 §4): one command per call, its
// literals included, read under hard caps. A line longer than maxLine, a
// literal larger than its argument's cap, or anything that would take the
// command (its lines, its literals and, for AUTHENTICATE, the SASL
// responses read while it runs) over the byte budget is refused without
// being buffered. ManageSieve has no continuation request for literals:
// the client sends "{n+}" and "{n}" alike without waiting, so a literal
// that is refused is fatal, and after a syntax error the reader skips the
// literals the line announced to stay in step with the client. It knows
// nothing of what the commands mean.

const (
	maxArgs    = 8  // arguments of one command; pre-auth commands take two at most
	maxVerbLen = 32 // UNAUTHENTICATE is the longest command name
	// maxString caps a string argument other than a SASL response: a
	// mechanism name, a NOOP tag.
	maxString = 1024
	// maxLiteralDigits bounds "{n}": ten digits hold any size the caps allow.
	maxLiteralDigits = 10
)

// Fatal reader errors: the client's bytes are on their way and the stream
// cannot be resynchronised. The connection gets BYE.
var (
	errLineTooLong     = errors.New("sieve: line too long")
	errLiteralTooLarge = errors.New("sieve: literal too large")
	errCommandTooLarge = errors.New("sieve: command too large")
)

// syntaxError is a command (or SASL response) the client can be told about
// with NO; the reader has consumed all of it and the connection goes on.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return "syntax error: " + e.msg }

type argKind uint8

const (
	argAtom   argKind = iota // an atom (a number included)
	argString                // a quoted string or a literal
)

type arg struct {
	kind  argKind
	value string
}

type command struct {
	name string // upper case
	args []arg
}

// reader reads commands and SASL responses. Its zero value is unusable:
// br and the caps are set by the connection (conn.setStream).
type reader struct {
	br      *bufio.Reader
	maxLine int // one line, without its CRLF (Limits.MaxLine)
	maxSASL int // one SASL response or initial response (Limits.MaxLine)
	budget  int // one command with its literals and SASL responses (Limits.MaxPreloginBytes)
	left    int // of the budget, for the current command
}

// readLine returns one line without its CRLF, capped at maxLine and at
// what is left of the command's budget. The slice points into br's buffer.
func (r *reader) readLine() ([]byte, error) {
	limit := min(r.maxLine, r.left)
	line, err := proxy.ReadLine(r.br, limit)
	if errors.Is(err, proxy.ErrLineTooLong) {
		if limit < r.maxLine {
			return nil, errCommandTooLarge
		}
		return nil, errLineTooLong
	}
	if err != nil {
		return nil, err
	}
	r.left -= len(line) + 2
	return line, nil
}

// readCommand reads one command. Errors: *syntaxError (answer NO, go on),
// errLineTooLong, errLiteralTooLarge, errCommandTooLarge (answer BYE,
// close) or an I/O error.
func (r *reader) readCommand() (*command, error) {
	r.left = r.budget
	line, err := r.readLine()
	if err != nil {
		return nil, err
	}
	p := &parser{r: r, seg: line, line: line}
	verb := p.word()
	if len(verb) == 0 {
		return nil, p.syntax("Empty command.")
	}
	if len(verb) > maxVerbLen || !isLetters(verb) {
		return nil, p.syntax("Invalid command name.")
	}
	cmd := &command{name: strings.ToUpper(string(verb))}
	if cmd.args, err = p.parseArgs(cmd.name); err != nil {
		return nil, err
	}
	return cmd, nil
}

// readResponse reads a client's SASL response: one string (quoted or a
// literal) alone on its line. An atom is taken like a string (bare base64,
// or "*"), and an empty line as an empty response. It counts against the
// budget of the AUTHENTICATE command it belongs to.
func (r *reader) readResponse() (string, error) {
	line, err := r.readLine()
	if err != nil || len(line) == 0 {
		return "", err
	}
	p := &parser{r: r, seg: line, line: line}
	a, err := p.parseArg(r.maxSASL)
	if err != nil {
		return "", err
	}
	if len(p.line) != 0 {
		return "", p.syntax("A SASL response is one string.")
	}
	return a.value, nil
}

// argLimit is the cap of a command's argument i: a SASL initial response
// may be as long as a SASL response, anything else is short.
func (r *reader) argLimit(name string, i int) int {
	if name == "AUTHENTICATE" && i == 1 {
		return r.maxSASL
	}
	return maxString
}

// parser parses the lines of one command or response.
type parser struct {
	r    *reader
	seg  []byte // the current line, whole
	line []byte // what is left of it
}

// syntax skips the literals the current line announces (and the lines
// after them) and returns a *syntaxError with msg, or a fatal error if the
// skipping cannot be done within the budget.
func (p *parser) syntax(msg string) error {
	for {
		n, _, ok := trailingLiteral(p.seg)
		if !ok {
			return &syntaxError{msg: msg}
		}
		if n > int64(p.r.left) {
			return errCommandTooLarge
		}
		if _, err := p.r.br.Discard(int(n)); err != nil {
			return eofUnexpected(err)
		}
		p.r.left -= int(n)
		line, err := p.r.readLine()
		if err != nil {
			return err
		}
		p.seg, p.line = line, line
	}
}

// word cuts the leading run of non-space bytes.
func (p *parser) word() []byte {
	i := bytes.IndexByte(p.line, ' ')
	if i < 0 {
		i = len(p.line)
	}
	w := p.line[:i]
	p.line = p.line[i:]
	return w
}

// parseArgs parses space-separated arguments up to the end of the command.
func (p *parser) parseArgs(name string) ([]arg, error) {
	var args []arg
	for len(p.line) > 0 {
		if p.line[0] != ' ' {
			return nil, p.syntax("Expected a space between arguments.")
		}
		p.line = p.line[1:]
		if len(p.line) == 0 {
			return nil, p.syntax("Trailing space.")
		}
		if len(args) == maxArgs {
			return nil, p.syntax("Too many arguments.")
		}
		a, err := p.parseArg(p.r.argLimit(name, len(args)))
		if err != nil {
			return nil, err
		}
		args = append(args, a)
	}
	return args, nil
}

// parseArg parses one atom, quoted string or literal of at most limit bytes.
func (p *parser) parseArg(limit int) (arg, error) {
	switch c := p.line[0]; {
	case c == '"':
		v, rest, msg := parseQuoted(p.line)
		if msg != "" {
			return arg{}, p.syntax(msg)
		}
		if len(v) > limit {
			return arg{}, p.syntax("String too long.")
		}
		p.line = rest
		return arg{kind: argString, value: v}, nil
	case c == '{':
		return p.parseLiteral(limit)
	case isAtomChar(c):
		i := 0
		for i < len(p.line) && isAtomChar(p.line[i]) {
			i++
		}
		if i > limit {
			return arg{}, p.syntax("Atom too long.")
		}
		v := string(p.line[:i])
		p.line = p.line[i:]
		return arg{kind: argAtom, value: v}, nil
	default:
		return arg{}, p.syntax("Unexpected character in arguments.")
	}
}

// parseLiteral reads "{n}" or "{n+}", which must end the line, the n bytes
// after it, and the line that follows them.
func (p *parser) parseLiteral(limit int) (arg, error) {
	n, open, ok := trailingLiteral(p.line)
	if !ok || open != 0 {
		return arg{}, p.syntax("Invalid literal: it must be {n} or {n+} at the end of the line.")
	}
	if n > int64(limit) {
		return arg{}, errLiteralTooLarge
	}
	if n > int64(p.r.left) {
		return arg{}, errCommandTooLarge
	}
	p.r.left -= int(n)
	// Grown as the bytes arrive: announcing {65000} costs the client 65000
	// bytes sent, not a line.
	var lit bytes.Buffer
	if _, err := io.CopyN(&lit, p.r.br, n); err != nil {
		return arg{}, eofUnexpected(err)
	}
	buf := lit.Bytes()
	line, err := p.r.readLine()
	if err != nil {
		return arg{}, err
	}
	p.seg, p.line = line, line
	if bytes.IndexByte(buf, 0) >= 0 {
		return arg{}, p.syntax("NUL in a literal.") // after the rest of the line: in step
	}
	return arg{kind: argString, value: string(buf)}, nil
}

// trailingLiteral reports whether line ends with a literal's "{n}" or
// "{n+}", with n and the index of its "{".
func trailingLiteral(line []byte) (n int64, open int, ok bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, 0, false
	}
	open = bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, 0, false
	}
	spec := bytes.TrimSuffix(line[open+1:len(line)-1], []byte("+"))
	if len(spec) == 0 || len(spec) > maxLiteralDigits {
		return 0, 0, false
	}
	for _, c := range spec {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
	}
	n, err := strconv.ParseInt(string(spec), 10, 64)
	return n, open, err == nil
}

// parseQuoted parses the quoted string at the start of b (RFC 5804 §4:
// "\" escapes only "\"" and "\\"; no NUL, CR or LF) and returns its value
// and the rest of b, or the reason it is invalid.
func parseQuoted(b []byte) (value string, rest []byte, msg string) {
	var sb strings.Builder
	for i := 1; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			return sb.String(), b[i+1:], ""
		case '\\':
			i++
			if i == len(b) || (b[i] != '"' && b[i] != '\\') {
				return "", nil, "Invalid escape in a quoted string."
			}
			sb.WriteByte(b[i])
		case 0, '\r', '\n':
			return "", nil, "Invalid character in a quoted string."
		default:
			sb.WriteByte(c)
		}
	}
	return "", nil, "Unterminated quoted string."
}

// isAtomChar: printable ASCII but the characters that start or end other
// syntax (space, parentheses, braces, quote, backslash).
func isAtomChar(c byte) bool {
	return c > ' ' && c < 0x7f && strings.IndexByte(`(){}"\`, c) < 0
}

func isLetters(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// eofUnexpected makes an EOF inside a command io.ErrUnexpectedEOF.
func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
