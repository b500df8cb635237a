package proxy

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
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// testTLS returns a server config with a fresh self-signed certificate for
// 127.0.0.1 and a client config that trusts it.
func testTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mailgate test"},
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
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	suiteLog.Write(p) // every proxy log line is searched for secrets (logscan_test.go)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testProxy struct {
	srv       *Server
	plainAddr string // STARTTLS listener
	tlsAddr   string // implicit TLS listener
	clientTLS *tls.Config
	logs      *syncBuffer
}

// newTestProxy starts a Server with an IMAP STARTTLS and an IMAPS listener on 127.0.0.1:0.
func newTestProxy(t *testing.T, opts Options) *testProxy {
	t.Helper()
	serverTLS, clientTLS := testTLS(t)
	if opts.TLSConfig == nil {
		opts.TLSConfig = serverTLS
	}
	logs := &syncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Master.User == "" {
		opts.Master = Master{User: "mailgate", Password: "master-secret"}
	}
	registerMasterSecrets(opts.Master)
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	tp := &testProxy{srv: srv, clientTLS: clientTLS, logs: logs}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, implicit := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("net.Listen() = %v", err)
		}
		if implicit {
			tp.tlsAddr = ln.Addr().String()
		} else {
			tp.plainAddr = ln.Addr().String()
		}
		wg.Add(1)
		go func() { defer wg.Done(); srv.ServeIMAP(ctx, ln, implicit) }()
	}
	t.Cleanup(func() {
		cancel()
		srv.Close()
		wg.Wait()
		for _, secret := range []string{"master-secret", testToken, badToken} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a secret (%q...) appears in the logs", secret[:4])
			}
		}
		checkLogText(t, logs.String())
		checkSuiteLog(t)
		if t.Failed() {
			t.Logf("proxy logs:\n%s", logs.String())
		}
	})
	return tp
}

const (
	testToken = "good-token-for-alice"
	badToken  = "bad-token-xyz"
	downToken = "provider-down-token"
)

// fakeAuthenticator accepts testToken for alice@example.test and
// "bob-token" for bob; downToken means the provider is down.
var fakeAuthenticator = AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
	var user string
	switch c.Token {
	case testToken:
		user = "alice@example.test"
	case "bob-token":
		user = "bob@example.test"
	case "nobody-token":
		user = "nobody@example.test"
	case downToken:
		return auth.Identity{}, auth.ErrUnavailable
	default:
		return auth.Identity{}, auth.ErrInvalidCredentials
	}
	if c.User != "" && !strings.EqualFold(c.User, user) {
		return auth.Identity{}, auth.ErrInvalidCredentials
	}
	return auth.Identity{User: user, Mechanism: c.Mechanism, Source: "fake"}, nil
})

func xoauth2(user, token string) string {
	registerSecret("a token", token)
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
	registerSecret("an XOAUTH2 message", ir)
	return ir
}

func oauthbearer(user, token string) string {
	a := ""
	if user != "" {
		a = "a=" + user
	}
	registerSecret("a token", token)
	ir := base64.StdEncoding.EncodeToString([]byte("n," + a + ",\x01host=127.0.0.1\x01port=993\x01auth=Bearer " + token + "\x01\x01"))
	registerSecret("an OAUTHBEARER message", ir)
	return ir
}

// tconn is a scripted client connection.
type tconn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialPlain(t *testing.T, addr string) *tconn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("net.Dial() = %v", err)
	}
	t.Cleanup(func() { c.Close(); checkSuiteLog(t) })
	return &tconn{t: t, c: c, br: bufio.NewReader(c)}
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *tconn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("tls.Dial() = %v", err)
	}
	t.Cleanup(func() { c.Close(); checkSuiteLog(t) })
	return &tconn{t: t, c: c, br: bufio.NewReader(c)}
}

func (tc *tconn) send(line string) {
	tc.t.Helper()
	tc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(tc.c, line+"\r\n"); err != nil {
		tc.t.Fatalf("write %q: %v", line, err)
	}
}

// readLine returns the next line without CRLF.
func (tc *tconn) readLine() string {
	tc.t.Helper()
	tc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := tc.br.ReadString('\n')
	if err != nil {
		tc.t.Fatalf("read: %v (partial %q)", err, line)
	}
	return strings.TrimRight(line, "\r\n")
}

// expect reads the next line and checks its prefix.
func (tc *tconn) expect(prefix string) string {
	tc.t.Helper()
	line := tc.readLine()
	if !strings.HasPrefix(line, prefix) {
		tc.t.Fatalf("got %q, want prefix %q", line, prefix)
	}
	return line
}

// expectClosed checks that the server closes the connection.
func (tc *tconn) expectClosed() {
	tc.t.Helper()
	tc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(tc.br)
	if err != nil {
		tc.t.Fatalf("connection not closed: %v (read %q)", err, rest)
	}
	if len(rest) > 0 {
		tc.t.Fatalf("unexpected bytes before close: %q", rest)
	}
}

// starttls upgrades a plain connection after the greeting.
func (tc *tconn) starttls(cfg *tls.Config) {
	tc.t.Helper()
	tc.send("s1 STARTTLS")
	tc.expect("s1 OK")
	c := tls.Client(tc.c, cfg)
	if err := c.Handshake(); err != nil {
		tc.t.Fatalf("handshake: %v", err)
	}
	tc.c, tc.br = c, bufio.NewReader(c)
}
