package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/demo"
)

// testApp runs an app (the code "serve" runs) in front of the demo backends.
type testApp struct {
	a    *app
	d    *demo.Demo
	logs *bytes.Buffer // read it with logText while the app runs
	mu   *sync.Mutex   // guards logs
	tls  *tls.Config
	stop func() error
}

func startTestApp(t *testing.T, edit func(*config.Config)) *testApp {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := demo.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, err := certs.WritePEM(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Cluster.DrainDelay = 0 // no load balancer to drain
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	cfg.Master = config.Master{User: d.MasterUser, Password: d.MasterPassword}
	cfg.IMAP.ListenTLS, cfg.IMAP.ListenStartTLS = "127.0.0.1:0", "127.0.0.1:0"
	cfg.IMAP.Backend = config.Backend{Address: d.IMAPAddr, TLS: "none", ClientIP: "id"}
	cfg.SMTP.ListenTLS, cfg.SMTP.ListenStartTLS = "127.0.0.1:0", "127.0.0.1:0"
	cfg.SMTP.Hostname = "mailgate.test"
	cfg.SMTP.Backend = config.Backend{Address: d.SMTPAddr, TLS: "none", Login: "master", ClientIP: "none"}
	cfg.OAuth2.Mode, cfg.OAuth2.UserinfoURL, cfg.OAuth2.Issuer = "userinfo", d.Issuer.URL()+"/userinfo", d.Issuer.URL()
	cfg.HTTP.Listen = "127.0.0.1:0"
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := newApp(&cfg, log, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, 2*time.Second) }()
	leaf := a.certs.Certificate("127.0.0.1")
	pool := leafPool(t, leaf)
	ta := &testApp{a: a, d: d, logs: logs, mu: &mu, tls: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	var once sync.Once
	var runErr error
	ta.stop = func() error {
		once.Do(func() { cancel(); runErr = <-done; d.Close() })
		return runErr
	}
	t.Cleanup(func() {
		ta.stop()
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(logs.String(), d.Token) || strings.Contains(logs.String(), d.MasterPassword) {
			t.Error("a secret appears in the logs")
		}
	})
	// Ready when /readyz says so.
	waitHTTP(t, "http://"+a.ops.ln.Addr().String()+"/readyz", http.StatusOK)
	return ta
}

// logText is the log so far.
func (ta *testApp) logText() string {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func waitHTTP(t *testing.T, url string, want int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return string(body)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered %d (last: %v)", url, want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type xoauth2 struct{ user, token string }

func (c xoauth2) Start() (string, []byte, error) {
	return "XOAUTH2", auth.EncodeXOAUTH2(c.user, c.token), nil
}
func (c xoauth2) Next([]byte) ([]byte, error) { return []byte{}, nil }

// TestMetricsAfterLogin scrapes /metrics after a login and a failed login and
// parses it with the Prometheus text parser.
func TestMetricsAfterLogin(t *testing.T) {
	ta := startTestApp(t, nil)
	c, err := imapclient.DialTLS(ta.a.addr("imap.listen_tls"), &imapclient.Options{TLSConfig: ta.tls})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Authenticate(xoauth2{ta.d.User, ta.d.Token}); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	c.Close()
	// The same token again: answered by the cache.
	c2, err := imapclient.DialTLS(ta.a.addr("imap.listen_tls"), &imapclient.Options{TLSConfig: ta.tls})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Authenticate(xoauth2{ta.d.User, ta.d.Token}); err != nil {
		t.Fatalf("second Authenticate: %v", err)
	}
	c2.Close()
	bad, _ := imapclient.DialTLS(ta.a.addr("imap.listen_tls"), &imapclient.Options{TLSConfig: ta.tls})
	if err := bad.Authenticate(xoauth2{ta.d.User, "not-a-token"}); err == nil {
		t.Fatal("a bad token was accepted")
	}
	bad.Close()

	base := "http://" + ta.a.ops.ln.Addr().String()
	waitHTTP(t, base+"/healthz", http.StatusOK)
	body := waitHTTP(t, base+"/metrics", http.StatusOK)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	sum := func(name string, labels map[string]string) float64 {
		var v float64
		for _, m := range fams[name].GetMetric() {
			match := true
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					match = false
				}
			}
			if match {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			}
		}
		return v
	}
	for _, tt := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"mailgate_authentications_total", map[string]string{"proto": "imap", "mechanism": "XOAUTH2", "result": "ok"}, 2},
		{"mailgate_authentications_total", map[string]string{"proto": "imap", "result": "invalid"}, 1},
		{"mailgate_connections_total", map[string]string{"proto": "imap", "listener": "tls"}, 2},
		{"mailgate_backend_login_seconds", map[string]string{"proto": "imap"}, 1},
		{"mailgate_relayed_bytes_total", map[string]string{"proto": "imap", "dir": "down"}, 100},
		{"mailgate_token_validation_seconds", map[string]string{"result": "ok"}, 1},
		{"mailgate_token_validation_seconds", map[string]string{"result": "invalid"}, 1},
		{"mailgate_token_cache_total", map[string]string{"outcome": "hit"}, 1},
		{"mailgate_token_cache_total", map[string]string{"outcome": "miss"}, 2},
		{"mailgate_token_provider_calls_total", map[string]string{"result": "all"}, 2},
	} {
		if got := sum(tt.name, tt.labels); got < tt.min {
			t.Errorf("%s%v = %v, want >= %v", tt.name, tt.labels, got, tt.min)
		}
	}
	if _, ok := fams["mailgate_connections_open"]; !ok {
		t.Error("mailgate_connections_open missing")
	}
}

func leafPool(t *testing.T, c *tls.Certificate) *x509.CertPool {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return pool
}
