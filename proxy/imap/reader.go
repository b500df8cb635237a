package imap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/mailgate/mailgate/proxy"
)

// The pre-auth IMAP command reader (RFC 9051 §2.2, §4, §9; RFC 7888 LITERAL+).
// It reads one whole command, literals included, into a small tree of
// arguments, under hard caps: a line longer than maxLine or a literal larger
// than maxLiteral is refused without being buffered, and so is anything
// that would take the whole command (its lines, at most two literals, and
// the SASL response lines read while it runs) over the byte budget. It
// knows nothing of what the commands mean.

const (
	maxArgs      = 256 // arguments in one command, lists included
	maxListDepth = 8
	maxTagLen    = 64
	maxVerbLen   = 32
	// maxLiterals is the number of literals one pre-auth command may carry:
	// LOGIN's user name and password are the most any command needs.
	maxLiterals = 2
)

// Fatal read errors, besides proxy.ErrLineTooLong (a line over the cap:
// the stream cannot be resynchronised).
var (
	// errLiteralTooLarge: a non-synchronizing literal exceeds the cap; its bytes are
	// already on the way, so this is fatal too.
	errLiteralTooLarge = errors.New("literal too large")
	// errCommandTooLarge: the command's lines and literals together exceed
	// the byte budget, or a non-synchronizing literal is one too many. Fatal.
	errCommandTooLarge = errors.New("command too large")
)

// syntaxError is a command the client can be told about with a tagged (or,
// without a usable tag, untagged) BAD; the connection goes on.
type syntaxError struct {
	tag string // "" when the tag itself was unusable
	msg string
}

func (e *syntaxError) Error() string { return "syntax error: " + e.msg }

type argKind uint8

const (
	argAtom   argKind = iota // an atom, NIL included
	argString                // a quoted string or a literal
	argList                  // a parenthesized list
)

type argument struct {
	Kind  argKind
	Value string     // atom or string contents
	List  []argument // argList
}

// isNIL reports whether a is the atom NIL.
func (a argument) isNIL() bool { return a.Kind == argAtom && strings.EqualFold(a.Value, "NIL") }

// astring returns the value of an atom or string argument.
func (a argument) astring() (string, bool) {
	if a.Kind == argList {
		return "", false
	}
	return a.Value, true
}

type command struct {
	Tag  string
	Name string // upper case
	Args []argument
}

type reader struct {
	br         *bufio.Reader
	maxLine    int
	maxLiteral int
	// cont is called before the bytes of a synchronizing literal are read;
	// it sends the "+" continuation request to the client.
	cont func() error
	// budget is what one command may make the reader hold, literals and
	// SASL responses included; kept is what the connection holds besides
	// (the client's ID fields), and is taken off the budget.
	budget, kept int
	left         int // of the budget, for the current command
	literals     int // in the current command
}

// readLine returns one client line without its CRLF, capped at maxLine and
// at what is left of the command's budget.
func (r *reader) readLine() ([]byte, error) {
	limit := min(r.maxLine, r.left)
	line, err := proxy.ReadLine(r.br, limit)
	if errors.Is(err, proxy.ErrLineTooLong) && limit < r.maxLine {
		return nil, errCommandTooLarge
	}
	r.left -= len(line) + 2
	return line, err
}

// readCommand reads one command. Errors: *syntaxError (answer BAD, go
// on), proxy.ErrLineTooLong / errLiteralTooLarge / errCommandTooLarge (answer
// BYE, close) or an I/O error.
func (r *reader) readCommand() (*command, error) {
	r.left, r.literals = r.budget-r.kept, 0
	line, err := r.readLine()
	if err != nil {
		return nil, err
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		if len(line) == 0 {
			return nil, &syntaxError{msg: "empty command line"}
		}
		if tag := string(line); validTag(tag) {
			return nil, &syntaxError{tag: tag, msg: "missing command"}
		}
		return nil, &syntaxError{msg: "missing tag"}
	}
	tag := string(line[:sp])
	if !validTag(tag) {
		return nil, &syntaxError{msg: "invalid tag"}
	}
	rest := line[sp+1:]
	end := bytes.IndexByte(rest, ' ')
	if end < 0 {
		end = len(rest)
	}
	verb := rest[:end]
	if len(verb) == 0 || len(verb) > maxVerbLen || !isAlnumWord(verb) {
		return nil, &syntaxError{tag: tag, msg: "invalid command name"}
	}
	cmd := &command{Tag: tag, Name: strings.ToUpper(string(verb))}
	p := cmdParser{r: r, line: rest[end:], tag: tag}
	cmd.Args, err = p.parseArgs(false)
	if err != nil {
		return nil, err
	}
	return cmd, nil
}

