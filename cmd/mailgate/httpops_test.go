package main

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestReadyzReportsBackendProblem: a backend that refuses the master login
// for a configuration reason makes /readyz answer 503 with the reason, and
// it is ready again once the problem is gone.
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
	get := func() (int, string) {
		resp, err := http.Get("http://" + o.ln.Addr().String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(); code != http.StatusOK {
		t.Fatalf("no problem: status %d", code)
	}
	msg := "imap backend refuses the master login: set imap.backend.tls to starttls"
	problem.Store(&msg)
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "imap.backend.tls") {
		t.Fatalf("with a problem: %d %q", code, body)
	}
	problem.Store(nil)
	if code, _ := get(); code != http.StatusOK {
		t.Fatalf("problem gone: status %d", code)
	}
}
