package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/config"
)

// TestStartupWarningsOnce runs serve's start-up (configuration warnings,
// open-files fitting, listeners, backend checks) with all seven listeners,
// unreachable backends and settings that warn, touches every listener, and
// checks that no warning is logged more than once: a warning is about the
// configuration or a backend, never repeated per listener.
func TestStartupWarningsOnce(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, err := certs.WritePEM(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	down := "127.0.0.1:1" // nothing listens there
	cfg := config.Default()
	cfg.Cluster.DrainDelay = 0 // no load balancer to drain
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	cfg.Master = config.Master{User: "mailgate", Password: "secret"}
	cfg.IMAP.ListenTLS, cfg.IMAP.ListenStartTLS = "127.0.0.1:0", "127.0.0.1:0"
	cfg.IMAP.Backend = config.Backend{Address: down, TLS: "none", ClientIP: "proxy"}
	cfg.SMTP.ListenTLS, cfg.SMTP.ListenStartTLS = "127.0.0.1:0", "127.0.0.1:0"
	cfg.SMTP.Hostname = "mailgate.test"
	cfg.SMTP.Backend = config.Backend{Address: down, TLS: "none", Login: "master", ClientIP: "none"}
	cfg.POP3.ListenTLS, cfg.POP3.ListenStartTLS = "127.0.0.1:0", "127.0.0.1:0"
	cfg.POP3.Backend = config.Backend{Address: down, TLS: "none", ClientIP: "xclient"}
	cfg.Sieve.Listen = "127.0.0.1:0"
	cfg.Sieve.Backend = config.Backend{Address: down, TLS: "none", ClientIP: "xclient"}
	cfg.OAuth2.Mode, cfg.OAuth2.Issuer = "jwt", "https://auth.example.test/"
	cfg.HTTP.Listen = "127.0.0.1:0"
	if err := validate(&cfg); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))
	logs := func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }
	logConfigWarnings(log, &cfg)
	a, err := newApp(&cfg, log, 512) // a low open-files limit: the caps are lowered, with a warning
	if err != nil {
		t.Fatal(err)
	}
	if len(a.listeners) != 7 {
		t.Fatalf("want 7 listeners, got %d", len(a.listeners))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, time.Second) }()
	waitFor(t, 10*time.Second, "the four backend checks", func() bool {
		return strings.Count(logs(), "backend not checked at start-up") == 4
	})
	for _, l := range a.listeners { // a first connection on each listener
		c, err := net.DialTimeout("tcp", l.ln.Addr().String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		c.Read(make([]byte, 512))
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done

	seen := map[string]int{}
	for _, line := range strings.Split(logs(), "\n") {
		if !strings.Contains(line, "level=WARN") {
			continue
		}
		seen[warningKey(line)]++
	}
	for _, want := range []string{"connection caps lowered", "master password unencrypted", "oauth2.audiences: empty"} {
		found := false
		for k := range seen {
			found = found || strings.Contains(k, want)
		}
		if !found {
			t.Errorf("no warning %q logged:\n%s", want, logs())
		}
	}
	for k, n := range seen {
		t.Logf("%d× %s", n, k)
		if n > 1 {
			t.Errorf("warning logged %d times: %s", n, k)
		}
	}
}

// warningKey is a log line without what differs from one listener or
// moment to the next (time, listener, addr, conn, remote).
func warningKey(line string) string {
	var keep []string
	for _, f := range splitLogfmt(line) {
		switch k, _, _ := strings.Cut(f, "="); k {
		case "time", "listener", "addr", "conn", "remote":
			continue
		}
		keep = append(keep, f)
	}
	sort.Strings(keep)
	return strings.Join(keep, " ")
}

// splitLogfmt splits a text-handler line into key=value fields, keeping
// quoted values whole.
func splitLogfmt(line string) []string {
	var out []string
	var cur strings.Builder
	quoted, escaped := false, false
	for _, r := range line {
		switch {
		case escaped:
			escaped = false
		case r == '\\' && quoted:
			escaped = true
		case r == '"':
			quoted = !quoted
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
			continue
		}
		cur.WriteRune(r)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
