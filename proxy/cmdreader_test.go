package proxy

import (
	"io"
	"strings"
	"testing"
)

// TestCommandReaderRawAndUnread: bulk bytes read past the buffer and
// bytes given back come out in stream order, commands after them intact.
func TestCommandReaderRawAndUnread(t *testing.T) {
	r := NewCommandReader(strings.NewReader("DATA\r\nbody...END\r\nNOOP\r\nQUIT\r\n"), 16, 64, 64, 0)
	if cmd, err := r.ReadCommand(); err != nil || cmd.Verb != "DATA" || cmd.Args != nil {
		t.Fatalf("ReadCommand = %+v, %v", cmd, err)
	}
	p := make([]byte, 64)
	n, err := r.ReadRaw(p) // the buffered rest of the first 16 bytes
	if err != nil || string(p[:n]) != "body...END" {
		t.Fatalf("ReadRaw = %q, %v", p[:n], err)
	}
	n, _ = r.ReadRaw(p)
	got := string(p[:n])
	i := strings.Index(got, "NOOP")
	if i < 0 {
		t.Fatalf("ReadRaw past the buffer = %q", got)
	}
	r.Unread(p[i:n])
	if !r.Buffered() {
		t.Fatal("Buffered() = false after Unread")
	}
	for _, want := range []string{"NOOP", "QUIT"} {
		if cmd, err := r.ReadCommand(); err != nil || cmd.Verb != want {
			t.Fatalf("ReadCommand = %+v, %v; want %s", cmd, err, want)
		}
	}
	if _, err := r.ReadCommand(); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
}
