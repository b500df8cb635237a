package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/demo"
	"github.com/mailgate/mailgate/internal/testenv"
)

// realBackendsConfig is a configuration in front of the real Dovecot (IMAP
// over STARTTLS, which both generations accept) and pf, with the demo's
// identity provider.
func realBackendsConfig(t *testing.T, dc *testenv.Dovecot, pf *testenv.Postfix) *config.Config {
	cfg, _ := realBackends(t, dc, pf)
	return cfg
}

// realBackends is realBackendsConfig and the demo whose issuer it trusts.
func realBackends(t *testing.T, dc *testenv.Dovecot, pf *testenv.Postfix) (*config.Config, *demo.Demo) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d, err := demo.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	certFile, keyFile, err := certs.WritePEM(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	name := dc.TLSConfig().ServerName
	cfg := config.Default()
	cfg.Cluster.DrainDelay = 0 // no load balancer to drain
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	cfg.Master = config.Master{User: dc.MasterUser, Password: dc.MasterPassword}
	cfg.IMAP.ListenTLS, cfg.IMAP.ListenStartTLS = "127.0.0.1:0", ""
	cfg.IMAP.Backend = config.Backend{Address: dc.IMAPAddr, TLS: "starttls", CAFile: dc.CAFile, ServerName: name, ClientIP: "id"}
	cfg.SMTP.ListenTLS, cfg.SMTP.ListenStartTLS = "127.0.0.1:0", ""
	cfg.SMTP.Hostname = "mailgate.test"
	cfg.SMTP.Backend = config.Backend{Address: pf.SubmissionAddr, TLS: "starttls", CAFile: pf.CAFile, ServerName: name,
		Login: "master", ClientIP: "xclient"}
	cfg.POP3.ListenTLS, cfg.POP3.ListenStartTLS = "127.0.0.1:0", ""
	cfg.POP3.Backend = config.Backend{Address: dc.POP3Addr, TLS: "starttls", CAFile: dc.CAFile, ServerName: name, ClientIP: "xclient"}
	cfg.Sieve.Listen = "127.0.0.1:0"
	cfg.Sieve.Backend = config.Backend{Address: dc.SieveAddr, TLS: "starttls", CAFile: dc.CAFile, ServerName: name, ClientIP: "xclient"}
	cfg.OAuth2.Mode, cfg.OAuth2.UserinfoURL, cfg.OAuth2.Issuer = "userinfo", d.Issuer.URL()+"/userinfo", d.Issuer.URL()
	cfg.HTTP.Listen = "127.0.0.1:0"
	return &cfg, d
}

// TestIntegrationBackendCheck: a backend configuration that refuses
// mailgate's login path is reported at start-up, before any user logs in
// (an ERROR log line with the fix, /dependencies 503 naming it), and by
// check-config (exit 1 with the fix); check-config --login-as proves the
// master login on a good configuration.
func TestIntegrationBackendCheck(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	stock := testenv.StartPostfix(t, dc, testenv.PostfixOptions{DisableXClient: true}) // stock DMS: no XCLIENT
	cfg := realBackendsConfig(t, dc, stock)
	var logs bytes.Buffer
	var mu sync.Mutex
	a := runApp(t, cfg, slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)))
	body := waitHTTP(t, "http://"+a.ops.ln.Addr().String()+"/dependencies", http.StatusServiceUnavailable)
	if !strings.Contains(body, "smtp backend does not offer XCLIENT") || !strings.Contains(body, "smtpd_authorized_xclient_hosts") {
		t.Fatalf("/dependencies = %q; want the XCLIENT problem and its fix", body)
	}
	mu.Lock()
	logged := logs.String()
	mu.Unlock()
	if !strings.Contains(logged, "level=ERROR") || !strings.Contains(logged, "smtpd_authorized_xclient_hosts") {
		t.Fatalf("no ERROR line with the fix in the log:\n%s", logged)
	}

	code, out := checkConfig(t, cfg)
	if code != 1 || !strings.Contains(out, "smtp backend: PROBLEM: does not offer XCLIENT") || !strings.Contains(out, "imap backend: OK") ||
		!strings.Contains(out, "pop3 backend: OK") || !strings.Contains(out, "sieve backend: OK") {
		t.Fatalf("check-config exit %d:\n%s", code, out)
	}

	good := realBackendsConfig(t, dc, testenv.SharedPostfix(t))
	code, out = checkConfig(t, good, "--login-as", "alice@example.test")
	if code != 0 || strings.Count(out, "master login as alice@example.test accepted") != 4 {
		t.Fatalf("check-config --login-as exit %d:\n%s", code, out)
	}
	if strings.Contains(out, dc.MasterPassword) {
		t.Fatal("check-config printed the master password")
	}
}

// checkConfig runs check-config on cfg written to a file.
func checkConfig(t *testing.T, cfg *config.Config, args ...string) (int, string) {
	t.Helper()
	y, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mailgate.yaml")
	if err := os.WriteFile(path, y, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := runCheckConfig(append([]string{"--config", path}, args...), io.Discard, &stderr)
	return code, stderr.String()
}

// TestIntegrationBackendCheckMasterCredentials: with master.check_mailbox,
// wrong master credentials are reported at start-up (/dependencies 503 naming the
// fix) before any user logs in. A Dovecot of its own: the refused logins
// count against 127.0.0.1 in its auth penalty.
func TestIntegrationBackendCheckMasterCredentials(t *testing.T) {
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{})
	cfg := realBackendsConfig(t, dc, testenv.SharedPostfix(t))
	cfg.SMTP.ListenTLS, cfg.POP3.Backend.Address, cfg.Sieve.Backend.Address = "", "", ""
	cfg.Master.Password = "not-the-master-password"
	cfg.Master.CheckMailbox = "alice@example.test"
	a := runApp(t, cfg, slog.New(slog.DiscardHandler))
	body := waitHTTP(t, "http://"+a.ops.ln.Addr().String()+"/dependencies", http.StatusServiceUnavailable)
	if !strings.Contains(body, "refuses the master user's credentials") || strings.Contains(body, cfg.Master.Password) {
		t.Fatalf("/dependencies = %q; want the master credentials problem, without the password", body)
	}
}

// runApp validates cfg and runs an app on it until the test ends.
func runApp(t *testing.T, cfg *config.Config, log *slog.Logger) *app {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, log, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, time.Second) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}
