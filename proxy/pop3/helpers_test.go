package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// TestMain points slog.Default (package auth's logger when none is given)
// at the suite log, which every test front's cleanup searches for secrets
// (proxytest.LogToSuite).
func TestMain(m *testing.M) {
	proxytest.LogToSuite()
	testenv.Main(m)
}

// Tokens the fake authenticator knows, and the master password.
const (
	goodToken = proxytest.TestToken
	badToken  = proxytest.BadToken
	downToken = proxytest.DownToken
	masterPW  = proxytest.MasterPassword
)

// fakeAuthenticator accepts goodToken for alice, says the provider is down
// for downToken and refuses anything else (proxytest.FakeAuthenticate).
var fakeAuthenticator = proxy.AuthenticatorFunc(proxytest.FakeAuthenticate)

// testTLS returns a server config for 127.0.0.1, a client config trusting
// it, and its certificate as a PEM file (for curl --cacert).
func testTLS(t testing.TB) (server, client *tls.Config, pemFile string) {
	t.Helper()
	server, client = proxytest.TLSPair(t)
	return server, client, proxytest.CertFile(t, server)
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
	logs      *proxytest.SyncBuffer
	secrets   []string // must not appear in the logs
}

// newTestFront starts a front for opts (defaults: fakeAuthenticator, the
// master user "mailgate") and checks at cleanup that no secret was logged.
func newTestFront(t *testing.T, opts proxy.Options, fopts Options) *testFront {
	t.Helper()
	serverTLS, clientTLS, certFile := testTLS(t)
	logger, logs := proxytest.NewLogger()
	tf := &testFront{clientTLS: clientTLS, certFile: certFile, logs: logs}
	if opts.TLSConfig == nil {
		opts.TLSConfig = serverTLS
	}
	if opts.Authenticator == nil {
		opts.Authenticator = fakeAuthenticator
	}
	if opts.Master.User == "" {
		opts.Master = proxy.Master{User: proxytest.MasterUser, Password: masterPW}
	}
	proxytest.RegisterMasterSecrets(opts.Master.User, opts.Master.Password)
	opts.Logger = logger
	srv, err := proxy.New(opts)
	if err != nil {
		t.Fatalf("proxy.New() = %v", err)
	}
	tf.srv, tf.front = srv, New(srv, fopts)
	tf.secrets = []string{opts.Master.Password, goodToken, badToken, downToken}
	// Registered first, so that it runs after the listeners have stopped.
	t.Cleanup(func() {
		logs := tf.logs.String()
		for _, s := range tf.secrets {
			if s != "" && strings.Contains(logs, s) {
				t.Errorf("a secret (%.4s...) appears in the proxy logs", s)
			}
		}
		proxytest.CheckSuiteLog(t)
		if t.Failed() {
			t.Logf("proxy logs:\n%s", logs)
		}
	})
	tf.plainAddr, tf.tlsAddr = proxytest.ServeFront(t, func(ctx context.Context, ln net.Listener, implicit bool) {
		tf.srv.Serve(ctx, ln, implicit, tf.front)
	}, func() { tf.srv.Close() })
	return tf
}

// client is a scripted POP3 client.
type client struct{ *proxytest.Conn }

// ioTimeout bounds the wait for the server to close a connection.
const ioTimeout = 10 * time.Second

func dialPlain(t *testing.T, addr string) *client {
	t.Helper()
	return &client{proxytest.DialPlain(t, addr)}
}

// dialFrom connects from the loopback address local.
func dialFrom(t *testing.T, local, addr string) *client {
	t.Helper()
	return &client{proxytest.DialFrom(t, local, addr)}
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *client {
	t.Helper()
	c := dialPlain(t, addr)
	c.UpgradeTLS(cfg)
	return c
}

// expect reads a line and checks that it is want, or starts with it when
// want ends in "*".
func (c *client) expect(want string) string {
	c.T.Helper()
	l := c.ReadLine()
	if p, ok := strings.CutSuffix(want, "*"); ok && strings.HasPrefix(l, p) || l == want {
		return l
	}
	c.T.Fatalf("got %q, want %q", l, want)
	return ""
}

// multi reads a multi-line reply's lines after its +OK line, up to ".".
func (c *client) multi() []string {
	c.T.Helper()
	var lines []string
	for l := c.ReadLine(); l != "."; l = c.ReadLine() {
		lines = append(lines, l)
	}
	return lines
}

// capa sends CAPA and returns the capability lines.
func (c *client) capa() []string {
	c.T.Helper()
	c.Send("CAPA")
	c.expect("+OK Capability list follows")
	return c.multi()
}

// expectClosed checks that the server closes the connection (no more lines).
func (c *client) expectClosed() {
	c.T.Helper()
	c.C.SetReadDeadline(time.Now().Add(ioTimeout))
	l, err := c.BR.ReadString('\n')
	if err == nil {
		c.T.Fatalf("got %q, want the connection closed", l)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.T.Fatal("connection still open")
	}
}

func b64(s string) string { return proxytest.B64(s) }

// xoauth2 is the XOAUTH2 message for user and token, registered as a
// secret for the log scan.
func xoauth2(user, token string) string { return proxytest.XOAUTH2(user, token) }

func oauthbearer(user, token string) string {
	return b64(string(auth.EncodeOAUTHBEARER(user, token)))
}
