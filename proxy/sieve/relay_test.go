package sieve

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// nopConn is a net.Conn that accepts every write.
type nopConn struct{ net.Conn }

func (nopConn) Write(p []byte) (int, error) { return len(p), nil }

// TestResponseTracker: a goodbye only between two lines, never inside a
// literal, whatever the chunks the stream comes in.
func TestResponseTracker(t *testing.T) {
	const script = "require \"fileinto\";\r\nfileinto \"Filed\";\r\n"
	for _, tt := range []struct {
		name   string
		chunks []string
		safe   bool
	}{
		{"nothing yet", nil, true},
		{"after a line", []string{"OK \"Logged in.\"\r\n"}, true},
		{"mid line", []string{"\"mailgate\" ACT"}, false},
		{"literal announced", []string{"{40}\r\n"}, false},
		{"inside a literal ending in LF", []string{"{40}\r\nrequire \"fileinto\";\r\n"}, false},
		{"after the literal, mid line", []string{"{40}\r\n" + script}, false},
		{"after the literal's line", []string{"{40}\r\n" + script, "\r\n"}, true},
		{"after the response", []string{"{40}\r\n" + script + "\r\nOK \"Getscript completed.\"\r\n"}, true},
		{"split spec", []string{"{4", "0", "+}", "\r", "\n", script[:10]}, false},
		{"split, complete", []string{"{4", "0}\r\n", script[:30], script[30:], "\r\nOK\r\n"}, true},
		{"long line then literal", []string{strings.Repeat("x", 100) + " {3}\r\n", "abc"}, false},
		{"braces in text", []string{"NO \"{oops}\"\r\n"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := &responseTracker{Conn: nopConn{}, lineStart: true}
			for _, c := range tt.chunks {
				tr.Write([]byte(c))
			}
			bye := tr.goodbye(proxy.EndShutdown)
			if got := bye != nil; got != tt.safe {
				t.Fatalf("goodbye = %q, want one: %v", bye, tt.safe)
			}
		})
	}
}

func TestGoodbyes(t *testing.T) {
	tr := &responseTracker{Conn: nopConn{}, lineStart: true}
	for why, want := range map[string]string{
		proxy.EndShutdown: `BYE (TRYLATER) "Server shutting down."`,
		proxy.EndExpired:  `BYE "Access token expired, log in again."`,
		proxy.EndRevoked:  `BYE "Access token no longer valid, log in again."`,
	} {
		if got := string(tr.goodbye(why)); got != want+"\r\n" {
			t.Errorf("goodbye(%q) = %q, want %q", why, got, want)
		}
	}
}

func TestBackendResponse(t *testing.T) {
	for _, tt := range []struct {
		in                 string
		status, code, text string
		fields             []string
	}{
		{`"SASL" "PLAIN LOGIN"` + "\r\n", "", "", "", []string{"SASL", "PLAIN LOGIN"}},
		{`"STARTTLS"` + "\n", "", "", "", []string{"STARTTLS"}},
		{`OK "Logged in."` + "\r\n", "OK", "", "Logged in.", nil},
		{`ok`, "OK", "", "", nil},
		{`NO (ENCRYPT-NEEDED) "Needs TLS."` + "\r\n", "NO", "ENCRYPT-NEEDED", "Needs TLS.", nil},
		{`NO (QUOTA/MAXSIZE "x") "Too big."` + "\r\n", "NO", "QUOTA/MAXSIZE", "Too big.", nil},
		{"NO {5}\r\nab\r\nc\r\n", "NO", "", "ab\r\nc", nil},
		{"BYE (TRYLATER) {3}\r\nbye\r\n", "BYE", "TRYLATER", "bye", nil},
		{"\"SIEVE\" {9}\r\nfileinto \r\n", "", "", "", []string{"SIEVE", "fileinto "}},
	} {
		in := tt.in
		if !strings.HasSuffix(in, "\n") {
			in += "\r\n"
		}
		r, err := readResponse(bufio.NewReader(strings.NewReader(in)))
		if err != nil || r.status != tt.status || r.code != tt.code || r.text != tt.text || strings.Join(r.fields, "|") != strings.Join(tt.fields, "|") {
			t.Errorf("readResponse(%q) = %+v, %v", tt.in, r, err)
		}
	}
	for _, in := range []string{"\r\n", "MAYBE\r\n", "NO {70000}\r\n", "NO \"unterminated\r\n", "\"a\" {3} x\r\n"} {
		if r, err := readResponse(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("readResponse(%q) = %+v, want an error", in, r)
		}
	}
}

// TestTokenExpiryRelayed: with session lifetimes bound to the token, a
// relayed session whose token expires gets BYE and is closed.
func TestTokenExpiryRelayed(t *testing.T) {
	tf, _ := setupFake(t, proxy.Options{Lifetime: proxy.LifetimeOptions{Mode: proxy.LifetimeToken}})
	c := dial(t, "", tf.addr)
	c.greeted()
	c.starttls(tf.clientTLS)
	c.cmd(`AUTHENTICATE "XOAUTH2" "`+b64(auth.EncodeXOAUTH2("alice@example.test", shortToken))+`"`, `OK "Logged in."`)
	c.cmd("LISTSCRIPTS", `OK "Listscripts completed."`)
	c.expect(`BYE "Access token expired, log in again."`)
	c.expectClosed()
}
