package certs

import (
	"crypto/tls"
	"fmt"
	"slices"
)

// TLSConfig returns a new server config whose certificates come from s at
// every handshake, so a Reload affects new handshakes only. MinVersion is
// minVersion but never below TLS 1.2. NextProtos is alpn: with it set, a
// client that offers ALPN with no protocol in common fails the handshake
// (which stops cross-protocol attacks such as ALPACA); clients that offer no
// ALPN are unaffected. The caller may change the returned config.
//
// TLS 1.2 offers only forward-secret AEAD suites (ECDHE with AES-GCM or
// ChaCha20-Poly1305): no CBC mode, no SHA-1 MAC, no RSA key exchange. Every
// mail client of the last decade has them; TLS 1.3's suites are not
// configurable and all AEAD.
//
// Make it once and keep it: the keys that encrypt TLS session tickets live in
// the config (crypto/tls creates and rotates them), so a config made anew per
// handshake or per Reload would make every returning client's ticket
// useless. Reload needs no new config: GetCertificate reads the current set.
func (s *Store) TLSConfig(minVersion uint16, alpn ...string) *tls.Config {
	return &tls.Config{
		GetCertificate: s.GetCertificate,
		MinVersion:     max(minVersion, tls.VersionTLS12),
		NextProtos:     slices.Clone(alpn),
		CipherSuites:   slices.Clone(tls12Suites),
	}
}

// tls12Suites are the TLS 1.2 cipher suites offered to clients.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ParseMinVersion maps the configuration's tls.min_version ("1.2" or "1.3";
// "" means "1.2") to a tls.Version constant.
func ParseMinVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("certs: TLS minimum version %q: want \"1.2\" or \"1.3\"", s)
}
