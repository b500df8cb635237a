package proxy

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
)

// fakeProber finds a configuration problem until fixed is set.
type fakeProber struct {
	fixed  atomic.Bool
	probes atomic.Int32
}

func (p *fakeProber) Probe(ctx context.Context, loginAs string) error {
	p.probes.Add(1)
	if p.fixed.Load() {
		return nil
	}
	return &BackendProblem{Proto: "test", What: "refuses the master login", Fix: "change the test setting"}
}

// TestBackendProblemRecovers: a probe that finds a problem makes a standing
// one (readiness says so, with the fix); once the backend is fixed, asking
// for the problem probes again and it is gone, without any login having
// succeeded in between. (proxy/imap's TestBackendProbeProblems has the
// IMAP probe's findings.)
func TestBackendProblemRecovers(t *testing.T) {
	serverTLS, _ := proxytest.TLSPair(t)
	s, err := New(Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS})
	if err != nil {
		t.Fatal(err)
	}
	p := &fakeProber{}
	s.RegisterProbe("test", p)
	checkProblem(t, s, "test", "", "change the test setting")

	p.fixed.Store(true)
	if p := s.BackendProblem("test"); p == "" {
		t.Fatal("the problem is gone before any probe")
	}
	s.problems.mu.Lock()
	s.problems.probed["test"] = time.Now().Add(-reprobeEvery) // as if reprobeEvery had passed
	s.problems.mu.Unlock()
	proxytest.WaitFor(t, "the re-probe to clear the problem", func() bool { return s.BackendProblem("test") == "" })
	if n := p.probes.Load(); n != 2 {
		t.Errorf("%d probes, want 2 (the check and one re-probe)", n)
	}
}

// TestCheckBackendUnknownProto: a protocol without a registered probe is
// an error, not a problem.
func TestCheckBackendUnknownProto(t *testing.T) {
	serverTLS, _ := proxytest.TLSPair(t)
	s, err := New(Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckBackend(context.Background(), "pop3", ""); err == nil {
		t.Fatal("CheckBackend without a registered probe = nil")
	}
}

// checkProblem runs CheckBackend and wants a *BackendProblem with fix
// (or nil when fix is ""); a problem found must also stand for readiness.
func checkProblem(t *testing.T, s *Server, proto, loginAs, fix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.CheckBackend(ctx, proto, loginAs)
	var p *BackendProblem
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
