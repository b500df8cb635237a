package imap

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

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// TestSecurityManyLiteralsCommand (issue 11, problem 2): one pre-login
// command made of many non-synchronizing literals, each under the literal
// cap, on the plaintext port before STARTTLS, once made mailgate hold ~16 MiB
// for 30 s. The command's byte budget ends it after two literals, with BYE.
func TestSecurityManyLiteralsCommand(t *testing.T) {
	fb := proxytest.StartFakeIMAPBackend(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Limits:        proxy.Limits{MaxPreloginPerIP: 50, ConnRate: -1},
	}, Options{Backend: proxy.Backend{Address: fb.Addr}})
	lit := strings.Repeat("x", 30000)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		c := proxytest.DialPlain(t, tp.plainAddr)
		c.Expect("* OK")
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.C.SetWriteDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c.C, "a1 LOGIN")
			for j := 0; j < 255; j++ {
				if _, err := fmt.Fprintf(c.C, " {%d+}\r\n%s", len(lit), lit); err != nil {
					return // closed by the server: expected
				}
			}
			io.WriteString(c.C, "\r\n")
		}()
		c.Expect("* BYE [TOOBIG] Command too large.")
		// Closed: EOF, or a reset (the server closed with our bytes unread).
		c.C.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c.BR); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection %d not closed after BYE", i)
		}
	}
	wg.Wait()
	// A synchronizing third literal is refused with BAD, before its bytes.
	c := proxytest.DialPlain(t, tp.plainAddr)
	c.Expect("* OK")
	c.Send("a2 LOGIN {1}")
	c.Expect("+ ")
	c.Send("x {1}")
	c.Expect("+ ")
	c.Send("y {1}")
	c.Expect("a2 BAD Too many literals")
}

// TestIMAPSyntaxErrorsThenBye: a syntax error is answered with BAD and the
// conversation goes on (it used to close silently); too many end with BYE.
func TestIMAPSyntaxErrorsThenBye(t *testing.T) {
	fb := proxytest.StartFakeIMAPBackend(t)
	tp := newTestProxy(t, proxy.Options{Authenticator: fakeAuthenticator}, Options{Backend: proxy.Backend{Address: fb.Addr}})
	c := proxytest.DialPlain(t, tp.plainAddr)
	c.Expect("* OK")
	c.Send("a1 LOGIN (")
	c.Expect("a1 BAD Unterminated list")
	c.Send("a2 NOOP")
	c.Expect("a2 OK")
	io.WriteString(c.C, "a3 X {3+}\r\nab\x00\r\n")
	c.Expect("a3 BAD NUL in literal")
	c.Send("a4 NOOP")
	c.Expect("a4 OK")
	c.Send("* NOOP")
	c.Expect("* BAD Invalid tag")
	c.Expect("* BYE Too many invalid commands.")
	c.ExpectClosed()
}

// TestALPNPerProtocol: the IMAP listeners accept the "imap" ALPN identifier
// and refuse "smtp" (a cross-protocol redirect, ALPACA); clients offering
// no ALPN are unaffected.
func TestALPNPerProtocol(t *testing.T) {
	fb := proxytest.StartFakeIMAPBackend(t)
	serverTLS, clientTLS := proxytest.TLSPair(t)
	serverTLS.NextProtos = []string{"imap", "smtp"} // as cmd/mailgate configures it
	tp := newTestProxy(t, proxy.Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS}, Options{Backend: proxy.Backend{Address: fb.Addr}})
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
