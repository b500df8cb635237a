package sieve

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Test tokens of the fake authenticator.
const (
	goodToken  = "good-token"      // alice@example.test
	downToken  = "provider-down"   // the provider does not answer
	noneToken  = "no-such-mailbox" // nobody@example.test
	shortToken = "short-token"     // alice@example.test, expires in shortLife
)

// shortLife is shortToken's lifetime.
const shortLife = 300 * time.Millisecond

// ioTimeout bounds every read and write of the test clients.
const ioTimeout = 10 * time.Second

// testTLS returns a server config with a fresh self-signed certificate for
// 127.0.0.1, a client config that trusts it, and the certificate as PEM.
func testTLS(t testing.TB) (server, client *tls.Config, certPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mailgate sieve test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
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

// fakeAuth accepts the test tokens and counts its calls.
type fakeAuth struct{ calls atomic.Int32 }

func (a *fakeAuth) Authenticate(_ context.Context, c auth.Credentials) (auth.Identity, error) {
	a.calls.Add(1)
	user := map[string]string{goodToken: "alice@example.test", noneToken: "nobody@example.test",
		shortToken: "alice@example.test"}[c.Token]
	switch {
	case c.Token == downToken:
		return auth.Identity{}, auth.ErrUnavailable
	case user == "" || (c.User != "" && c.User != user):
		return auth.Identity{}, auth.ErrInvalidCredentials
	}
	id := auth.Identity{User: user, Source: "test"}
	if c.Token == shortToken {
		id.Expiry = time.Now().Add(shortLife)
	}
	return id, nil
}

// testFront is a proxy.Server serving the front on a STARTTLS and an
// implicit TLS listener.
type testFront struct {
	srv           *proxy.Server
	front         *Front
	addr, tlsAddr string
	clientTLS     *tls.Config
	certPEM       []byte
	logs          *syncBuffer
	auth          *fakeAuth
	serveDone     chan struct{}
}

// newTestFront starts a front; popts.Authenticator nil: a fakeAuth.
func newTestFront(t *testing.T, popts proxy.Options, sopts Options) *testFront {
	t.Helper()
	serverTLS, clientTLS, certPEM := testTLS(t)
	tf := &testFront{clientTLS: clientTLS, certPEM: certPEM, logs: &syncBuffer{}, serveDone: make(chan struct{})}
	if popts.Authenticator == nil {
		tf.auth = &fakeAuth{}
		popts.Authenticator = tf.auth
	}
	popts.TLSConfig = serverTLS
	popts.Logger = slog.New(slog.NewTextHandler(tf.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := proxy.New(popts)
	if err != nil {
		t.Fatalf("proxy.New() = %v", err)
	}
	tf.srv, tf.front = srv, New(srv, sopts)
	ctx, cancel := context.WithCancel(context.Background())
	tf.addr = tf.serve(t, ctx, false)
	tf.tlsAddr = tf.serve(t, ctx, true)
	t.Cleanup(func() {
		cancel()
		srv.Close()
		<-tf.serveDone
		<-tf.serveDone
	})
	return tf
}

func (tf *testFront) serve(t *testing.T, ctx context.Context, implicitTLS bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() = %v", err)
	}
	go func() {
		tf.srv.Serve(ctx, ln, implicitTLS, tf.front)
		tf.serveDone <- struct{}{}
	}()
	return ln.Addr().String()
}

// tconn is a test client.
type tconn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dial connects to addr, from local if not "" (an address on lo).
func dial(t *testing.T, local, addr string) *tconn {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &tconn{t: t, c: c, r: bufio.NewReader(c)}
}

// dialTLS connects to an implicit TLS listener.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) *tconn {
	t.Helper()
	c := dial(t, "", addr)
	tc := tls.Client(c.c, cfg)
	c.c, c.r = tc, bufio.NewReader(tc)
	return c
}

func (c *tconn) send(s string) {
	c.t.Helper()
	c.write(s + "\r\n")
}

func (c *tconn) write(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// line reads one line without its CRLF.
func (c *tconn) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
}

var literalRE = regexp.MustCompile(`\{(\d+)\+?\}$`)

// resp reads lines up to an OK, NO or BYE response and returns the lines
// before it and that response; a literal ending a line is read along.
func (c *tconn) resp() (data []string, final string) {
	c.t.Helper()
	for {
		l := c.line()
		if m := literalRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			buf := make([]byte, n)
			if _, err := io.ReadFull(c.r, buf); err != nil {
				c.t.Fatalf("read literal: %v", err)
			}
			l += "\r\n" + string(buf) + c.line()
		}
		if strings.HasPrefix(l, "OK") || strings.HasPrefix(l, "NO") || strings.HasPrefix(l, "BYE") {
			return data, l
		}
		data = append(data, l)
	}
}

// expect reads a response and checks that its final line is want; it
// returns the lines before it.
func (c *tconn) expect(want string) []string {
	c.t.Helper()
	data, final := c.resp()
	if final != want {
		c.t.Fatalf("got %q (after %q), want %q", final, data, want)
	}
	return data
}

// cmd sends s and expects want.
func (c *tconn) cmd(s, want string) []string {
	c.t.Helper()
	c.send(s)
	return c.expect(want)
}

// starttls runs STARTTLS and returns the capabilities sent after it.
func (c *tconn) starttls(cfg *tls.Config) []string {
	c.t.Helper()
	c.cmd("STARTTLS", `OK "Begin TLS negotiation now."`)
	c.handshake(cfg)
	return c.expect(`OK "TLS negotiation successful."`)
}

func (c *tconn) handshake(cfg *tls.Config) {
	c.t.Helper()
	if c.r.Buffered() > 0 {
		c.t.Fatalf("bytes after STARTTLS's OK")
	}
	tc := tls.Client(c.c, cfg)
	tc.SetDeadline(time.Now().Add(ioTimeout))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.c, c.r = tc, bufio.NewReader(tc)
}

// expectClosed checks that the server closes the connection (reading no
// more than a few bytes).
func (c *tconn) expectClosed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	b, err := c.r.ReadString('\n')
	if err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		c.t.Fatalf("connection still open (read %q, %v)", b, err)
	}
}

// greeted reads the greeting and returns its capability lines.
func (c *tconn) greeted() []string {
	c.t.Helper()
	return c.expect(`OK "mailgate ready."`)
}

// loggedIn connects to tf's STARTTLS listener, runs STARTTLS and logs in
// as alice with XOAUTH2.
func (tf *testFront) loggedIn(t *testing.T) *tconn {
	t.Helper()
	c := dial(t, "", tf.addr)
	c.greeted()
	c.starttls(tf.clientTLS)
	c.cmd(`AUTHENTICATE "XOAUTH2" "`+b64(auth.EncodeXOAUTH2("alice@example.test", goodToken))+`"`, `OK "Logged in."`)
	return c
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// waitFor polls cond until it holds or fails t after ioTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
