package main

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestReadyzReportsBackendProblem: a backend that refuses the master login
// for a configuration reason makes /dependencies answer 503 with the reason
// while /readyz stays 200 and names it in its body (every replica shares the
// backend: a balancer must not take them all out); with
// http.readyz_dependencies /readyz answers 503 too. Both are 200 again once
// the problem is gone.
func TestReadyzReportsBackendProblem(t *testing.T) {
	var serving atomic.Bool
	serving.Store(true)
	o, err := newOpsServer("127.0.0.1:0", newMetrics(), nil, &serving, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var problem atomic.Pointer[string]
	o.problems = func() error {
		if p := problem.Load(); p != nil {
			return errors.New(*p)
		}
		return nil
	}
	go o.serve()
	defer o.shutdown()
	get := opsGetter(t, o)
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("no problem: status %d", code)
	}
	msg := "imap backend refuses the master login: set imap.backend.tls to starttls"
	problem.Store(&msg)
	if code, body := get("/dependencies"); code != http.StatusServiceUnavailable || !strings.Contains(body, "imap.backend.tls") {
		t.Fatalf("/dependencies with a problem: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusOK || !strings.Contains(body, "not in this verdict") || !strings.Contains(body, "imap.backend.tls") {
		t.Fatalf("/readyz with a problem: %d %q", code, body)
	}
	o.withDependencies = true
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "imap.backend.tls") {
		t.Fatalf("/readyz with a problem and readyz_dependencies: %d %q", code, body)
	}
	problem.Store(nil)
	for _, path := range []string{"/readyz", "/dependencies"} {
		if code, _ := get(path); code != http.StatusOK {
			t.Fatalf("problem gone: %s status %d", path, code)
		}
	}
}

// TestReadyzUnreachableDependency: an unreachable provider is in
// /dependencies and mailgate_dependency_up, not in /readyz's verdict.
func TestReadyzUnreachableDependency(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	var serving atomic.Bool
	serving.Store(true)
	m := newMetrics()
	o, err := newOpsServer("127.0.0.1:0", m, []readyTarget{{"identity provider", dead}}, &serving, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	go o.serve()
	defer o.shutdown()
	get := opsGetter(t, o)
	if code, body := get("/dependencies"); code != http.StatusServiceUnavailable || !strings.Contains(body, "identity provider unreachable") {
		t.Fatalf("/dependencies: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusOK || !strings.Contains(body, "identity provider unreachable") {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	if _, body := get("/metrics"); !strings.Contains(body, `mailgate_dependency_up{dependency="identity provider"} 0`) {
		t.Fatalf("/metrics lacks the dependency gauge at 0")
	}
	o.drain()
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Fatalf("/readyz while draining: %d %q", code, body)
	}
}

// opsGetter GETs a path of o and returns the status and body.
func opsGetter(t *testing.T, o *opsServer) func(path string) (int, string) {
	return func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + o.ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}
