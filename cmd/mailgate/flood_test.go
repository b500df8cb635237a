package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mailgate/mailgate/internal/testenv"
)

// TestSecurityConnectionFlood (issue 11, problem 1: "a connection flood
// stops the process"). mailgate runs with 400 open files and the default
// caps, which would need 22,256; 1,200 connections that never send a byte
// come from 200 loopback addresses (so no per-network cap or rate stops them
// first), on both listeners. mailgate must fit its caps to the limit (one
// WARN), stay up, and let a legitimate user log in through to the backend
// while the flood is open and after it is gone.
func TestSecurityConnectionFlood(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		if testenv.Integration() {
			t.Fatal("prlimit (util-linux) not installed")
		}
		t.Skip("prlimit (util-linux) not installed")
	}
	const (
		nofile     = 400 // mailgate's open-files limit
		floodAddrs = 200 // 127.1.0.x source addresses
		perAddr    = 6   // connections from each: under max_prelogin_per_ip and the burst
		flood      = floodAddrs * perAddr
	)
	if own, _ := raiseOpenFiles(); own < flood+1000 {
		t.Skipf("this process may open only %d files; the flood needs %d", own, flood+1000)
	}
	r := newServeRig(t)
	r.wrapper = []string{prlimit, fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--"}
	r.extraYAML = "limits: {max_connections: 10000, max_prelogin_connections: 1000}\n"
	r.writeConfig("")
	r.start()
	exited := make(chan error, 1)
	go func() { exited <- r.cmd.Wait() }()

	logs := r.logs.String()
	for _, want := range []string{"connection caps lowered to fit the open-files limit", "open_files_limit=400",
		`limits.max_connections="10000 -> 62"`, `limits.max_prelogin_connections="1000 -> 10"`} {
		if !strings.Contains(logs, want) {
			t.Fatalf("no %q in the startup log:\n%s", want, logs)
		}
	}

	// The flood: connections that never send a byte, alternating listeners.
	var conns []net.Conn
	closeFlood := func() {
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	defer closeFlood()
	t.Log("flood starts")
	var dialErr error
	for i := range floodAddrs {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 1, 0, byte(1+i))}, Timeout: 5 * time.Second}
		for j := range perAddr {
			addr := r.imaps
			if j%2 == 1 {
				addr = r.smtps
			}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				dialErr = err
				continue
			}
			conns = append(conns, c)
		}
	}
	if len(conns) < flood/2 {
		t.Fatalf("only %d of %d flood connections opened (last error %v)\n%s", len(conns), flood, dialErr, r.logs.String())
	}
	t.Logf("%d flood connections open", len(conns))
	// Ready when mailgate has taken in every flood connection: each was
	// admitted (and most of them evicted again) or refused.
	metrics := "http://" + r.httpAddr + "/metrics"
	waitFor(t, 20*time.Second, "mailgate to take in the flood", func() bool {
		sum := scrape(t, metrics)
		taken := sum("mailgate_connections_total", nil) + sum("mailgate_connections_refused_total", func(l map[string]string) bool {
			return l["reason"] != "evicted"
		})
		return taken >= float64(len(conns))
	})
	if ev := scrape(t, metrics)("mailgate_connections_refused_total", func(l map[string]string) bool {
		return l["reason"] == "evicted"
	}); ev < float64(len(conns)-nofile) {
		t.Errorf("only %v pre-login connections evicted; the pool should have stayed at its cap", ev)
	}

	t.Logf("%d flood connections taken in", len(conns))
	// A user logs in while the flood is open...
	waitFor(t, 10*time.Second, "a login during the flood", func() bool { return r.tryLogin(t) == nil })
	t.Log("logged in during the flood")
	// ...and after it is gone.
	closeFlood()
	waitFor(t, 10*time.Second, "a login after the flood", func() bool { return r.tryLogin(t) == nil })

	select {
	case err := <-exited:
		t.Fatalf("mailgate exited during the flood: %v\n%s", err, r.logs.String())
	default:
	}
	logs = r.logs.String()
	for _, bad := range []string{"listener failed", "shutting down", "panic"} {
		if strings.Contains(logs, bad) {
			t.Errorf("the log has %q:\n%s", bad, logs)
		}
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, r.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("mailgate did not exit after SIGTERM\n%s", r.logs.String())
	}
}

// tryLogin logs in over IMAPS as the demo user with a token and opens the
// inbox (which the backend answers), all within 5 s.
func (r *serveRig) tryLogin(t *testing.T) error {
	t.Helper()
	raw, err := net.DialTimeout("tcp", r.imaps, 5*time.Second)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := imapclient.New(tls.Client(raw, r.clientTLS()), nil)
	defer c.Close()
	if err := c.Authenticate(xoauth2{r.d.User, r.d.Token}); err != nil {
		t.Logf("login: %v", err)
		return err
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Logf("select: %v", err)
		return err
	}
	return nil
}

// waitFor polls cond until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape reads the Prometheus text at url and returns its counter sums:
// sum(name, match) adds up the counters of name whose labels match (nil: all).
func scrape(t *testing.T, url string) (sum func(name string, match func(labels map[string]string) bool) float64) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return func(name string, match func(labels map[string]string) bool) float64 {
		var v float64
		for _, m := range fams[name].GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if match == nil || match(labels) {
				v += m.GetCounter().GetValue()
			}
		}
		return v
	}
}
