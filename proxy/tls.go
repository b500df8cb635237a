package proxy

import (
	"crypto/tls"
	"sync"
)

// Client-side TLS: each protocol's listeners get their own copy of
// Options.TLSConfig whose ALPN list holds only that protocol's identifier,
// so a client that offers ALPN for another protocol (a cross-protocol attack
// such as ALPACA: an IMAP client's TLS redirected to the SMTP port) fails
// the handshake. Clients that offer no ALPN are unaffected, and so are all
// clients when Options.TLSConfig names no protocols.

// alpn maps mailgate's protocol names to their ALPN protocol identifiers
// (IANA TLS ALPN registry).
var alpn = map[string]string{"imap": "imap", "smtp": "smtp", "pop3": "pop3", "sieve": "managesieve"}

// tlsConfigs holds the per-protocol server configs. Each is made once and
// kept: TLS session tickets are encrypted with keys that live in the
// tls.Config (created on its first handshake, rotated by crypto/tls), so a
// config made per handshake, or per certificate reload, would refuse every
// ticket it did not issue itself and no client would ever resume. The
// certificates come from the base config's GetCertificate at every
// handshake, which is how a reload reaches new handshakes.
type tlsConfigs struct {
	base    *tls.Config
	byProto map[string]*tls.Config
	other   *sync.Map // proto -> *tls.Config, for protocols without an ALPN identifier
}

func newTLSConfigs(base *tls.Config) tlsConfigs {
	t := tlsConfigs{base: base, byProto: map[string]*tls.Config{}, other: &sync.Map{}}
	for proto, id := range alpn {
		t.byProto[proto] = onlyALPN(base, id)
	}
	return t
}

// get is proto's config; a protocol without an ALPN identifier gets one
// that accepts no ALPN at all, made on its first use.
func (t tlsConfigs) get(proto string) *tls.Config {
	if c, ok := t.byProto[proto]; ok {
		return c
	}
	if c, ok := t.other.Load(proto); ok {
		return c.(*tls.Config)
	}
	c, _ := t.other.LoadOrStore(proto, onlyALPN(t.base, "mailgate-"+proto))
	return c.(*tls.Config)
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
