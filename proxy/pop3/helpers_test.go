package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// TestMain sends slog.Default (package auth's logger when none is given)
// to suiteLog, which testFront's cleanup searches for secrets too.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.MultiWriter(suiteLog, os.Stderr), nil)))
	testenv.Main(m)
}

// suiteLog is everything logged through slog.Default.
var suiteLog = &syncBuffer{}

// Tokens the fake authenticator knows.
const (
	goodToken = "good-token-for-alice"
	badToken  = "bad-token-xyz"
	downToken = "provider-down-token"
	masterPW  = "master-secret"
)

// fakeAuthenticator accepts goodToken for alice, says the provider is down
// for downToken and refuses anything else.
var fakeAuthenticator = proxy.AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
	switch c.Token {
	case goodToken:
		return auth.Identity{User: "alice@example.test", Source: "fake"}, nil
	case downToken:
		return auth.Identity{}, auth.ErrUnavailable
	}
	return auth.Identity{}, auth.ErrInvalidCredentials
})

// testTLS returns a server config for 127.0.0.1, a client config trusting
// it, and its certificate as a PEM file (for curl --cacert).
func testTLS(t testing.TB) (server, client *tls.Config, pemFile string) {
	t.Helper()
	cert, err := certs.SelfSigned("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	pemFile = filepath.Join(t.TempDir(), "proxy.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, pemFile
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testFront is a Server with the POP3 front on a STLS and an implicit-TLS
// listener (127.0.0.1:0).
type testFront struct {
	srv       *proxy.Server
	front     *Front
	plainAddr string // 110-style: STLS before authentication
	tlsAddr   string // 995-style: implicit TLS
	clientTLS *tls.Config
	certFile  string
	logs      *syncBuffer
	secrets   []string // must not appear in the logs
}

// newTestFront starts a front for opts (defaults: fakeAuthenticator, the
// master user "mailgate") and checks at cleanup that no secret was logged.
func newTestFront(t *testing.T, opts proxy.Options, fopts Options) *testFront {
	t.Helper()
	serverTLS, clientTLS, certFile := testTLS(t)
	tf := &testFront{clientTLS: clientTLS, certFile: certFile, logs: &syncBuffer{}}
	if opts.TLSConfig == nil {
		opts.TLSConfig = serverTLS
	}
	if opts.Authenticator == nil {
		opts.Authenticator = fakeAuthenticator
	}
	if opts.Master.User == "" {
		opts.Master = proxy.Master{User: "mailgate", Password: masterPW}
	}
	opts.Logger = slog.New(slog.NewTextHandler(tf.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := proxy.New(opts)
	if err != nil {
		t.Fatalf("proxy.New() = %v", err)
	}
	tf.srv, tf.front = srv, New(srv, fopts)
	tf.secrets = []string{opts.Master.Password, goodToken, badToken, downToken}
	tf.serve(t)
	return tf
}

// serve starts both listeners and stops them at cleanup.
func (tf *testFront) serve(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, implicit := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("net.Listen() = %v", err)
		}
		if implicit {
			tf.tlsAddr = ln.Addr().String()
		} else {
			tf.plainAddr = ln.Addr().String()
		}
		wg.Add(1)
		go func() { defer wg.Done(); tf.srv.Serve(ctx, ln, implicit, tf.front) }()
	}
	t.Cleanup(func() {
		cancel()
		tf.srv.Close()
		wg.Wait()
		logs := tf.logs.String() + suiteLog.String()
		for _, s := range tf.secrets {
			if s != "" && strings.Contains(logs, s) {
				t.Errorf("a secret (%.4s...) appears in the proxy logs", s)
			}
		}
		if t.Failed() {
			t.Logf("proxy logs:\n%s", logs)
		}
	})
}

// client is a scripted POP3 client.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

const ioTimeout = 10 * time.Second

func dialPlain(t *testing.T, addr string) *client {
	t.Helper()
	return dialFrom(t, "", addr)
}

// dialFrom connects from the loopback address local ("" for any).
func dialFrom(t *testing.T, local, addr string) *client {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("Dial(%s) = %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *client {
	t.Helper()
	c := dialPlain(t, addr)
	c.upgrade(cfg)
	return c
}

// upgrade runs the TLS handshake on the connection.
func (c *client) upgrade(cfg *tls.Config) {
	c.t.Helper()
	tc := tls.Client(c.c, cfg)
	tc.SetDeadline(time.Now().Add(ioTimeout))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.c, c.br = tc, bufio.NewReader(tc)
}

func (c *client) send(line string) {
	c.t.Helper()
	c.write(line + "\r\n")
}

func (c *client) write(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// line reads one line (without CRLF) within ioTimeout.
func (c *client) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// expect reads a line and checks that it is want, or starts with it when
// want ends in "*".
func (c *client) expect(want string) string {
	c.t.Helper()
	l := c.line()
	if p, ok := strings.CutSuffix(want, "*"); ok && strings.HasPrefix(l, p) || l == want {
		return l
	}
	c.t.Fatalf("got %q, want %q", l, want)
	return ""
}

// multi reads a multi-line reply's lines after its +OK line, up to ".".
func (c *client) multi() []string {
	c.t.Helper()
	var lines []string
	for l := c.line(); l != "."; l = c.line() {
		lines = append(lines, l)
	}
	return lines
}

// capa sends CAPA and returns the capability lines.
func (c *client) capa() []string {
	c.t.Helper()
	c.send("CAPA")
	c.expect("+OK Capability list follows")
	return c.multi()
}

// expectClosed checks that the server closes the connection (no more lines).
func (c *client) expectClosed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	l, err := c.br.ReadString('\n')
	if err == nil {
		c.t.Fatalf("got %q, want the connection closed", l)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatal("connection still open")
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func xoauth2(user, token string) string { return b64(string(auth.EncodeXOAUTH2(user, token))) }

func oauthbearer(user, token string) string {
	return b64(string(auth.EncodeOAUTHBEARER(user, token)))
}
