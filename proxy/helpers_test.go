package proxy

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/mailgate/mailgate/internal/proxytest"
)

type testProxy struct {
	srv       *Server
	plainAddr string // STARTTLS listener
	tlsAddr   string // implicit TLS listener
	clientTLS *tls.Config
	logs      *proxytest.SyncBuffer
}

// newTestProxy starts a Server with an IMAP STARTTLS and an IMAPS listener on 127.0.0.1:0.
func newTestProxy(t *testing.T, opts Options) *testProxy {
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
		for _, secret := range []string{"master-secret", proxytest.TestToken, proxytest.BadToken} {
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
