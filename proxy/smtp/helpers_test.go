package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// smtpTestProxy is a proxy.Server with the submission front on a STARTTLS
// (submission) and an implicit-TLS (submissions) listener on 127.0.0.1:0.
type smtpTestProxy struct {
	srv       *proxy.Server
	front     *Front
	plainAddr string // STARTTLS listener
	tlsAddr   string // implicit TLS listener
	serverTLS *tls.Config
	clientTLS *tls.Config
	logs      *proxytest.SyncBuffer
	cancel    context.CancelFunc
	serveErr  chan error // what each Serve returned
	authN     *atomic.Int64
}

// newSMTPTestProxy starts a Server with opts and the submission front with
// fo on two listeners. The defaults: a fresh certificate, a debug logger
// into tp.logs, the master user the fake backends know, and the fake
// authenticator, wrapped to count calls (authCalls).
func newSMTPTestProxy(t *testing.T, opts proxy.Options, fo Options) *smtpTestProxy {
	t.Helper()
	serverTLS, clientTLS := proxytest.TLSPair(t)
	if opts.TLSConfig == nil {
		opts.TLSConfig = serverTLS
	}
	logger, logs := proxytest.NewLogger()
	if opts.Logger == nil {
		opts.Logger = logger
	}
	if opts.Master.User == "" {
		opts.Master = proxy.Master{User: proxytest.MasterUser, Password: proxytest.MasterPassword}
	}
	if opts.Authenticator == nil {
		opts.Authenticator = fakeAuthenticator
	}
	var calls atomic.Int64
	inner := opts.Authenticator
	opts.Authenticator = proxy.AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
		calls.Add(1)
		return inner.Authenticate(ctx, c)
	})
	srv, err := proxy.New(opts)
	if err != nil {
		t.Fatalf("proxy.New() = %v", err)
	}
	front, err := New(srv, fo)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	tp := &smtpTestProxy{
		srv: srv, front: front, serverTLS: opts.TLSConfig, clientTLS: clientTLS, logs: logs,
		serveErr: make(chan error, 2),
		authN:    &calls,
	}
	ctx, cancel := context.WithCancel(context.Background())
	tp.cancel = cancel
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
		go func() { defer wg.Done(); tp.serveErr <- srv.Serve(ctx, ln, implicit, front) }()
	}
	t.Cleanup(func() {
		cancel()
		srv.Close()
		wg.Wait()
		for _, secret := range []string{proxytest.MasterPassword, proxytest.TestToken, proxytest.BadToken, proxytest.DownToken} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a secret (%q...) appears in the logs", secret[:4])
			}
		}
		proxytest.CheckLogText(t, logs.String())
		proxytest.CheckSuiteLog(t)
		if t.Failed() {
			t.Logf("proxy logs:\n%s", logs.String())
		}
	})
	// The front probes the backend before it greets its first
	// connection: wait for both greetings.
	for _, c := range []*proxytest.Conn{proxytest.DialPlain(t, tp.plainAddr), proxytest.DialTLS(t, tp.tlsAddr, clientTLS)} {
		c.SMTPExpect("220 ")
		c.SMTPCmd("QUIT", "221 ")
	}
	return tp
}

func (tp *smtpTestProxy) authCalls() int64 { return tp.authN.Load() }

// newSMTPTest starts a fake backend and a proxy in front of it (plain TCP to
// the backend, master login, sender enforcement on). mod may adjust the options.
func newSMTPTest(t *testing.T, fbOpts proxytest.FakeSMTPOptions, mod func(*proxy.Options, *Options)) (*smtpTestProxy, *proxytest.FakeSMTPBackend) {
	t.Helper()
	fb := proxytest.StartFakeSMTPBackend(t, fbOpts)
	opts := proxy.Options{
		Challenge: auth.ChallengeOptions{OpenIDConfiguration: "https://idp.example.test/.well-known/openid-configuration", Scope: "openid email"},
	}
	fo := Options{Backend: proxy.Backend{Address: fb.Addr, TLS: proxy.TLSNone}, Hostname: "mailgate.test", EnforceSender: true}
	if mod != nil {
		mod(&opts, &fo)
	}
	return newSMTPTestProxy(t, opts, fo), fb
}

// dialSubmission connects to the STARTTLS listener, upgrades, and sends
// EHLO. dialSubmissions does the same on the implicit-TLS listener.
func (tp *smtpTestProxy) dialSubmission(t *testing.T) *proxytest.Conn {
	t.Helper()
	c := proxytest.DialPlain(t, tp.plainAddr)
	c.SMTPExpect("220 mailgate.test ESMTP")
	c.SMTPEHLO()
	c.SMTPStartTLS(tp.clientTLS)
	c.SMTPEHLO()
	return c
}

func (tp *smtpTestProxy) dialSubmissions(t *testing.T) *proxytest.Conn {
	t.Helper()
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.SMTPExpect("220 mailgate.test ESMTP")
	c.SMTPEHLO()
	return c
}

// waitConnsClosed waits until s handles no client connection.
func waitConnsClosed(t *testing.T, s *proxy.Server) {
	t.Helper()
	proxytest.WaitFor(t, "mailgate to close every client connection", func() bool { return s.Conns() == 0 })
}

// newProbeServer is a Server with the submission front for b that only
// probes (no listener).
func newProbeServer(t *testing.T, master proxy.Master, b proxy.Backend) *proxy.Server {
	t.Helper()
	serverTLS, _ := proxytest.TLSPair(t)
	s, err := proxy.New(proxy.Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS, Master: master})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(s, Options{Backend: b, Hostname: "mailgate.test"}); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkProblem runs CheckBackend and wants a *proxy.BackendProblem with fix
// (or nil when fix is ""); a problem found must also stand for readiness.
func checkProblem(t *testing.T, s *proxy.Server, proto, loginAs, fix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.CheckBackend(ctx, proto, loginAs)
	var p *proxy.BackendProblem
	switch {
	case fix == "" && err != nil:
		t.Fatalf("CheckBackend(%s): %v; want nil", proto, err)
	case fix == "" && s.BackendProblem(proto) != "":
		t.Fatalf("a problem stands after a clean probe: %s", s.BackendProblem(proto))
	case fix == "":
	case !errors.As(err, &p) || p.Fix != fix:
		t.Fatalf("CheckBackend(%s) = %v; want the problem whose fix is %q", proto, err, fix)
	case !strings.Contains(s.BackendProblem(proto), fix):
		t.Fatalf("BackendProblem(%s) = %q; want the fix", proto, s.BackendProblem(proto))
	}
}
