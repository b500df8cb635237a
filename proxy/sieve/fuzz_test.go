package sieve

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

// countingReader counts the bytes read from it.
type countingReader struct {
	r *bytes.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzReadCommand drives the command reader as the connection does (a
// command, and SASL responses after an AUTHENTICATE without an initial
// response) and checks that it never panics, never returns a command that
// breaks its invariants (name, argument count, caps, no NUL in strings,
// atoms of atom characters), never lets one command hold more than its
// budget, and always makes progress: a command or syntax error consumes at
// least one byte, so a client cannot keep it busy for free.
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"CAPABILITY\r\n",
		"AUTHENTICATE \"XOAUTH2\" \"dXNlcj1hAWF1dGg9QmVhcmVyIHQBAQ==\"\r\n",
		"AUTHENTICATE {7+}\r\nXOAUTH2 {8}\r\nAQIDBA==\r\n",
		"AUTHENTICATE \"XOAUTH2\"\r\n\"AQ==\"\r\n{4+}\r\n*\r\n\r\n",
		"NOOP \"a\\\"b\"\r\nLOGOUT\r\n",
		"FOO x{6+}\r\nLOGOUT\r\nNOOP\r\n",
		"PUTSCRIPT \"x\" {4294967296}\r\n",
		"\r\n\n\r\nNOOP {0}\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		src := &countingReader{r: bytes.NewReader(in)}
		r := &reader{br: bufio.NewReaderSize(src, 16), maxLine: 256, maxSASL: 200, budget: 512}
		consumed := func() int { return src.n - r.br.Buffered() }
		responses := 0
		for i := 0; i < 16; i++ {
			before := consumed()
			var err error
			if responses > 0 {
				responses--
				_, err = r.readResponse()
			} else {
				var cmd *command
				cmd, err = r.readCommand()
				if err == nil {
					checkCommand(t, r, cmd)
					if cmd.name == "AUTHENTICATE" && len(cmd.args) == 1 {
						responses = 2
					}
				}
			}
			if r.left < -2 {
				t.Fatalf("a command held %d bytes, over its budget of %d", r.budget-r.left, r.budget)
			}
			if err != nil && !errors.As(err, new(*syntaxError)) {
				return // fatal: the connection ends
			}
			if consumed() <= before {
				t.Fatalf("no progress at %d", before)
			}
		}
	})
}

func checkCommand(t *testing.T, r *reader, cmd *command) {
	t.Helper()
	if cmd.name == "" || len(cmd.name) > maxVerbLen || strings.ToUpper(cmd.name) != cmd.name || !isLetters([]byte(cmd.name)) {
		t.Fatalf("bad command name %q", cmd.name)
	}
	if len(cmd.args) > maxArgs {
		t.Fatalf("%d arguments", len(cmd.args))
	}
	for i, a := range cmd.args {
		if len(a.value) > r.argLimit(cmd.name, i) {
			t.Fatalf("argument %d of %d bytes, over its cap", i, len(a.value))
		}
		if a.kind == argString && strings.IndexByte(a.value, 0) >= 0 {
			t.Fatalf("NUL in a string")
		}
		if a.kind == argAtom && (a.value == "" || strings.IndexFunc(a.value, func(c rune) bool { return c > 0x7f || !isAtomChar(byte(c)) }) >= 0) {
			t.Fatalf("bad atom %q", a.value)
		}
	}
}

// FuzzBackendResponse: the backend response parser never panics, keeps
// to its caps, and what it reports as raw is what it read (line ends made CRLF).
func FuzzBackendResponse(f *testing.F) {
	for _, s := range []string{
		"\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n\"SASL\" \"PLAIN LOGIN\"\r\n\"STARTTLS\"\r\nOK \"Dovecot ready.\"\r\n",
		"NO (ENCRYPT-NEEDED) \"Authentication disallowed.\"\r\n",
		"NO {13}\r\nWrong, sorry.\r\nOK (TAG {3}\r\na\"b) \"Done\"\r\n",
		"BYE (TRYLATER) \"Server shutting down.\"\r\n",
		"\"SIEVE\" {99999999}\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		src := &countingReader{r: bytes.NewReader(in)}
		br := bufio.NewReaderSize(src, 16)
		for i := 0; i < 8; i++ {
			before := src.n - br.Buffered()
			resp, err := readResponse(br)
			if err != nil {
				return
			}
			read := in[before : src.n-br.Buffered()]
			// Lines are passed on with CRLF whether they ended in CRLF or LF.
			noCR := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r"), nil) }
			if !bytes.Equal(noCR(resp.raw), noCR(read)) {
				t.Fatalf("raw %q, read %q", resp.raw, read)
			}
			if len(resp.raw) > 4*(maxBackendLiteral+64<<10) || len(resp.fields) > maxBackendTokens {
				t.Fatalf("over the caps")
			}
			if resp.status != "" && resp.status != "OK" && resp.status != "NO" && resp.status != "BYE" {
				t.Fatalf("status %q", resp.status)
			}
		}
	})
}
