package imap

import (
	"sync/atomic"
	"testing"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// handshakeCounter counts backend TLS handshakes.
type handshakeCounter struct {
	proxy.NopObserver
	full, resumed atomic.Int32
}

func (o *handshakeCounter) BackendTLS(proto string, resumed bool) {
	if resumed {
		o.resumed.Add(1)
	} else {
		o.full.Add(1)
	}
}

// TestIntegrationBackendTLSResumption: against Dovecot in its "performance
// mode" (one long-lived imap-login process), three logins cost one full TLS
// handshake to the backend, for STARTTLS and implicit TLS; the others
// resume its session. (In its default high-security mode, one process per
// connection, Dovecot resumes nothing: each process has its own session
// cache and ticket key.)
func TestIntegrationBackendTLSResumption(t *testing.T) {
	for _, mode := range []proxy.TLSMode{proxy.TLSStartTLS, proxy.TLSImplicit} {
		t.Run("imap "+string(mode), func(t *testing.T) {
			dc := testenv.StartDovecot(t, testenv.DovecotOptions{ExtraConfig: dovecotPerformanceMode()})
			addr := map[proxy.TLSMode]string{proxy.TLSStartTLS: dc.IMAPAddr, proxy.TLSImplicit: dc.IMAPSAddr}[mode]
			obs := &handshakeCounter{}
			tp := newTestProxy(t, proxy.Options{
				Authenticator: fakeAuthenticator,
				Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
				Observer:      obs,
			}, Options{Backend: proxy.Backend{Address: addr, TLS: mode, TLSConfig: dc.TLSConfig(), ClientIP: "id"}})
			for i := 0; i < 3; i++ {
				c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
				c.Expect("* OK")
				c.Send("a AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
				c.Expect("a OK")
				c.Send("b LOGOUT")
				c.Expect("* BYE")
				c.C.Close()
			}
			if obs.full.Load() != 1 || obs.resumed.Load() != 2 {
				t.Fatalf("backend TLS handshakes: %d full, %d resumed; want 1 full, 2 resumed", obs.full.Load(), obs.resumed.Load())
			}
		})
	}
}

// dovecotPerformanceMode makes imap-login one long-lived process, the only
// configuration in which Dovecot can resume TLS sessions.
func dovecotPerformanceMode() string {
	if testenv.Generation() == "2.4" {
		return "service imap-login {\n  restart_request_count = unlimited\n  process_limit = 1\n}\n"
	}
	return "service imap-login {\n  service_count = 0\n  process_limit = 1\n}\n"
}