// validTag: 1*<any ASTRING-CHAR except "+"> (RFC 9051 §9).
func validTag(tag string) bool {
	if len(tag) == 0 || len(tag) > maxTagLen {
		return false
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\+`, c) >= 0 {
			return false
		}
	}
	return true
}

func isAlnumWord(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// isAtomChar: ATOM-CHAR plus "]" (ASTRING-CHAR), "%" and "*" (list wildcards).
func isAtomChar(c byte) bool {
	return c > ' ' && c < 0x7f && strings.IndexByte(`(){"\`, c) < 0
}

type cmdParser struct {
	r     *reader
	line  []byte // rest of the current line
	tag   string
	depth int
	nargs int
}

func (p *cmdParser) syntax(format string, a ...any) error {
	return &syntaxError{tag: p.tag, msg: fmt.Sprintf(format, a...)}
}

// parseArgs parses space-separated arguments up to the end of the command,
// or up to the ")" that closes the current list when inList.
func (p *cmdParser) parseArgs(inList bool) ([]argument, error) {
	var args []argument
	for first := true; ; first = false {
		if len(p.line) == 0 {
			if inList {
				return nil, p.syntax("unterminated list")
			}
			return args, nil
		}
		if p.line[0] == ')' {
			if !inList {
				return nil, p.syntax("unexpected \")\"")
			}
			p.line = p.line[1:]
			return args, nil
		}
		if !(inList && first) {
			if p.line[0] != ' ' {
				return nil, p.syntax("expected a space between arguments")
			}
			p.line = p.line[1:]
			if len(p.line) == 0 {
				return nil, p.syntax("trailing space")
			}
		}
		if p.nargs++; p.nargs > maxArgs {
			return nil, p.syntax("too many arguments")
		}
		arg, err := p.parseArg()
		if err != nil {
			return nil, err
		}
		args = append(args, arg)
	}
}

func (p *cmdParser) parseArg() (argument, error) {
	switch c := p.line[0]; {
	case c == '(':
		if p.depth++; p.depth > maxListDepth {
			return argument{}, p.syntax("lists nested too deeply")
		}
		p.line = p.line[1:]
		list, err := p.parseArgs(true)
		p.depth--
		return argument{Kind: argList, List: list}, err
	case c == '"':
		return p.parseQuoted()
	case c == '{':
		return p.parseLiteral()
	case isAtomChar(c):
		i := 0
		for i < len(p.line) && isAtomChar(p.line[i]) {
			i++
		}
		v := string(p.line[:i])
		p.line = p.line[i:]
		return argument{Kind: argAtom, Value: v}, nil
	default:
		return argument{}, p.syntax("unexpected character 0x%02x", c)
	}
}

func (p *cmdParser) parseQuoted() (argument, error) {
	var sb strings.Builder
	for i := 1; i < len(p.line); i++ {
		switch c := p.line[i]; c {
		case '"':
			p.line = p.line[i+1:]
			return argument{Kind: argString, Value: sb.String()}, nil
		case '\\':
			i++
			if i == len(p.line) || (p.line[i] != '"' && p.line[i] != '\\') {
				return argument{}, p.syntax("invalid escape in quoted string")
			}
			sb.WriteByte(p.line[i])
		case 0:
			return argument{}, p.syntax("NUL in quoted string")
		default:
			sb.WriteByte(c)
		}
	}
	return argument{}, p.syntax("unterminated quoted string")
}

// parseLiteral reads "{n}" or "{n+}", which must end the line, then the n
// bytes, then the line that follows them.
func (p *cmdParser) parseLiteral() (argument, error) {
	end := bytes.IndexByte(p.line, '}')
	if end < 0 || end != len(p.line)-1 {
		return argument{}, p.syntax("a literal must end the line")
	}
	spec := p.line[1:end]
	sync := true
	if n := len(spec); n > 0 && spec[n-1] == '+' {
		sync = false
		spec = spec[:n-1]
	}
	if len(spec) == 0 || len(spec) > 10 {
		return argument{}, p.syntax("invalid literal size")
	}
	for _, c := range spec {
		if c < '0' || c > '9' {
			return argument{}, p.syntax("invalid literal size")
		}
	}
	n, err := strconv.ParseInt(string(spec), 10, 64)
	if err != nil {
		return argument{}, p.syntax("invalid literal size")
	}
	if p.r.literals++; p.r.literals > maxLiterals {
		if !sync {
			return argument{}, errCommandTooLarge
		}
		return argument{}, p.syntax("too many literals")
	}
	if n > int64(min(p.r.maxLiteral, p.r.left)) {
		if !sync {
			return argument{}, errLiteralTooLarge
		}
		// The client waits for "+" before sending the bytes: refusing is enough.
		return argument{}, p.syntax("literal too large")
	}
	p.r.left -= int(n)
	if sync && p.r.cont != nil {
		if err := p.r.cont(); err != nil {
			return argument{}, err
		}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(p.r.br, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return argument{}, err
	}
	line, err := p.r.readLine()
	if err != nil {
		return argument{}, err
	}
	if bytes.IndexByte(buf, 0) >= 0 {
		return argument{}, p.syntax("NUL in literal") // after the rest of the line: in step
	}
	p.line = line
	return argument{Kind: argString, Value: string(buf)}, nil
}
