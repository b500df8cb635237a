package pop3

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/auth"
)

// testReader reads in over a 16-byte buffer with small caps: lines of 32
// bytes, AUTH lines and responses of 128, 200 per command.
func testReader(in string) *reader {
	r := newReader(strings.NewReader(in), 16, 0, 0)
	r.Short, r.Long, r.Quota = 32, 128, 200
	return r
}

func TestReaderCommands(t *testing.T) {
	for _, tt := range []struct {
		in, verb, args string
		noArgs         bool
		err            error
	}{
		{in: "CAPA\r\n", verb: "CAPA", noArgs: true},
		{in: "capa\n", verb: "capa", noArgs: true},
		{in: "USER alice\r\n", verb: "USER", args: "alice"},
		{in: "PASS two words \r\n", verb: "PASS", args: "two words "},
		{in: "\r\n", verb: "", noArgs: true},
		{in: "NOOP " + strings.Repeat("x", 25) + "\r\n", verb: "NOOP", args: strings.Repeat("x", 25)},
		{in: "NOOP " + strings.Repeat("x", 26) + "\r\n", err: errLineTooLong},
		{in: "AuTh X " + strings.Repeat("x", 119) + "\r\n", verb: "AuTh", args: "X " + strings.Repeat("x", 119)},
		{in: "AUTH X " + strings.Repeat("x", 120) + "\r\n", err: errLineTooLong},
		{in: "AUTHX " + strings.Repeat("x", 40) + "\r\n", err: errLineTooLong},
		{in: "QUIT", err: io.ErrUnexpectedEOF},
		{in: "", err: io.EOF},
	} {
		cmd, err := testReader(tt.in).ReadCommand()
		switch {
		case tt.err != nil:
			if !errors.Is(err, tt.err) {
				t.Errorf("%q: err %v, want %v", tt.in, err, tt.err)
			}
		case err != nil || cmd.Verb != tt.verb || string(cmd.Args) != tt.args || (cmd.Args == nil) != tt.noArgs:
			t.Errorf("%q: got %q %q (nil %v), %v", tt.in, cmd.Verb, cmd.Args, cmd.Args == nil, err)
		}
	}
}

// TestReaderBudget: a command's SASL responses come off its budget; each
// command starts afresh.
func TestReaderBudget(t *testing.T) {
	long := strings.Repeat("A", 100)
	r := testReader("AUTH X " + long + "\r\n" + long + "\r\n")
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadResponse(); !errors.Is(err, errCommandTooLarge) {
		t.Fatalf("response over the budget: %v, want errCommandTooLarge", err)
	}
	r = testReader("AUTH X " + long + "\r\nCAPA\r\nAUTH X\r\n" + long + "\r\n")
	for _, want := range []string{"AUTH", "CAPA", "AUTH"} {
		if cmd, err := r.ReadCommand(); err != nil || cmd.Verb != want {
			t.Fatalf("command %q, %v; want %s", cmd.Verb, err, want)
		}
	}
	if resp, err := r.ReadResponse(); err != nil || string(resp) != long {
		t.Fatalf("response within a fresh budget: %q, %v", resp, err)
	}
}

func TestAuthArgs(t *testing.T) {
	for _, tt := range []struct {
		in, mech, ir string
		noIR         bool
		err          error
	}{
		{in: "XOAUTH2", mech: "XOAUTH2", noIR: true},
		{in: "PLAIN =", mech: "PLAIN", ir: ""},
		{in: "PLAIN " + b64("\x00a\x00b"), mech: "PLAIN", ir: "\x00a\x00b"},
		{in: "PLAIN *", err: auth.ErrCanceled},
		{in: "PLAIN !!", err: auth.ErrMalformed},
		{in: "PLAIN a b", err: errBadArgs},
		{in: " PLAIN", err: errBadArgs},
		{in: "", err: errBadArgs},
	} {
		mech, ir, err := authArgs([]byte(tt.in))
		switch {
		case tt.err != nil:
			if !errors.Is(err, tt.err) {
				t.Errorf("%q: err %v, want %v", tt.in, err, tt.err)
			}
		case err != nil || mech != tt.mech || string(ir) != tt.ir || (ir == nil) != tt.noIR:
			t.Errorf("%q: got %q %q (nil %v), %v", tt.in, mech, ir, ir == nil, err)
		}
	}
}

// FuzzPOP3Command feeds arbitrary bytes to the command reader as the
// front drives it (a SASL response after each AUTH) and to authArgs. The
// caps must hold, no line may carry a line feed, and nothing may panic.
func FuzzPOP3Command(f *testing.F) {
	for _, s := range []string{
		"CAPA\r\nSTLS\r\nQUIT\r\n",
		"USER alice@example.test\r\nPASS s3cret with spaces\r\n",
		"AUTH XOAUTH2 " + xoauth2("alice@example.test", "tok") + "\r\nAQ==\r\n",
		"AUTH OAUTHBEARER\r\n" + oauthbearer("", "tok") + "\r\n*\r\n",
		"AUTH\r\nauth plain =\r\n\n\n",
		"NOOP " + strings.Repeat("x", 40) + "\r\n",
		"AUTH X " + strings.Repeat("A", 150) + "\r\n",
		"AUTH " + strings.Repeat("A", 20) + "\r",
		"\x00\xff\r\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := testReader(string(in))
		for i := 0; i < 16; i++ {
			cmd, err := r.ReadCommand()
			if err != nil {
				return
			}
			n := len(cmd.Verb)
			if cmd.Args != nil {
				n += 1 + len(cmd.Args)
			}
			isAuth := strings.EqualFold(cmd.Verb, "AUTH") && cmd.Args != nil
			if n+1 > r.Short && !isAuth || n+1 > r.Long || strings.Contains(cmd.Verb, " ") ||
				strings.ContainsRune(cmd.Verb, '\n') || bytes.IndexByte(cmd.Args, '\n') >= 0 {
				t.Fatalf("command %q %q breaks the caps or holds a line feed", cmd.Verb, cmd.Args)
			}
			if !isAuth {
				continue
			}
			mech, _, err := authArgs(cmd.Args)
			if err == nil && (mech == "" || strings.Contains(mech, " ")) {
				t.Fatalf("authArgs(%q): mechanism %q", cmd.Args, mech)
			}
			resp, err := r.ReadResponse()
			if err != nil {
				return
			}
			if len(resp)+1 > r.Long || bytes.IndexByte(resp, '\n') >= 0 {
				t.Fatalf("response of %d bytes breaks the cap or holds a line feed", len(resp))
			}
		}
	})
}
