package proxy

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
)

// smtpTestProxy is a Server with a submission (STARTTLS) and a submissions
// (implicit TLS) listener on 127.0.0.1:0.
type smtpTestProxy struct {
	*testProxy
	cancel   context.CancelFunc
	serveErr chan error // what each ServeSMTP returned
	authN    *atomic.Int64
}

// newSMTPTestProxy starts ServeSMTP twice. The Authenticator is wrapped to
// count calls (authCalls).
func newSMTPTestProxy(t *testing.T, opts Options) *smtpTestProxy {
	t.Helper()
	serverTLS, clientTLS := proxytest.TLSPair(t)
	if opts.TLSConfig == nil {
		opts.TLSConfig = serverTLS
	}
	logs := &proxytest.SyncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Master.User == "" {
		opts.Master = Master{User: "mailgate", Password: "master-secret"}
	}
	if opts.Authenticator == nil {
		opts.Authenticator = fakeAuthenticator
	}
	var calls atomic.Int64
	inner := opts.Authenticator
	opts.Authenticator = AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
		calls.Add(1)
		return inner.Authenticate(ctx, c)
	})
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	tp := &smtpTestProxy{
		testProxy: &testProxy{srv: srv, serverTLS: opts.TLSConfig, clientTLS: clientTLS, logs: logs},
		serveErr:  make(chan error, 2),
		authN:     &calls,
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
		go func() { defer wg.Done(); tp.serveErr <- srv.ServeSMTP(ctx, ln, implicit) }()
	}
	t.Cleanup(func() {
		cancel()
		srv.Close()
		wg.Wait()
		for _, secret := range []string{"master-secret", proxytest.TestToken, proxytest.BadToken, proxytest.DownToken} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a secret (%q...) appears in the logs", secret[:4])
			}
		}
		if t.Failed() {
			t.Logf("proxy logs:\n%s", logs.String())
		}
	})
	// ServeSMTP probes the backend before it serves: wait for both greetings.
	for _, c := range []*proxytest.Conn{proxytest.DialPlain(t, tp.plainAddr), proxytest.DialTLS(t, tp.tlsAddr, clientTLS)} {
		c.SMTPExpect("220 ")
		c.SMTPCmd("QUIT", "221 ")
	}
	return tp
}

func (tp *smtpTestProxy) authCalls() int64 { return tp.authN.Load() }

// newSMTPTest starts a fake backend and a proxy in front of it (plain TCP to
// the backend, master login, sender enforcement on). mod may adjust the options.
func newSMTPTest(t *testing.T, fbOpts proxytest.FakeSMTPOptions, mod func(*Options)) (*smtpTestProxy, *proxytest.FakeSMTPBackend) {
	t.Helper()
	fb := proxytest.StartFakeSMTPBackend(t, fbOpts)
	opts := Options{
		SMTPBackend: Backend{Address: fb.Addr, TLS: TLSNone},
		SMTP:        SMTPOptions{Hostname: "mailgate.test", EnforceSender: true},
		Challenge:   auth.ChallengeOptions{OpenIDConfiguration: "https://idp.example.test/.well-known/openid-configuration", Scope: "openid email"},
	}
	if mod != nil {
		mod(&opts)
	}
	return newSMTPTestProxy(t, opts), fb
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
