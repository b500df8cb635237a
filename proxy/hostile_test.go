package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSecurityManyLiteralsCommand (issue 11, problem 2): one pre-login
// command made of many non-synchronizing literals, each under the literal
// cap, on the plaintext port before STARTTLS, once made mailgate hold ~16 MiB
// for 30 s. The command's byte budget ends it after two literals, with BYE.
func TestSecurityManyLiteralsCommand(t *testing.T) {
	fb := startFakeIMAPBackend(t)
	tp := newTestProxy(t, Options{
		Authenticator: fakeAuthenticator,
		IMAPBackend:   Backend{Address: fb.addr},
		Limits:        Limits{MaxPreloginPerIP: 50, ConnRate: -1},
	})
	lit := strings.Repeat("x", 30000)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		c := dialPlain(t, tp.plainAddr)
		c.expect("* OK")
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c.c, "a1 LOGIN")
			for j := 0; j < 255; j++ {
				if _, err := fmt.Fprintf(c.c, " {%d+}\r\n%s", len(lit), lit); err != nil {
					return // closed by the server: expected
				}
			}
			io.WriteString(c.c, "\r\n")
		}()
		c.expect("* BYE [TOOBIG] Command too large.")
		// Closed: EOF, or a reset (the server closed with our bytes unread).
		c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c.br); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection %d not closed after BYE", i)
		}
	}
	wg.Wait()
	// A synchronizing third literal is refused with BAD, before its bytes.
	c := dialPlain(t, tp.plainAddr)
	c.expect("* OK")
	c.send("a2 LOGIN {1}")
	c.expect("+ ")
	c.send("x {1}")
	c.expect("+ ")
	c.send("y {1}")
	c.expect("a2 BAD Too many literals")
}

// TestIMAPSyntaxErrorsThenBye: a syntax error is answered with BAD and the
// conversation goes on (it used to close silently); too many end with BYE.
func TestIMAPSyntaxErrorsThenBye(t *testing.T) {
	fb := startFakeIMAPBackend(t)
	tp := newTestProxy(t, Options{Authenticator: fakeAuthenticator, IMAPBackend: Backend{Address: fb.addr}})
	c := dialPlain(t, tp.plainAddr)
	c.expect("* OK")
	c.send("a1 LOGIN (")
	c.expect("a1 BAD Unterminated list")
	c.send("a2 NOOP")
	c.expect("a2 OK")
	io.WriteString(c.c, "a3 X {3+}\r\nab\x00\r\n")
	c.expect("a3 BAD NUL in literal")
	c.send("a4 NOOP")
	c.expect("a4 OK")
	c.send("* NOOP")
	c.expect("* BAD Invalid tag")
	c.expect("* BYE Too many invalid commands.")
	c.expectClosed()
}

// TestALPNPerProtocol: the IMAP listeners accept the "imap" ALPN identifier
// and refuse "smtp" (a cross-protocol redirect, ALPACA); clients offering
// no ALPN are unaffected.
func TestALPNPerProtocol(t *testing.T) {
	fb := startFakeIMAPBackend(t)
	serverTLS, clientTLS := testTLS(t)
	serverTLS.NextProtos = []string{"imap", "smtp"} // as cmd/mailgate configures it
	tp := newTestProxy(t, Options{Authenticator: fakeAuthenticator, IMAPBackend: Backend{Address: fb.addr}, TLSConfig: serverTLS})
	for _, tc := range []struct {
		alpn []string
		ok   bool
	}{{nil, true}, {[]string{"imap"}, true}, {[]string{"smtp"}, false}, {[]string{"http/1.1"}, false}} {
		cfg := clientTLS.Clone()
		cfg.NextProtos = tc.alpn
		c, err := tls.Dial("tcp", tp.tlsAddr, cfg)
		if err == nil {
			c.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("ALPN %v: dial err = %v, want ok=%v", tc.alpn, err, tc.ok)
		}
	}
}
