package proxy

import "crypto/tls"

// Client-side TLS: each protocol's listeners get their own copy of
// Options.TLSConfig whose ALPN list holds only that protocol's identifier,
// so a client that offers ALPN for another protocol (a cross-protocol attack
// such as ALPACA: an IMAP client's TLS redirected to the SMTP port) fails
// the handshake. Clients that offer no ALPN are unaffected, and so are all
// clients when Options.TLSConfig names no protocols.

// alpn maps mailgate's protocol names to their ALPN protocol identifiers
// (IANA TLS ALPN registry).
var alpn = map[string]string{"imap": "imap", "smtp": "smtp", "pop3": "pop3", "sieve": "managesieve"}

// tlsConfigs holds the per-protocol server configs.
type tlsConfigs struct {
	base    *tls.Config
	byProto map[string]*tls.Config
}

func newTLSConfigs(base *tls.Config) tlsConfigs {
	t := tlsConfigs{base: base, byProto: map[string]*tls.Config{}}
	for proto, id := range alpn {
		t.byProto[proto] = onlyALPN(base, id)
	}
	return t
}

// get is proto's config; a protocol without an ALPN identifier gets one
// that accepts no ALPN at all.
func (t tlsConfigs) get(proto string) *tls.Config {
	if c, ok := t.byProto[proto]; ok {
		return c
	}
	return onlyALPN(t.base, "mailgate-"+proto)
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
