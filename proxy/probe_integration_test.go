package proxy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
)

// newProbeServer is a Server that only probes (no listener).
func newProbeServer(t *testing.T, master Master, smtpBE Backend) *Server {
	t.Helper()
	serverTLS, _ := proxytest.TLSPair(t)
	s, err := New(Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS, Master: master,
		SMTPBackend: smtpBE})
	if err != nil {
		t.Fatal(err)
	}
	return s
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

// TestIntegrationBackendProbeSMTP: the same against the real Postfix; the
// refusals run against a Postfix of their own (stock DMS: no XCLIENT) so
// that Dovecot's failed-login delay does not reach other tests.
func TestIntegrationBackendProbeSMTP(t *testing.T) {
	smtpBE := func(pf *testenv.Postfix, mode TLSMode, clientIP, login string) Backend {
		return Backend{Address: pf.SubmissionAddr, TLS: mode, TLSConfig: pf.TLSConfig(), ClientIP: clientIP, Login: login}
	}
	pf := testenv.SharedPostfix(t)
	master := Master{User: pf.Dovecot.MasterUser, Password: pf.Dovecot.MasterPassword}
	t.Run("starttls+xclient, login as alice", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, master, smtpBE(pf, TLSStartTLS, "xclient", "")), "smtp", "alice@example.test", "")
	})

	own := testenv.StartPostfix(t, testenv.StartDovecot(t, testenv.DovecotOptions{}), testenv.PostfixOptions{DisableXClient: true})
	om := Master{User: own.Dovecot.MasterUser, Password: own.Dovecot.MasterPassword}
	t.Run("plaintext: no AUTH before TLS", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, om, smtpBE(own, TLSNone, "", "")), "smtp", "", smtpHintAuth)
	})
	t.Run("xclient not authorized", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, om, smtpBE(own, TLSStartTLS, "xclient", "")), "smtp", "", smtpHintXCLIENT)
	})
	t.Run("wrong master password", func(t *testing.T) {
		bad := Master{User: om.User, Password: "not-the-master-password"}
		checkProblem(t, newProbeServer(t, bad, smtpBE(own, TLSStartTLS, "", "")), "smtp", "alice@example.test", smtpHintMaster)
	})
}
