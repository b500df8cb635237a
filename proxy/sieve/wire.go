package sieve

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

// What mailgate writes and reads on the wire besides the client's commands:
// its own strings, and the backend's responses (RFC 5804 §4: "OK", "NO" or
// "BYE" with an optional response code and string, or capability lines of
// strings), any string of which may be a literal.

// Caps on a backend response. Lines are capped by proxy.ReadBackendLine.
const (
	maxBackendLiteral  = 64 << 10
	maxBackendLiterals = 4  // in one response
	maxBackendTokens   = 64 // in one response
	maxCapabilityLines = 64 // in one capability response
)

// quote returns s as a ManageSieve string: quoted when it can be, else a
// literal "{n}" CRLF s (RFC 5804 §4; from server to client).
func quote(s string) string {
	if len(s) > maxString || strings.ContainsAny(s, "\x00\r\n") {
		return "{" + strconv.Itoa(len(s)) + "}\r\n" + s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// response is one backend response: a status response ("OK", "NO", "BYE")
// or a data line (status "", the strings in fields).
type response struct {
	raw    []byte   // as received, CRLF after each line, literals included
	status string   // "OK", "NO", "BYE", or "" for a data line
	code   string   // the response code's first atom, upper case ("TRYLATER")
	text   string   // the status response's human-readable string
	fields []string // a data line's strings and atoms
}

type tokKind uint8

const (
	tokAtom tokKind = iota
	tokString
	tokOpen  // "("
	tokClose // ")"
)

type token struct {
	kind  tokKind
	value string
}

// readResponse reads one backend response, capped (lines, literals,
// tokens), with the literals in it.
func readResponse(br *bufio.Reader) (*response, error) {
	t := &tokenizer{br: br}
	if err := t.nextLine(); err != nil {
		return nil, err
	}
	var toks []token
	for {
		tok, eol, err := t.next()
		if err != nil {
			return nil, err
		}
		if eol {
			break
		}
		if len(toks) == maxBackendTokens {
			return nil, errors.New("too many tokens in a response")
		}
		toks = append(toks, tok)
	}
	return parseResponse(toks, t.raw)
}

// parseResponse makes tokens a response.
func parseResponse(toks []token, raw []byte) (*response, error) {
	if len(toks) == 0 {
		return nil, errors.New("empty response line")
	}
	r := &response{raw: raw}
	if toks[0].kind == tokString {
		for _, t := range toks {
			r.fields = append(r.fields, t.value)
		}
		return r, nil
	}
	st := strings.ToUpper(toks[0].value)
	if toks[0].kind != tokAtom || (st != "OK" && st != "NO" && st != "BYE") {
		return nil, fmt.Errorf("unexpected response %q", proxy.Truncate(raw))
	}
	r.status, toks = st, toks[1:]
	if len(toks) > 0 && toks[0].kind == tokOpen {
		i := 1
		if i < len(toks) && toks[i].kind == tokAtom {
			r.code = strings.ToUpper(toks[i].value)
		}
		for i < len(toks) && toks[i].kind != tokClose {
			i++
		}
		toks = toks[min(i+1, len(toks)):]
	}
	if len(toks) > 0 && toks[0].kind == tokString {
		r.text = toks[0].value
	}
	return r, nil
}

// tokenizer splits a backend response into tokens, reading the literals
// and the lines after them as it meets them.
type tokenizer struct {
	br       *bufio.Reader
	line     []byte // what is left of the current line
	raw      []byte
	literals int
}

func (t *tokenizer) nextLine() error {
	line, err := proxy.ReadBackendLine(t.br)
	if err != nil {
		return err
	}
	t.raw = append(append(t.raw, line...), '\r', '\n')
	t.line = t.raw[len(t.raw)-len(line)-2 : len(t.raw)-2]
	return nil
}

// next returns the next token, or eol at the end of the response.
func (t *tokenizer) next() (tok token, eol bool, err error) {
	t.line = bytes.TrimLeft(t.line, " ")
	if len(t.line) == 0 {
		return token{}, true, nil
	}
	switch c := t.line[0]; c {
	case '(':
		t.line = t.line[1:]
		return token{kind: tokOpen}, false, nil
	case ')':
		t.line = t.line[1:]
		return token{kind: tokClose}, false, nil
	case '"':
		v, rest, msg := parseQuoted(t.line)
		if msg != "" {
			return token{}, false, errors.New(msg)
		}
		t.line = rest
		return token{kind: tokString, value: v}, false, nil
	case '{':
		v, err := t.literal()
		return token{kind: tokString, value: v}, false, err
	}
	i := bytes.IndexAny(t.line, ` ()"{`)
	if i < 0 {
		i = len(t.line)
	}
	v := string(t.line[:i])
	t.line = t.line[i:]
	return token{kind: tokAtom, value: v}, false, nil
}

// literal reads the literal whose "{n}" ends the current line, then the
// line after it.
func (t *tokenizer) literal() (string, error) {
	n, open, ok := trailingLiteral(t.line)
	switch {
	case !ok || open != 0:
		return "", errors.New("invalid literal")
	case n > maxBackendLiteral:
		return "", fmt.Errorf("literal of %d bytes", n)
	case t.literals == maxBackendLiterals:
		return "", errors.New("too many literals")
	}
	t.literals++
	buf := make([]byte, n)
	if _, err := io.ReadFull(t.br, buf); err != nil {
		return "", eofUnexpected(err)
	}
	t.raw = append(t.raw, buf...)
	return string(buf), t.nextLine()
}
