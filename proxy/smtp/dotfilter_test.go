package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestDotFilter(t *testing.T) {
	for _, tt := range []struct {
		name, in, out string
		done          bool
	}{
		{"empty body", ".\r\n", ".\r\n", true},
		{"plain", "a\r\nb\r\n.\r\nNOOP\r\n", "a\r\nb\r\n.\r\n", true},
		{"stuffed lines pass as they are", "..\r\n..x\r\n.\r\n", "..\r\n..x\r\n.\r\n", true},
		{"no end yet", "a\r\n.", "a\r\n.", false},
		{"bare LF", "a\nb\r\n.\r\n", "a\r\nb\r\n.\r\n", true},
		{"LF.LF stays content", "a\n.\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", true},
		{"CRLF.LF stays content", "a\r\n.\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", true},
		{"LF.CRLF stays content", "a\n.\r\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", true},
		{"CR.CR stays content", "a\r.\rb\r\n.\r\n", "a\r.\rb\r\n.\r\n", true},
		{"CRLF.CR stays content", "a\r\n.\rb\r\n.\r\n", "a\r\n.\rb\r\n.\r\n", true},
		{"CRLF.CRCRLF stays content", "a\r\n.\r\r\n.\r\n", "a\r\n.\r\r\n.\r\n", true},
		{"CRLF.NUL stays content", "a\r\n.\x00\r\n.\r\n", "a\r\n.\x00\r\n.\r\n", true},
		{"bare LF at the start", "\n.\r\n.\r\n", "\r\n..\r\n.\r\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var f dotFilter
			out, used, done := f.scan([]byte(tt.in), nil)
			if string(out) != tt.out || done != tt.done {
				t.Fatalf("scan(%q) = %q, done %v; want %q, %v", tt.in, out, done, tt.out, tt.done)
			}
			if done && !strings.HasSuffix(tt.in[:used], ".\r\n") {
				t.Fatalf("used %d of %q: not at the end of data", used, tt.in)
			}
		})
	}
}

// FuzzDotFilter: for any body, in any split, the filter
//   - gives the same output and the same end as in one piece,
//   - never sends a bare LF,
//   - sends the end of data (CRLF "." CRLF, or "." CRLF first) only as
//     the last bytes, when it reports the end,
//   - sends a body without bare LF exactly as it came.
func FuzzDotFilter(f *testing.F) {
	for _, s := range []string{".\r\n", "a\r\n.\r\n", "a\n.\nb", "\r\n.\r", "..\r\n.\r\n", "a\r.\r\n.\r\n", "\n\n.\n.\r\n", "x\r\r\n.\r\n"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		var whole dotFilter
		want, wantUsed, wantDone := whole.scan(in, nil)
		var parts dotFilter
		var got []byte
		used, done := 0, false
		step := int(split%16) + 1
		for i := 0; i < len(in) && !done; i += step {
			res, u, d := parts.scan(in[i:min(i+step, len(in))], nil)
			got, used, done = append(got, res...), i+u, d
		}
		if !done {
			used = len(in)
		}
		if !bytes.Equal(got, want) || used != wantUsed || done != wantDone {
			t.Fatalf("split by %d: %q used %d done %v; whole: %q used %d done %v", step, got, used, done, want, wantUsed, wantDone)
		}
		for i := range want {
			if want[i] == '\n' && (i == 0 || want[i-1] != '\r') {
				t.Fatalf("bare LF sent at %d: %q", i, want)
			}
		}
		end := bytes.Index(append([]byte("\r\n"), want...), []byte("\r\n.\r\n"))
		switch {
		case wantDone && end != len(want)-3:
			t.Fatalf("end of data sent at %d of %q", end, want)
		case !wantDone && end >= 0:
			t.Fatalf("end of data sent (at %d) without the end: %q", end, want)
		}
		if !bytes.Contains(stripCRLF(in[:wantUsed]), []byte{'\n'}) && !bytes.Equal(want, in[:wantUsed]) {
			t.Fatalf("a body without bare LF changed: %q -> %q", in[:wantUsed], want)
		}
	})
}

// stripCRLF removes every CRLF, leaving bare LFs.
func stripCRLF(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), nil) }

// FuzzParseMail: MAIL's arguments never panic the parser; what it accepts
// goes to the backend as one MAIL FROM line without an AUTH= parameter,
// naming the address it returned.
func FuzzParseMail(f *testing.F) {
	for _, s := range []string{"FROM:<a@b>", "FROM:<a@b> SIZE=10 AUTH=<>", "from: <\"x>y\"@b> BODY=8BITMIME", "FROM:a@b auth=x", "FROM:  AUTH=0", "FROM:<>", "FROM:<a@b", "FROM:"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, args []byte) {
		from, line, ok := parseMail(args)
		if !ok {
			return
		}
		if !bytes.HasPrefix(bytes.ToUpper(line), []byte("MAIL FROM:")) || bytes.ContainsAny(line, "\r\n") && !bytes.ContainsAny(args, "\r\n") {
			t.Fatalf("parseMail(%q) line %q", args, line)
		}
		_, params, _ := bytes.Cut(line[bytes.IndexByte(line, '<'):], []byte("> "))
		if bytes.Contains(line, []byte("<"+from+">")) {
			_, params, _ = bytes.Cut(line, []byte("<"+from+">"))
		}
		for _, p := range strings.Fields(string(params)) {
			if strings.HasPrefix(strings.ToUpper(p), "AUTH=") {
				t.Fatalf("parseMail(%q) kept %q", args, p)
			}
		}
		if !bytes.Contains(line, []byte(from)) {
			t.Fatalf("parseMail(%q) = %q, line %q lacks it", args, from, line)
		}
	})
}

// FuzzReadReply: whatever a backend sends, reading a reply never panics,
// never holds more than its caps, and what it returns is whole reply
// lines of one code.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 ok\r\n", "250-a\r\n250 b\r\n", "250-a\r\n550 b\r\n", "25", "999 x\r\n", "354\r\n", "250-" + strings.Repeat("x", 3000) + "\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		defer a.Close()
		go func() { b.Write(in); b.Close() }()
		be := &backendSession{conn: a, raw: a, br: bufio.NewReaderSize(a, 1024)}
		code, raw, err := be.readReply(time.Second)
		if err != nil {
			if errors.Is(err, errBadReply) && code != 0 {
				t.Fatalf("code %d with an error", code)
			}
			return
		}
		lines := strings.SplitAfter(string(raw), "\r\n")
		if len(lines) > maxReplyLines+1 || !strings.HasSuffix(string(raw), "\r\n") || code < 100 || code > 599 {
			t.Fatalf("readReply(%q) = %d %q", in, code, raw)
		}
	})
}

// BenchmarkDotFilter: the filter's cost per byte on a typical body (76-byte
// lines, a few stuffed).
func BenchmarkDotFilter(b *testing.B) {
	line := strings.Repeat("x", 74) + "\r\n"
	body := []byte(strings.Repeat(line+".."+line, bodyBufSize/(2*len(line)+2)))
	out := make([]byte, 0, 2*len(body))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var f dotFilter
		f.st = dsData
		out, _, _ = f.scan(body, out[:0])
	}
}
