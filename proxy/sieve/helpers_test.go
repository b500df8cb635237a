package sieve

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// TestMain points slog.Default (package auth's logger when none is given)
// at the suite log, which is searched for secrets (proxytest.LogToSuite).
func TestMain(m *testing.M) {
	proxytest.LogToSuite()
	testenv.Main(m)
}

// Test tokens of the fake authenticator (proxytest.FakeAuthenticate, but
// for shortToken).
const (
	goodToken  = proxytest.TestToken // alice@example.test
	downToken  = proxytest.DownToken // the provider does not answer
	noneToken  = "nobody-token"      // nobody@example.test
	shortToken = "short-token"       // alice@example.test, expires in shortLife
)

// shortLife is shortToken's lifetime.
const shortLife = 300 * time.Millisecond

// ioTimeout bounds the wait for the server to close a connection (the
// proxytest.Conn reads and writes have their own 10 s deadlines).
const ioTimeout = 10 * time.Second

// testTLS returns a server config with a fresh self-signed certificate for
// 127.0.0.1, a client config that trusts it, and the certificate as PEM.
func testTLS(t testing.TB) (server, client *tls.Config, certPEM []byte) {
	t.Helper()
	server, client = proxytest.TLSPair(t)
	return server, client, proxytest.CertPEM(server)
}

// fakeAuth accepts the test tokens and counts its calls.
type fakeAuth struct{ calls atomic.Int32 }

func (a *fakeAuth) Authenticate(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
	a.calls.Add(1)
	if c.Token != shortToken {
		return proxytest.FakeAuthenticate(ctx, c)
	}
	if c.User != "" && c.User != "alice@example.test" {
		return auth.Identity{}, auth.ErrInvalidCredentials
	}
	return auth.Identity{User: "alice@example.test", Source: "test", Expiry: time.Now().Add(shortLife)}, nil
}

// testFront is a proxy.Server serving the front on a STARTTLS and an
// implicit TLS listener.
type testFront struct {
	srv           *proxy.Server
	front         *Front
	addr, tlsAddr string
	clientTLS     *tls.Config
	certPEM       []byte
	logs          *proxytest.SyncBuffer
	auth          *fakeAuth
}

// newTestFront starts a front; popts.Authenticator nil: a fakeAuth. Its
// cleanup searches the logs for secrets.
func newTestFront(t *testing.T, popts proxy.Options, sopts Options) *testFront {
	t.Helper()
	serverTLS, clientTLS, certPEM := testTLS(t)
	logger, logs := proxytest.NewLogger()
	tf := &testFront{clientTLS: clientTLS, certPEM: certPEM, logs: logs}
	if popts.Authenticator == nil {
		tf.auth = &fakeAuth{}
		popts.Authenticator = tf.auth
	}
	popts.TLSConfig = serverTLS
	popts.Logger = logger
	if popts.Master.Password != "" {
		proxytest.RegisterMasterSecrets(popts.Master.User, popts.Master.Password)
	}
	srv, err := proxy.New(popts)
	if err != nil {
		t.Fatalf("proxy.New() = %v", err)
	}
	tf.srv, tf.front = srv, New(srv, sopts)
	// Registered first, so that it runs after the listeners have stopped.
	t.Cleanup(func() { proxytest.CheckSuiteLog(t) })
	tf.addr, tf.tlsAddr = proxytest.ServeFront(t, func(ctx context.Context, ln net.Listener, implicitTLS bool) {
		tf.srv.Serve(ctx, ln, implicitTLS, tf.front)
	}, func() { srv.Close() })
	return tf
}

// tconn is a test client.
type tconn struct{ *proxytest.Conn }

// dial connects to addr, from local if not "" (an address on lo).
func dial(t *testing.T, local, addr string) *tconn {
	t.Helper()
	return &tconn{proxytest.DialFrom(t, local, addr)}
}

// dialTLS connects to an implicit TLS listener.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) *tconn {
	t.Helper()
	return &tconn{proxytest.DialTLSFrom(t, "", addr, cfg)}
}

var literalRE = regexp.MustCompile(`\{(\d+)\+?\}$`)

// resp reads lines up to an OK, NO or BYE response and returns the lines
// before it and that response; a literal ending a line is read along.
func (c *tconn) resp() (data []string, final string) {
	c.T.Helper()
	for {
		l := c.ReadLine()
		if m := literalRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			buf := make([]byte, n)
			if _, err := io.ReadFull(c.BR, buf); err != nil {
				c.T.Fatalf("read literal: %v", err)
			}
			l += "\r\n" + string(buf) + c.ReadLine()
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
	c.T.Helper()
	data, final := c.resp()
	if final != want {
		c.T.Fatalf("got %q (after %q), want %q", final, data, want)
	}
	return data
}

// cmd sends s and expects want.
func (c *tconn) cmd(s, want string) []string {
	c.T.Helper()
	c.Send(s)
	return c.expect(want)
}

// starttls runs STARTTLS and returns the capabilities sent after it.
func (c *tconn) starttls(cfg *tls.Config) []string {
	c.T.Helper()
	c.cmd("STARTTLS", `OK "Begin TLS negotiation now."`)
	c.handshake(cfg)
	return c.expect(`OK "TLS negotiation successful."`)
}

func (c *tconn) handshake(cfg *tls.Config) {
	c.T.Helper()
	if c.BR.Buffered() > 0 {
		c.T.Fatalf("bytes after STARTTLS's OK")
	}
	c.UpgradeTLS(cfg)
}

// expectClosed checks that the server closes the connection (reading no
// more than a few bytes).
func (c *tconn) expectClosed() {
	c.T.Helper()
	c.C.SetReadDeadline(time.Now().Add(ioTimeout))
	b, err := c.BR.ReadString('\n')
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		c.T.Fatalf("connection still open (read %q, %v)", b, err)
	}
}

// greeted reads the greeting and returns its capability lines.
func (c *tconn) greeted() []string {
	c.T.Helper()
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
