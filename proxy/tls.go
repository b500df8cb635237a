package proxy

import "crypto/tls"

// Client-side TLS: each protocol's listeners get their own copy of
// Options.TLSConfig whose ALPN list holds only that protocol's identifier,
// so a client that offers ALPN for another protocol (a cross-protocol attack
// such as ALPACA: an IMAP client's TLS redirected to the SMTP port) fails
// the handshake. Clients that offer no ALPN are unaffected, and so are all
// clients when Options.TLSConfig names no protocols.

// ALPN protocol identifiers (IANA TLS ALPN registry).
const (
	alpnIMAP = "imap"
	alpnSMTP = "smtp"
)

// tlsConfigs holds the per-protocol server configs.
type tlsConfigs struct {
	imap, smtp *tls.Config
}

func newTLSConfigs(base *tls.Config) tlsConfigs {
	return tlsConfigs{imap: onlyALPN(base, alpnIMAP), smtp: onlyALPN(base, alpnSMTP)}
}

// onlyALPN returns a copy of base whose NextProtos keeps proto only, or base
// itself when it names no protocols.
func onlyALPN(base *tls.Config, proto string) *tls.Config {
	if len(base.NextProtos) == 0 {
		return base
	}
	c := base.Clone()
	c.NextProtos = []string{proto}
	return c
}
