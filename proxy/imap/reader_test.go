package imap

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/proxy"
)

func newTestReader(input string) (*reader, *int) {
	conts := new(int)
	return &reader{
		br:         bufio.NewReaderSize(strings.NewReader(input), 16),
		maxLine:    1024,
		maxLiteral: 64,
		budget:     4096,
		cont:       func() error { *conts++; return nil },
	}, conts
}

func atom(s string) argument        { return argument{Kind: argAtom, Value: s} }
func str(s string) argument         { return argument{Kind: argString, Value: s} }
func list(a ...argument) argument   { return argument{Kind: argList, List: a} }
func args(a ...argument) []argument { return a }

func TestReadCommand(t *testing.T) {
	for _, tt := range []struct {
		name  string
		in    string
		want  *command
		conts int
	}{
		{"simple", "a1 noop\r\n", &command{Tag: "a1", Name: "NOOP"}, 0},
		{"bare LF", "a1 CAPABILITY\n", &command{Tag: "a1", Name: "CAPABILITY"}, 0},
		{"tag with ]", "x]1 NOOP\r\n", &command{Tag: "x]1", Name: "NOOP"}, 0},
		{"authenticate IR", "A001 AUTHENTICATE XOAUTH2 dXNlcj1h+/==\r\n",
			&command{Tag: "A001", Name: "AUTHENTICATE", Args: args(atom("XOAUTH2"), atom("dXNlcj1h+/=="))}, 0},
		{"login quoted", `a LOGIN "al\"ice" "p\\w d"` + "\r\n",
			&command{Tag: "a", Name: "LOGIN", Args: args(str(`al"ice`), str(`p\w d`))}, 0},
		{"login sync literals", "a LOGIN {5}\r\nalice {3}\r\npw!\r\n",
			&command{Tag: "a", Name: "LOGIN", Args: args(str("alice"), str("pw!"))}, 2},
		{"login non-sync literal", "a LOGIN {5+}\r\nalice x\r\n",
			&command{Tag: "a", Name: "LOGIN", Args: args(str("alice"), atom("x"))}, 0},
		{"literal with CRLF inside", "a LOGIN {4+}\r\na\r\nb \"c\"\r\n",
			&command{Tag: "a", Name: "LOGIN", Args: args(str("a\r\nb"), str("c"))}, 0},
		{"id list", `a ID ("name" "Thunderbird" "version" NIL)` + "\r\n",
			&command{Tag: "a", Name: "ID", Args: args(list(str("name"), str("Thunderbird"), str("version"), atom("NIL")))}, 0},
		{"id nil", "a ID NIL\r\n", &command{Tag: "a", Name: "ID", Args: args(atom("NIL"))}, 0},
		{"empty list", "a ID ()\r\n", &command{Tag: "a", Name: "ID", Args: args(list())}, 0},
		{"nested", "a X (a (b) c)\r\n", &command{Tag: "a", Name: "X", Args: args(list(atom("a"), list(atom("b")), atom("c")))}, 0},
		{"utf8 quoted", "a ID (\"name\" \"Müller\")\r\n", &command{Tag: "a", Name: "ID", Args: args(list(str("name"), str("Müller")))}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, conts := newTestReader(tt.in)
			got, err := r.readCommand()
			if err != nil {
				t.Fatalf("readCommand(%q) = %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("readCommand(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if *conts != tt.conts {
				t.Fatalf("continuations = %d, want %d", *conts, tt.conts)
			}
		})
	}
}

func TestReadCommandErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in      string
		wantTag string // for syntax errors
		fatal   error  // for fatal errors
	}{
		{"empty line", "\r\n", "", nil},
		{"no command", "a1\r\n", "a1", nil},
		{"bad tag", "a+1 NOOP\r\n", "", nil},
		{"tag with quote", "\"a NOOP\r\n", "", nil},
		{"bad verb", "a1 NO*OP\r\n", "a1", nil},
		{"double space", "a1 LOGIN  x y\r\n", "a1", nil},
		{"trailing space", "a1 NOOP \r\n", "a1", nil},
		{"unterminated quote", "a1 LOGIN \"abc\r\n", "a1", nil},
		{"bad escape", "a1 LOGIN \"a\\b\"\r\n", "a1", nil},
		{"unterminated list", "a1 ID (\"a\" \"b\"\r\n", "a1", nil},
		{"stray paren", "a1 ID )\r\n", "a1", nil},
		{"literal not at end", "a1 LOGIN {3} x\r\n", "a1", nil},
		{"literal bad size", "a1 LOGIN {3x}\r\n", "a1", nil},
		{"literal empty size", "a1 LOGIN {}\r\n", "a1", nil},
		{"sync literal too large", "a1 LOGIN {65}\r\n", "a1", nil},
		{"NUL in literal", "a1 LOGIN {3+}\r\na\x00b\r\n", "a1", nil},
		{"too deep", "a1 X " + strings.Repeat("(", 9) + strings.Repeat(")", 9) + "\r\n", "a1", nil},
		{"8-bit atom", "a1 LOGIN \xff\r\n", "a1", nil},
		{"non-sync literal too large", "a1 LOGIN {65+}\r\n", "", errLiteralTooLarge},
		{"line too long", "a1 NOOP " + strings.Repeat("x", 1100) + "\r\n", "", proxy.ErrLineTooLong},
		{"eof mid line", "a1 NOO", "", io.ErrUnexpectedEOF},
		{"eof mid literal", "a1 LOGIN {10+}\r\nabc", "", io.ErrUnexpectedEOF},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestReader(tt.in)
			cmd, err := r.readCommand()
			if err == nil {
				t.Fatalf("readCommand(%q) = %+v, want an error", tt.in, cmd)
			}
			if tt.fatal != nil {
				if !errors.Is(err, tt.fatal) {
					t.Fatalf("readCommand(%q) error = %v, want %v", tt.in, err, tt.fatal)
				}
				return
			}
			var se *syntaxError
			if !errors.As(err, &se) {
				t.Fatalf("readCommand(%q) error = %v, want a syntax error", tt.in, err)
			}
			if se.tag != tt.wantTag {
				t.Fatalf("syntax error tag = %q, want %q", se.tag, tt.wantTag)
			}
		})
	}
}

