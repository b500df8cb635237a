package proxy

import (
	"crypto/tls"
	"testing"
)

// TestTLSConfigsKept: every handshake of a protocol gets the same
// tls.Config, whose session ticket keys then decrypt the tickets it issued
// (a config made per handshake breaks TLS session resumption), also for a
// protocol without an ALPN identifier; and each config offers only its own
// protocol's ALPN.
func TestTLSConfigsKept(t *testing.T) {
	tc := newTLSConfigs(&tls.Config{NextProtos: []string{"imap", "smtp", "pop3", "managesieve"}})
	for _, proto := range []string{"imap", "smtp", "pop3", "sieve", "other"} {
		a, b := tc.get(proto), tc.get(proto)
		if a != b {
			t.Errorf("%s: a new tls.Config per handshake", proto)
		}
		if len(a.NextProtos) != 1 {
			t.Errorf("%s: NextProtos = %q, want one", proto, a.NextProtos)
		}
	}
	if got := tc.get("sieve").NextProtos[0]; got != "managesieve" {
		t.Errorf("sieve ALPN = %q", got)
	}
}
