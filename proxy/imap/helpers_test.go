package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// testProxy is a proxy.Server with the IMAP front on a STARTTLS and an
// implicit-TLS listener on 127.0.0.1:0.
type testProxy struct {
	srv       *proxy.Server
	front     *Front
	plainAddr string // STARTTLS listener
	tlsAddr   string // implicit TLS listener
	serverTLS *tls.Config
	clientTLS *tls.Config
	logs      *proxytest.SyncBuffer
}

// newTestProxy starts a Server with opts and the IMAP front with fo. The
// defaults: a fresh certificate, a debug logger into tp.logs, and the
// master user the fake backends know.
func newTestProxy(t *testing.T, opts proxy.Options, fo Options) *testProxy {
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
	registerMasterSecrets(opts.Master)
	srv, err := proxy.New(opts)
	if err != nil {
		t.Fatalf("proxy.New() = %v", err)
	}
	tp := &testProxy{srv: srv, front: New(srv, fo), serverTLS: opts.TLSConfig, clientTLS: clientTLS, logs: logs}
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
		go func() { defer wg.Done(); srv.Serve(ctx, ln, implicit, tp.front) }()
	}
	t.Cleanup(func() {
		cancel()
		srv.Close()
		wg.Wait()
		for _, secret := range []string{proxytest.MasterPassword, proxytest.TestToken, proxytest.BadToken} {
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
	return tp
}

// waitConnsClosed waits until s handles no client connection.
func waitConnsClosed(t *testing.T, s *proxy.Server) {
	t.Helper()
	proxytest.WaitFor(t, "mailgate to close every client connection", func() bool { return s.Conns() == 0 })
}

// newProbeServer is a Server with the IMAP front for b that only probes
// (no listener).
func newProbeServer(t *testing.T, master proxy.Master, b proxy.Backend) *proxy.Server {
	t.Helper()
	serverTLS, _ := proxytest.TLSPair(t)
	s, err := proxy.New(proxy.Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS, Master: master})
	if err != nil {
		t.Fatal(err)
	}
	New(s, Options{Backend: b})
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
