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
func newProbeServer(t *testing.T, master Master, imapBE, smtpBE Backend) *Server {
	t.Helper()
	serverTLS, _ := proxytest.TLSPair(t)
	s, err := New(Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS, Master: master,
		IMAPBackend: imapBE, SMTPBackend: smtpBE})
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

// TestIntegrationBackendProbeIMAP: the start-up and check-config probe
// against the real Dovecot of the generation under test. The paths that
// work for a master login pass (with --login-as too); the configurations
// that refuse it are named with their fix, before any user logs in.
func TestIntegrationBackendProbeIMAP(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	master := Master{User: dc.MasterUser, Password: dc.MasterPassword}
	imap := func(addr string, mode TLSMode, clientIP string) Backend {
		return Backend{Address: addr, TLS: mode, TLSConfig: dc.TLSConfig(), ClientIP: clientIP}
	}
	t.Run("starttls+id, login as alice", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, master, imap(dc.IMAPAddr, TLSStartTLS, "id"), Backend{}), "imap", "alice@example.test", "")
	})
	t.Run("implicit", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, master, imap(dc.IMAPSAddr, TLSImplicit, "id"), Backend{}), "imap", "", "")
	})
	t.Run("proxy with the SSL TLV, login as alice", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, master, imap(dc.HAProxyAddr, TLSNone, "proxy"), Backend{}), "imap", "alice@example.test", "")
	})
	t.Run("plaintext", func(t *testing.T) {
		// 2.3 trusts 127.0.0.1 (login_trusted_networks); 2.4 refuses
		// plaintext from any address but its own (127.0.24.1 here).
		want := ""
		if testenv.Generation() == "2.4" {
			want = imapHintPrivacy
		}
		checkProblem(t, newProbeServer(t, master, imap(dc.IMAPAddr, TLSNone, "id"), Backend{}), "imap", "", want)
	})

	// A Dovecot that trusts neither mailgate's address for plaintext logins
	// nor its PROXY headers; its failed logins slow down only itself.
	strict := testenv.StartDovecot(t, testenv.DovecotOptions{
		TrustedNetworks: []string{"127.0.0.99/32"},
	})
	sm := Master{User: strict.MasterUser, Password: strict.MasterPassword}
	strictBE := func(addr string, mode TLSMode, clientIP string) Backend {
		return Backend{Address: addr, TLS: mode, TLSConfig: strict.TLSConfig(), ClientIP: clientIP}
	}
	t.Run("untrusted plaintext", func(t *testing.T) {
		// 2.3 counts 127.0.0.1 -> 127.0.0.1 as secured whatever the
		// trusted networks (its "localhost"); 2.4 listens on 127.0.24.1.
		want := imapHintPrivacy
		if testenv.Generation() == "2.3" {
			want = ""
		}
		checkProblem(t, newProbeServer(t, sm, strictBE(strict.IMAPAddr, TLSNone, "id"), Backend{}), "imap", "", want)
	})
	t.Run("wrong master password", func(t *testing.T) {
		bad := Master{User: strict.MasterUser, Password: "not-the-master-password"}
		s := newProbeServer(t, bad, strictBE(strict.IMAPSAddr, TLSImplicit, "id"), Backend{})
		checkProblem(t, s, "imap", "", "") // nothing to see without a login
		checkProblem(t, s, "imap", "alice@example.test", imapHintMaster)
	})
	t.Run("no such mailbox", func(t *testing.T) {
		s := newProbeServer(t, sm, strictBE(strict.IMAPSAddr, TLSImplicit, "id"), Backend{})
		err := s.CheckBackend(context.Background(), "imap", "nobody@example.test")
		var p *BackendProblem
		if err == nil || errors.As(err, &p) || !strings.Contains(err.Error(), "not a mailbox") {
			t.Fatalf("CheckBackend as an unknown mailbox = %v; want a plain error saying so", err)
		}
	})
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
		checkProblem(t, newProbeServer(t, master, Backend{}, smtpBE(pf, TLSStartTLS, "xclient", "")), "smtp", "alice@example.test", "")
	})

	own := testenv.StartPostfix(t, testenv.StartDovecot(t, testenv.DovecotOptions{}), testenv.PostfixOptions{DisableXClient: true})
	om := Master{User: own.Dovecot.MasterUser, Password: own.Dovecot.MasterPassword}
	t.Run("plaintext: no AUTH before TLS", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, om, Backend{}, smtpBE(own, TLSNone, "", "")), "smtp", "", smtpHintAuth)
	})
	t.Run("xclient not authorized", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, om, Backend{}, smtpBE(own, TLSStartTLS, "xclient", "")), "smtp", "", smtpHintXCLIENT)
	})
	t.Run("wrong master password", func(t *testing.T) {
		bad := Master{User: om.User, Password: "not-the-master-password"}
		checkProblem(t, newProbeServer(t, bad, Backend{}, smtpBE(own, TLSStartTLS, "", "")), "smtp", "alice@example.test", smtpHintMaster)
	})
}
