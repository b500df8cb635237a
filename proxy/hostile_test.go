package proxy

import (
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
