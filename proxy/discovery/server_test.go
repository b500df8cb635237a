package discovery

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestNewServerLimits(t *testing.T) {
	s := NewServer(http.NotFoundHandler(), nil)
	if s.ReadHeaderTimeout != serverReadHeaderTimeout || s.ReadTimeout != serverReadTimeout ||
		s.WriteTimeout != serverWriteTimeout || s.IdleTimeout != serverIdleTimeout ||
		s.MaxHeaderBytes != serverMaxHeaderBytes || s.ErrorLog == nil {
		t.Errorf("server = %+v", s)
	}
	for name, d := range map[string]time.Duration{"ReadHeaderTimeout": s.ReadHeaderTimeout, "ReadTimeout": s.ReadTimeout,
		"WriteTimeout": s.WriteTimeout, "IdleTimeout": s.IdleTimeout} {
		if d <= 0 || d > time.Minute {
			t.Errorf("%s = %v, want a bound of at most a minute", name, d)
		}
	}
}

// serveTest runs s on 127.0.0.1 and returns its address.
func serveTest(t *testing.T, s *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve() = %v", err)
		}
	})
	return ln.Addr().String()
}

// TestNewServerSlowHeaders: a client that trickles its headers is cut off at
// ReadHeaderTimeout (shortened here), with no reply.
func TestNewServerSlowHeaders(t *testing.T) {
	s := NewServer(NewHandler(func() Site { return oauthSite() }, HandlerOptions{}), nil)
	s.ReadHeaderTimeout = 200 * time.Millisecond
	c, err := net.Dial("tcp", serveTest(t, s))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, "GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: example.com\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	go func() { // keep trickling a header line, byte by byte, until cut off
		for _, b := range []byte("X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") {
			time.Sleep(20 * time.Millisecond)
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	// The server closes the connection; whether it says a word first (a
	// 4xx when a late byte lands on a half-read line) does not matter, but
	// it must never answer the request.
	b, err := io.ReadAll(c)
	var ne net.Error
	if (errors.As(err, &ne) && ne.Timeout()) || bytes.HasPrefix(b, []byte("HTTP/1.1 2")) {
		t.Fatalf("read %q, %v; want the server to close the connection", b, err)
	}
	if d := time.Since(start); d < s.ReadHeaderTimeout*3/4 || d > 2*time.Second {
		t.Errorf("cut off after %v, want about %v", d, s.ReadHeaderTimeout)
	}
}

// TestNewServerHeaderCap: headers over MaxHeaderBytes get 431.
func TestNewServerHeaderCap(t *testing.T) {
	s := NewServer(NewHandler(func() Site { return oauthSite() }, HandlerOptions{}), nil)
	c, err := net.Dial("tcp", serveTest(t, s))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: example.com\r\nX-Big: " +
		strings.Repeat("a", 2*serverMaxHeaderBytes) + "\r\n\r\n"
	go io.WriteString(c, req)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 431 ") {
		t.Errorf("reply %q, %v; want 431", line, err)
	}
}
