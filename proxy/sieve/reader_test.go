package sieve

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func newTestReader(in string) *reader {
	return &reader{br: bufio.NewReaderSize(strings.NewReader(in), 16), maxLine: 256, maxSASL: 200, budget: 512, left: 512}
}

func atom(s string) arg                    { return arg{kind: argAtom, value: s} }
func str(s string) arg                     { return arg{kind: argString, value: s} }
func args(a ...arg) []arg                  { return a }
func cmdOf(name string, a ...arg) *command { return &command{name: name, args: a} }

func TestReadCommand(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want *command
	}{
		{"simple", "noop\r\n", cmdOf("NOOP")},
		{"bare LF", "CAPABILITY\n", cmdOf("CAPABILITY")},
		{"quoted", `AUTHENTICATE "XOAUTH2" "dXNlcj1h+/=="` + "\r\n", cmdOf("AUTHENTICATE", str("XOAUTH2"), str("dXNlcj1h+/=="))},
		{"escapes", `NOOP "a\"b\\c"` + "\r\n", cmdOf("NOOP", str(`a"b\c`))},
		{"empty string", `AUTHENTICATE "PLAIN" ""` + "\r\n", cmdOf("AUTHENTICATE", str("PLAIN"), str(""))},
		{"literal+", "AUTHENTICATE \"PLAIN\" {4+}\r\nAAAA\r\n", cmdOf("AUTHENTICATE", str("PLAIN"), str("AAAA"))},
		{"literal", "AUTHENTICATE {5}\r\nPLAIN {0}\r\n\r\n", cmdOf("AUTHENTICATE", str("PLAIN"), str(""))},
		{"literal with CRLF", "NOOP {4+}\r\na\r\nb\r\n", cmdOf("NOOP", str("a\r\nb"))},
		{"atoms", "XCLIENT ADDR=192.0.2.1 PORT=4711\r\n", cmdOf("XCLIENT", atom("ADDR=192.0.2.1"), atom("PORT=4711"))},
		{"utf8", "NOOP \"Müller\"\r\n", cmdOf("NOOP", str("Müller"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newTestReader(tt.in).readCommand()
			if err != nil {
				t.Fatalf("readCommand(%q) = %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("readCommand(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestReadCommandErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		in    string
		fatal error // nil: a syntax error
	}{
		{"empty line", "\r\n", nil},
		{"bad verb", "NO-OP\r\n", nil},
		{"long verb", strings.Repeat("A", 33) + "\r\n", nil},
		{"double space", "NOOP  x\r\n", nil},
		{"trailing space", "NOOP \r\n", nil},
		{"unterminated quote", "NOOP \"abc\r\n", nil},
		{"bad escape", "NOOP \"a\\b\"\r\n", nil},
		{"CR in quote", "NOOP \"a\rb\"\r\n", nil},
		{"paren", "NOOP (a)\r\n", nil},
		{"literal not at end", "NOOP {3} x\r\n", nil},
		{"literal bad size", "NOOP {3x}\r\n", nil},
		{"literal empty size", "NOOP {}\r\n", nil},
		{"NUL in literal", "NOOP {3+}\r\na\x00b\r\n", nil},
		{"string too long", "AUTHENTICATE \"X\" \"" + strings.Repeat("x", 201) + "\"\r\n", nil},
		{"too many arguments", "X a b c d e f g h i\r\n", nil},
		{"literal too large", "NOOP {1025+}\r\n", errLiteralTooLarge},
		{"SASL literal too large", "AUTHENTICATE \"X\" {201}\r\n", errLiteralTooLarge},
		{"literal over the budget", "AUTHENTICATE \"X\" {200}\r\n" + strings.Repeat("a", 200) + " {300}\r\n", errCommandTooLarge},
		{"line too long", "NOOP " + strings.Repeat("x", 300) + "\r\n", errLineTooLong},
		{"eof mid line", "NOO", io.ErrUnexpectedEOF},
		{"eof mid literal", "NOOP {10+}\r\nabc", io.ErrUnexpectedEOF},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := newTestReader(tt.in).readCommand()
			var se *syntaxError
			switch {
			case err == nil:
				t.Fatalf("readCommand(%q) = %+v, want an error", tt.in, cmd)
			case tt.fatal != nil && !errors.Is(err, tt.fatal):
				t.Fatalf("readCommand(%q) = %v, want %v", tt.in, err, tt.fatal)
			case tt.fatal == nil && !errors.As(err, &se):
				t.Fatalf("readCommand(%q) = %v, want a syntax error", tt.in, err)
			}
		})
	}
}

// TestReadCommandBudget: the lines and literals of one command share the
// budget; the next command has all of it again.
func TestReadCommandBudget(t *testing.T) {
	lit := "{150+}\r\n" + strings.Repeat("a", 150)
	r := newTestReader("NOOP " + lit + " " + lit + " " + lit + " " + lit + "\r\nNOOP\r\n")
	if _, err := r.readCommand(); !errors.Is(err, errCommandTooLarge) {
		t.Fatalf("readCommand() = %v, want errCommandTooLarge", err)
	}
	r = newTestReader("NOOP " + lit + " " + lit + "\r\nNOOP " + lit + " " + lit + "\r\n")
	for range 2 {
		if cmd, err := r.readCommand(); err != nil || len(cmd.args) != 2 {
			t.Fatalf("readCommand() = %+v, %v", cmd, err)
		}
	}
}

// TestReadCommandResync: after a syntax error the literals the command
// announced are skipped and the next command is read normally.
func TestReadCommandResync(t *testing.T) {
	r := newTestReader("FOO x{8+}\r\nLOGOUT\r\n {3}\r\nabc\r\nNOOP\r\n")
	var se *syntaxError
	if _, err := r.readCommand(); !errors.As(err, &se) {
		t.Fatalf("readCommand() = %v, want a syntax error", err)
	}
	if cmd, err := r.readCommand(); err != nil || cmd.name != "NOOP" {
		t.Fatalf("next command = %+v, %v", cmd, err)
	}
}

func TestReadResponse(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		err      bool
	}{
		{"\"dXNlcg==\"\r\n", "dXNlcg==", false},
		{"{4+}\r\nAQ==\r\n", "AQ==", false},
		{"{4}\r\nAQ==\r\n", "AQ==", false},
		{"dXNlcg==\r\n", "dXNlcg==", false},
		{"*\r\n", "*", false},
		{"\"*\"\r\n", "*", false},
		{"\r\n", "", false},
		{"\"\"\r\n", "", false},
		{"\"a\" \"b\"\r\n", "", true},
		{"(\r\n", "", true},
		{"{201+}\r\n", "", true},
	} {
		got, err := newTestReader(tt.in).readResponse()
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("readResponse(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// TestQuoteRoundTrip: what quote writes, the reader reads back.
func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", `a"b\c`, "line\r\nbreak", "Müller", strings.Repeat("x", 1025)} {
		r := newTestReader("NOOP " + quote(s) + "\r\n")
		r.maxLine, r.budget = 4096, 8192
		cmd, err := r.readCommand()
		if len(s) > maxString {
			if !errors.Is(err, errLiteralTooLarge) {
				t.Errorf("quote(%d bytes) read back: %v", len(s), err)
			}
			continue
		}
		if err != nil || len(cmd.args) != 1 || cmd.args[0].value != s {
			t.Errorf("quote(%q) read back as %+v, %v", s, cmd, err)
		}
	}
}
