package smtp

import (
	"bytes"
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

// TestIntegrationBackendTLSResumption: against the real Postfix
// (STARTTLS), the capability probe and three logins cost one full TLS
// handshake to the backend; the others resume its session.
func TestIntegrationBackendTLSResumption(t *testing.T) {
	t.Run("smtp starttls", func(t *testing.T) {
		pf := testenv.SharedPostfix(t)
		obs := &handshakeCounter{}
		it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, func(o *proxy.Options, so *Options) { o.Observer = obs })
		tok := it.token(t, "alice@example.test")
		base := obs.full.Load() + obs.resumed.Load() // the capability probe
		for i := 0; i < 3; i++ {
			sc := it.smtpClient(t, true, "XOAUTH2", "alice@example.test", tok)
			if _, err := smtpSend(t, sc, "alice@example.test", "alice@example.test", bytes.NewReader(smtpTestMessage(proxytest.UniqueSubject("resume")))); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			sc.Quit()
		}
		if total := obs.full.Load() + obs.resumed.Load() - base; total != 3 || obs.full.Load() != 1 {
			t.Fatalf("backend TLS handshakes: %d full, %d resumed (probe included); want 1 full in all", obs.full.Load(), obs.resumed.Load())
		}
	})
}
