package proxy

import (
	"bytes"
	"sync/atomic"
	"testing"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
)

// handshakeCounter counts backend TLS handshakes.
type handshakeCounter struct {
	NopObserver
	full, resumed atomic.Int32
}

func (o *handshakeCounter) BackendTLS(proto string, resumed bool) {
	if resumed {
		o.resumed.Add(1)
	} else {
		o.full.Add(1)
	}
}

// TestIntegrationBackendTLSResumption: against the real Postfix
// (STARTTLS), the capability probe and three logins cost one full TLS
// handshake to the backend; the others resume its session. Against Dovecot
// in its "performance mode" (one long-lived imap-login process), likewise
// for STARTTLS and implicit TLS. (In its default high-security mode, one
// process per connection, Dovecot resumes nothing: each process has its own
// session cache and ticket key.)
func TestIntegrationBackendTLSResumption(t *testing.T) {
	t.Run("smtp starttls", func(t *testing.T) {
		pf := testenv.SharedPostfix(t)
		obs := &handshakeCounter{}
		it := newSMTPIntegration(t, pf, Backend{TLS: TLSStartTLS}, func(o *Options) { o.Observer = obs })
		tok := it.token(t, "alice@example.test")
		base := obs.full.Load() + obs.resumed.Load() // the capability probe
		for i := 0; i < 3; i++ {
			sc := it.smtpClient(t, true, "XOAUTH2", "alice@example.test", tok)
			if _, err := smtpSend(t, sc, "alice@example.test", "alice@example.test", bytes.NewReader(smtpTestMessage(uniqueSubject("resume")))); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			sc.Quit()
		}
		if total := obs.full.Load() + obs.resumed.Load() - base; total != 3 || obs.full.Load() != 1 {
			t.Fatalf("backend TLS handshakes: %d full, %d resumed (probe included); want 1 full in all", obs.full.Load(), obs.resumed.Load())
		}
	})
	for _, mode := range []TLSMode{TLSStartTLS, TLSImplicit} {
		t.Run("imap "+string(mode), func(t *testing.T) {
			dc := testenv.StartDovecot(t, testenv.DovecotOptions{ExtraConfig: dovecotPerformanceMode()})
			addr := map[TLSMode]string{TLSStartTLS: dc.IMAPAddr, TLSImplicit: dc.IMAPSAddr}[mode]
			obs := &handshakeCounter{}
			tp := newTestProxy(t, Options{
				Authenticator: fakeAuthenticator,
				Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
				IMAPBackend:   Backend{Address: addr, TLS: mode, TLSConfig: dc.TLSConfig(), ClientIP: "id"},
				Observer:      obs,
			})
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
