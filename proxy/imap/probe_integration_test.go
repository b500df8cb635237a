package imap

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// TestIntegrationBackendProbeIMAP: the start-up and check-config probe
// against the real Dovecot of the generation under test. The paths that
// work for a master login pass (with --login-as too); the configurations
// that refuse it are named with their fix, before any user logs in.
func TestIntegrationBackendProbeIMAP(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	master := proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword}
	imap := func(addr string, mode proxy.TLSMode, clientIP string) proxy.Backend {
		return proxy.Backend{Address: addr, TLS: mode, TLSConfig: dc.TLSConfig(), ClientIP: clientIP}
	}
	t.Run("starttls+id, login as alice", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, master, imap(dc.IMAPAddr, proxy.TLSStartTLS, "id")), "imap", "alice@example.test", "")
	})
	t.Run("implicit", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, master, imap(dc.IMAPSAddr, proxy.TLSImplicit, "id")), "imap", "", "")
	})
	t.Run("proxy with the SSL TLV, login as alice", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, master, imap(dc.HAProxyAddr, proxy.TLSNone, "proxy")), "imap", "alice@example.test", "")
	})
	t.Run("plaintext", func(t *testing.T) {
		// 2.3 trusts 127.0.0.1 (login_trusted_networks); 2.4 refuses
		// plaintext from any address but its own (127.0.24.1 here).
		want := ""
		if testenv.Generation() == "2.4" {
			want = hintPrivacy
		}
		checkProblem(t, newProbeServer(t, master, imap(dc.IMAPAddr, proxy.TLSNone, "id")), "imap", "", want)
	})

	// A Dovecot that trusts neither mailgate's address for plaintext logins
	// nor its PROXY headers; its failed logins slow down only itself.
	strict := testenv.StartDovecot(t, testenv.DovecotOptions{
		TrustedNetworks:        []string{"127.0.0.99/32"},
		HAProxyTrustedNetworks: []string{"127.0.0.99/32"},
	})
	sm := proxy.Master{User: strict.MasterUser, Password: strict.MasterPassword}
	strictBE := func(addr string, mode proxy.TLSMode, clientIP string) proxy.Backend {
		return proxy.Backend{Address: addr, TLS: mode, TLSConfig: strict.TLSConfig(), ClientIP: clientIP}
	}
	t.Run("untrusted plaintext", func(t *testing.T) {
		// 2.3 counts 127.0.0.1 -> 127.0.0.1 as secured whatever the
		// trusted networks (its "localhost"); 2.4 listens on 127.0.24.1.
		want := hintPrivacy
		if testenv.Generation() == "2.3" {
			want = ""
		}
		checkProblem(t, newProbeServer(t, sm, strictBE(strict.IMAPAddr, proxy.TLSNone, "id")), "imap", "", want)
	})
	t.Run("untrusted proxy", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, sm, strictBE(strict.HAProxyAddr, proxy.TLSNone, "proxy")), "imap", "", proxy.HintHAProxyTrust)
	})
	t.Run("wrong master password", func(t *testing.T) {
		bad := proxy.Master{User: strict.MasterUser, Password: "not-the-master-password"}
		s := newProbeServer(t, bad, strictBE(strict.IMAPSAddr, proxy.TLSImplicit, "id"))
		checkProblem(t, s, "imap", "", "") // nothing to see without a login
		checkProblem(t, s, "imap", "alice@example.test", proxy.HintDovecotMaster)
	})
	t.Run("no such mailbox", func(t *testing.T) {
		s := newProbeServer(t, sm, strictBE(strict.IMAPSAddr, proxy.TLSImplicit, "id"))
		err := s.CheckBackend(context.Background(), "imap", "nobody@example.test")
		var p *proxy.BackendProblem
		if err == nil || errors.As(err, &p) || !strings.Contains(err.Error(), "not a mailbox") {
			t.Fatalf("CheckBackend as an unknown mailbox = %v; want a plain error saying so", err)
		}
	})
}
