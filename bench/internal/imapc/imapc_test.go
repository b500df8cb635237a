package imapc

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
)

func TestLiteralSize(t *testing.T) {
	for _, c := range []struct {
		line string
		n    int64
		ok   bool
	}{
		{"* 1 FETCH (BODY[] {1048576}", 1048576, true},
		{"a1 APPEND INBOX {12+}", 12, true},
		{"* OK done", 0, false},
		{"* 1 FETCH (FLAGS (\\Seen) {x}", 0, false},
		{"{-1}", 0, false},
	} {
		n, ok := literalSize(c.line)
		if n != c.n || ok != c.ok {
			t.Errorf("literalSize(%q) = %d, %v; want %d, %v", c.line, n, ok, c.n, c.ok)
		}
	}
}

// TestFetchCountsLiterals runs FetchAll against a scripted server.
func TestFetchCountsLiterals(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		defer server.Close()
		w := bufio.NewWriter(server)
		w.WriteString("* OK ready\r\n")
		w.Flush()
		r := bufio.NewReader(server)
		line, _ := r.ReadString('\n')
		tag, _, _ := strings.Cut(line, " ")
		body := strings.Repeat("x", 5000)
		for i := 1; i <= 3; i++ {
			w.WriteString("* " + string(rune('0'+i)) + " FETCH (BODY[] {5000}\r\n" + body + ")\r\n")
		}
		w.WriteString(tag + " OK Fetch completed.\r\n")
		w.Flush()
	}()
	c := &Conn{nc: client, r: bufio.NewReaderSize(client, 4096), limit: 5 * time.Second}
	line, err := c.readLine(nil)
	if err != nil || line != "* OK ready" {
		t.Fatalf("greeting %q, %v", line, err)
	}
	n, err := c.FetchAll()
	if err != nil {
		t.Fatal(err)
	}
	if n != 15000 {
		t.Errorf("counted %d literal bytes, want 15000", n)
	}
}

func TestVerbHidesCredentials(t *testing.T) {
	for _, cmd := range []string{"LOGIN user secret", "authenticate PLAIN AGZvbwBiYXI="} {
		if v := verb(cmd); strings.Contains(v, "secret") || strings.Contains(v, "AGZ") {
			t.Errorf("verb(%q) = %q leaks the credential", cmd, v)
		}
	}
	if !bytes.Equal([]byte(quote(`a"b\c`)), []byte(`"a\"b\\c"`)) {
		t.Errorf("quote = %s", quote(`a"b\c`))
	}
}