// TestReadCommandResync: after a syntax error the next command is read normally.
func TestReadCommandResync(t *testing.T) {
	r, _ := newTestReader("a1 LOGIN {99}\r\na2 NOOP\r\n")
	if _, err := r.readCommand(); err == nil {
		t.Fatal("oversized sync literal accepted")
	}
	cmd, err := r.readCommand()
	if err != nil || cmd.Tag != "a2" || cmd.Name != "NOOP" {
		t.Fatalf("next command = %+v, %v", cmd, err)
	}
}

// FuzzReadCommand: the reader never panics, never returns a command that
// breaks its own invariants, and never reads past its caps.
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"a1 NOOP\r\n",
		"a LOGIN {5}\r\nalice {3+}\r\npw!\r\n",
		`a ID ("name" "x" "version" NIL)` + "\r\n",
		"A001 AUTHENTICATE OAUTHBEARER bixhPWFsaWNlQGV4YW1wbGUudGVzdCwBYXV0aD1CZWFyZXIgdG9rAQE=\r\n",
		"a X ((((a))))\r\n",
		"a LOGIN \"a\\\"b\" {0}\r\n\r\n",
		"\r\n\r\n",
		"a1 LOGIN {4294967296}\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := &reader{br: bufio.NewReaderSize(strings.NewReader(string(in)), 16), maxLine: 256, maxLiteral: 128, budget: 512}
		for i := 0; i < 8; i++ {
			cmd, err := r.readCommand()
			if err != nil {
				var se *syntaxError
				if errors.As(err, &se) {
					if se.tag != "" && !validTag(se.tag) {
						t.Fatalf("syntax error with invalid tag %q", se.tag)
					}
					continue
				}
				return
			}
			if !validTag(cmd.Tag) || cmd.Name == "" || strings.ToUpper(cmd.Name) != cmd.Name {
				t.Fatalf("bad command %+v", cmd)
			}
			var walk func([]argument, int)
			walk = func(a []argument, depth int) {
				if depth > maxListDepth {
					t.Fatalf("depth %d > %d", depth, maxListDepth)
				}
				for _, x := range a {
					if x.Kind == argList {
						walk(x.List, depth+1)
					} else if len(x.Value) > 256 && x.Kind == argAtom || len(x.Value) > 256 {
						t.Fatalf("argument longer than the caps: %d", len(x.Value))
					}
				}
			}
			walk(cmd.Args, 0)
		}
	})
}

// TestReaderBudget: a command's lines and literals together stay within the
// budget, whatever each is alone; a third literal is refused.
func TestReaderBudget(t *testing.T) {
	lit := strings.Repeat("x", 60)
	for _, tc := range []struct {
		name, in string
		budget   int
		want     error // nil: a syntax error is fine too when wantSyntax
		syntax   bool
	}{
		{"two literals fit", "a LOGIN {60+}\r\n" + lit + " {60+}\r\n" + lit + "\r\n", 4096, nil, false},
		{"third literal, non-sync", "a X {1+}\r\nx {1+}\r\nx {1+}\r\nx\r\n", 4096, errCommandTooLarge, false},
		{"third literal, sync", "a X {1}\r\nx {1}\r\nx {1}\r\n", 4096, nil, true},
		{"literals over budget, non-sync", "a LOGIN {60+}\r\n" + lit + " {60+}\r\n" + lit + "\r\n", 100, errLiteralTooLarge, false},
		{"line over budget", "a NOOP " + strings.Repeat("y", 200) + "\r\n", 100, errCommandTooLarge, false},
		{"literal then long line", "a LOGIN {60+}\r\n" + lit + " " + strings.Repeat("y", 60) + "\r\n", 100, errCommandTooLarge, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newTestReader(tc.in)
			r.budget = tc.budget
			_, err := r.readCommand()
			var se *syntaxError
			switch {
			case tc.syntax:
				if !errors.As(err, &se) {
					t.Fatalf("err = %v, want a syntax error", err)
				}
			case tc.want == nil && err != nil:
				t.Fatalf("err = %v, want none", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestReaderBudgetResetsPerCommand: the budget is per command, less what the
// connection keeps.
func TestReaderBudgetResetsPerCommand(t *testing.T) {
	line := "a NOOP " + strings.Repeat("y", 80) + "\r\n"
	r, _ := newTestReader(line + line + line)
	r.budget = 100
	for i := 0; i < 2; i++ {
		if _, err := r.readCommand(); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
	}
	r.kept = 50
	if _, err := r.readCommand(); !errors.Is(err, errCommandTooLarge) {
		t.Fatalf("with 50 bytes kept: err = %v, want errCommandTooLarge", err)
	}
}
